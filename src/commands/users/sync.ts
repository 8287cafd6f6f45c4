import * as Flags from '@oclif/core/flags'

import {lockFlags} from '../../cli/flags.js'
import {StoreCommand} from '../../cli/store-command.js'
import {syncUsers, type UsersSyncResult} from '../../engine/cluster/users-sync.js'
import type {ClusterLock, Store} from '../../store/store.js'
import {startProgress} from '../../ui/progress.js'

/** Users listed by name in human output without --verbose. */
const SHOWN = 10

export default class UsersSync extends StoreCommand {
  static override summary =
    "Place the users of the operator's users table that mailring lacks; retire those gone from it."
  static override description = `Reads the operator's own users table (config section users_table; MySQL/MariaDB store), which mailring never alters: users that the provisioning system created there are placed at once on their target servers, users it removed are retired (removed from mailring's tables). Both are reported: counts, and the users themselves with --verbose or --json. One transaction under the cluster lock; --dry-run shows the changes without writing.

Exit codes: 0 synced, 1 bad input (no users_table, a missing table or column), 3 cluster locked, 4 store error.`

  static override examples = [
    '<%= config.bin %> users sync --dry-run',
    '<%= config.bin %> users sync --verbose',
    '<%= config.bin %> users sync --json | jq .result.added',
  ]

  static override flags = {
    ...lockFlags,
    'dry-run': Flags.boolean({summary: 'Only report what would change; write nothing.'}),
    verbose: Flags.boolean({char: 'v', summary: 'List every added and retired user.'}),
  }

  async run(): Promise<UsersSyncResult> {
    const {flags} = await this.parse(UsersSync)
    const spec = this.usersTableSpec(flags, 'users sync')
    const work = async (store: Store, lock?: ClusterLock): Promise<UsersSyncResult> => {
      const table = await store.usersTable(spec)
      const progress = startProgress('Reading users', {json: this.jsonEnabled(), unit: 'rows'})
      try {
        return await syncUsers(store, table, {
          dryRun: flags['dry-run'],
          ...(lock ? {lock} : {}),
          onProgress: (rows) => progress.update(rows),
        })
      } finally {
        progress.stop()
      }
    }
    const result = flags['dry-run']
      ? await work(await this.store(flags))
      : await this.locked(flags, 'users sync', work)
    for (const problem of result.invalid.slice(0, 20))
      this.warnUser(`${result.table}: "${problem.value}": ${problem.reason} (skipped)`)
    if (result.invalidCount > 20)
      this.warnUser(`... ${result.invalidCount - 20} more invalid addresses skipped`)
    if (result.duplicates > 0)
      this.warnUser(`${result.duplicates} rows of ${result.table} repeat a user of another row`)
    const list = (label: string, users: string[]): void => {
      const shown = flags.verbose ? users : users.slice(0, SHOWN)
      for (const user of shown) this.log(`${label} ${user}`)
      if (shown.length < users.length)
        this.log(`  ... and ${users.length - shown.length} more (--verbose lists all)`)
    }
    list('+', result.addedUsers)
    list('-', result.retiredUsers)
    const verb = result.dryRun ? 'Would place' : 'Placed'
    this.log(
      `${verb} ${result.added} new user${result.added === 1 ? '' : 's'} and ${result.dryRun ? 'retire' : 'retired'} ${result.retired} (${result.tableUsers} users in ${result.table})${result.dryRun ? '; nothing written (--dry-run).' : '.'}`,
    )
    return result
  }
}
