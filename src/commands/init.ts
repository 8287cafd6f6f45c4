import * as Flags from '@oclif/core/flags'

import {StoreCommand} from '../cli/store-command.js'

export interface InitResult {
  store: string
  /** False when the store existed already (init never replaces one). */
  created: boolean
  schemaVersion: number
  algorithm: number
  clusterId: string
}

export default class Init extends StoreCommand {
  static override summary = 'Create the store that keeps the cluster state.'
  static override description = `Creates the store where --db, MAILRING_DB, a config file or the default ($XDG_DATA_HOME/mailring/cluster.db) says, with the latest schema. Running it again on an existing store changes nothing (and upgrades its schema if needed).

Exit codes: 0 created or found, 1 bad input, 4 store error (e.g. a schema from a newer mailring).`

  static override examples = [
    '<%= config.bin %> init',
    '<%= config.bin %> init --db sqlite:./cluster.db --copies 3',
  ]

  static override flags = {
    copies: Flags.integer({
      summary: 'Default copies of each mailbox (R) for a new store.',
      min: 1,
      max: 16,
      default: 2,
    }),
  }

  async run(): Promise<InitResult> {
    const {flags} = await this.parse(Init)
    const {store, created} = await this.createStore(flags, {copies: flags.copies})
    try {
      const meta = await store.meta()
      this.log(
        created
          ? `Created the mailring store ${store.location} (schema ${meta.schemaVersion}, placement algorithm ${meta.algorithm}, ${flags.copies} copies).`
          : `The mailring store ${store.location} exists already; nothing changed.`,
      )
      if (created)
        this.log('Next: add servers (mailring node add, or mailring topology apply -f FILE), then users.')
      return {
        store: store.location,
        created,
        schemaVersion: meta.schemaVersion,
        algorithm: meta.algorithm,
        clusterId: meta.clusterId,
      }
    } finally {
      await store.close()
    }
  }
}
