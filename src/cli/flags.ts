import {Flags} from '@oclif/core'

/** Flags that several commands share, defined once so they read the same everywhere. */
export const topologyFlag = Flags.string({
  char: 't',
  summary: 'Topology file (YAML) describing the servers and domain policies.',
  env: 'MAILRING_TOPOLOGY',
})

/** Where the store is (docs/operators-guide.md, "Where the store is"). */
export const dbFlag = Flags.string({
  summary:
    'Store URL: sqlite:PATH or mysql://USER@HOST:PORT/DB, password in MAILRING_DB_PASSWORD (default: $XDG_DATA_HOME/mailring/cluster.db).',
  env: 'MAILRING_DB',
  helpGroup: 'STORE',
})

/** A config file whose `db` key says where the store is. */
export const configFlag = Flags.string({
  summary: 'Config file (YAML, key db); default ./mailring.yaml, then $XDG_CONFIG_HOME/mailring/config.yaml.',
  env: 'MAILRING_CONFIG',
  helpGroup: 'STORE',
})

/** The flags of every command that uses the store. */
export const storeFlags = {db: dbFlag, config: configFlag}
