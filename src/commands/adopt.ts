import {Flags} from '@oclif/core'

import {lockFlags} from '../cli/flags.js'
import {StoreCommand} from '../cli/store-command.js'
import {MailringError} from '../core/errors.js'
import {
  adoptPlacements,
  columnsSource,
  csvSource,
  parsePairs,
  type AdoptResult,
  type AdoptSource,
} from '../engine/adopt.js'
import type {ClusterLock, Store} from '../store/store.js'
import {renderTable} from '../ui/table.js'

const SHOWN = 20

export default class Adopt extends StoreCommand {
  static override summary =
    "Record where users' copies are today, so that the first rebalance moves only what has to move."
  static override description = `Takes the current placement of a running deployment from
  --from-columns hostA,hostB   columns of the operator's users table (config section users_table), each holding one server's name or address (empty or NULL: no copy);
  --from-csv FILE              lines user,server,server,... (primary first; a header line is allowed);
and, with --pairs A:B,C:D, completes a pair layout: every user of server A is also on B, and the other way round.

Servers are matched by name or address. Users that name an unknown server are reported and not recorded: nothing is guessed. Users mailring does not know yet are created with those copies; the copies of known users are replaced. One transaction under the cluster lock; --dry-run shows what would be recorded. Afterwards \`mailring rebalance --dry-run\` plans moves only for users whose copies differ from their targets.

Exit codes: 0 recorded, 1 bad input (unknown --pairs server, missing table, column or file), 3 cluster locked, 4 store error.`

  static override examples = [
    '<%= config.bin %> adopt --from-columns hostA,hostB --dry-run',
    '<%= config.bin %> adopt --from-csv placements.csv',
    '<%= config.bin %> adopt --from-columns host --pairs mx01:mx02,mx03:mx04',
  ]

  static override flags = {
    ...lockFlags,
    'from-columns': Flags.string({
      summary: "Columns of the operator's users table that hold the servers of each user (comma-separated).",
      exactlyOne: ['from-columns', 'from-csv'],
    }),
    'from-csv': Flags.string({
      summary: 'CSV file: user,server,server,...',
      exactlyOne: ['from-columns', 'from-csv'],
    }),
    pairs: Flags.string({summary: 'Pair layout: A:B,C:D — every user of A is also on B, and of B on A.'}),
    'dry-run': Flags.boolean({summary: 'Only show what would be recorded; write nothing.'}),
    verbose: Flags.boolean({char: 'v', summary: 'List every user recorded.'}),
  }

  async run(): Promise<AdoptResult> {
    const {flags} = await this.parse(Adopt)
    const work = async (store: Store, lock?: ClusterLock): Promise<AdoptResult> => {
      let source: AdoptSource
      if (flags['from-columns'] !== undefined) {
        const columns = flags['from-columns']
          .split(',')
          .map((column) => column.trim())
          .filter((column) => column !== '')
        if (columns.length === 0) throw new MailringError('--from-columns needs at least one column name.')
        const table = await store.usersTable(this.usersTableSpec(flags, 'adopt --from-columns'))
        await table.checkColumns(columns, '--from-columns')
        source = columnsSource(table, columns)
      } else {
        source = csvSource(flags['from-csv']!)
      }
      const pairs =
        flags.pairs === undefined ? undefined : parsePairs(flags.pairs, await store.readTopology())
      return adoptPlacements(store, source, {
        dryRun: flags['dry-run'],
        ...(pairs ? {pairs} : {}),
        ...(lock ? {lock} : {}),
      })
    }
    const result = flags['dry-run']
      ? await work(await this.store(flags))
      : await this.locked(flags, 'adopt', work)

    for (const problem of result.unknownServers.slice(0, SHOWN))
      this.warnUser(`${problem.where}: ${problem.user}: ${problem.reason}: not recorded`)
    if (result.unknownServerCount > SHOWN)
      this.warnUser(
        `... ${result.unknownServerCount - SHOWN} more users naming unknown servers, not recorded`,
      )
    for (const problem of result.invalid.slice(0, SHOWN))
      this.warnUser(`${problem.where}: "${problem.user}": ${problem.reason} (skipped)`)
    if (result.invalidCount > SHOWN)
      this.warnUser(`... ${result.invalidCount - SHOWN} more invalid addresses skipped`)
    if (result.noCopies > 0) this.warnUser(`${result.noCopies} users name no server: not recorded`)
    if (result.repeated > 0)
      this.warnUser(`${result.repeated} users are given more than once: the last entry counts`)

    const shown = flags.verbose ? result.users : result.users.slice(0, SHOWN)
    if (shown.length > 0) {
      this.log(
        renderTable(
          ['USER', 'COPIES'],
          shown.map((u) => [u.user, u.copies.join(',')]),
        ),
      )
      if (shown.length < result.users.length)
        this.log(`... and ${result.users.length - shown.length} more users (--verbose lists all)`)
    }
    const skipped = result.unknownServerCount + result.invalidCount + result.noCopies
    this.log(
      result.dryRun
        ? `Would record the copies of ${result.recorded} users from ${result.source}${skipped > 0 ? `; ${skipped} not recorded (see the warnings)` : ''}; nothing written (--dry-run).`
        : `Recorded the copies of ${result.recorded} users from ${result.source} (${result.created} new, ${result.replaced} replaced)${skipped > 0 ? `; ${skipped} not recorded (see the warnings)` : ''}. Next: mailring rebalance --dry-run.`,
    )
    return result
  }
}
