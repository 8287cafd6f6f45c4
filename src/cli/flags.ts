import * as Flags from '@oclif/core/flags'

import {parseDuration} from '../core/duration.js'

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

/**
 * --wait DURATION: every command that takes the cluster lock has it (spread `lockFlags` into its flags;
 * StoreCommand.locked requires the value, so a locking command cannot forget it).
 */
export const waitFlag = Flags.custom<number>({
  summary:
    'When another mailring holds the cluster lock, wait for it up to DURATION (e.g. 30s, 5m, 1h) instead of failing at once.',
  helpValue: 'DURATION',
  parse: async (input) => parseDuration(input, '--wait'),
})()

/** The flags of every command that takes the cluster lock. */
export const lockFlags = {wait: waitFlag}
