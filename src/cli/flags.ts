import {Flags} from '@oclif/core'

/** Flags that several commands share, defined once so they read the same everywhere. */
export const topologyFlag = Flags.string({
  char: 't',
  summary: 'Topology file (YAML) describing the servers and domain policies.',
  env: 'MAILRING_TOPOLOGY',
})
