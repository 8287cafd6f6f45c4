import * as Flags from '@oclif/core/flags'

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
} from '../engine/cluster/adopt.js'
import type {ClusterLock, Store} from '../store/store.js'
import {renderTable} from '../ui/table.js'

const SHOWN = 20

export default class Adopt extends StoreCommand {
  static override summary =
    "Record where users' copies are today, so that the first rebalance moves only what has to move."
  static override description = `Takes the current placement of a running deployment from
  --from-columns hostA,hostB   columns of the operator's users table (config section users_table), each holding one server's name or address (empty or NULL: no copy);
  --from-csv FILE              lines user,server,server,... (primary first), fields separated by ",", ";" or a tab; a header line and # comments are allowed;
and, with --pairs A:B,C:D, completes a pair layout: every user of server A is also on B, and the other way round.

Servers are matched by name or address: nothing is guessed. Users mailring does not know yet are created with those copies (adopting a running deployment fills an empty store); the copies of known users are replaced. The output marks the new users, so that --dry-run shows a misspelt address before anything is written.

All or nothing: an invalid address, an unknown server, a row naming no server or a user given twice stops the adoption with every problem listed by line, and nothing is written. With --skip-invalid those rows are skipped and reported, and the rest is recorded. One transaction under the cluster lock. Afterwards \`mailring rebalance --dry-run\` plans moves only for users whose copies differ from their targets.

Exit codes: 0 recorded, 1 bad input (nothing written: rows that cannot be recorded, unknown --pairs server, missing table, column or file), 3 cluster locked, 4 store error.`

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
      summary: 'CSV file: user,server,server,... (",", ";" or a tab between the fields).',
      exactlyOne: ['from-columns', 'from-csv'],
    }),
    pairs: Flags.string({summary: 'Pair layout: A:B,C:D — every user of A is also on B, and of B on A.'}),
    'skip-invalid': Flags.boolean({
      summary: 'Skip rows that cannot be recorded (reported) instead of recording nothing.',
    }),
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
        skipInvalid: flags['skip-invalid'],
        ...(pairs ? {pairs} : {}),
        ...(lock ? {lock} : {}),
      })
    }
    const result = flags['dry-run']
      ? await work(await this.store(flags))
      : await this.locked(flags, 'adopt', work)

    for (const problem of result.problems.slice(0, SHOWN))
      this.warnUser(`${problem.where}: ${problem.message} (skipped)`)
    const skipped = Object.values(result.skipped).reduce((sum, n) => sum + n, 0)
    if (skipped > SHOWN) this.warnUser(`... ${skipped - SHOWN} more skipped`)
    if (result.recorded === 0 && skipped === 0)
      this.warnUser(`${result.source} names no user: nothing recorded.`)

    const shown = flags.verbose ? result.users : result.users.slice(0, SHOWN)
    if (shown.length > 0) {
      this.log(
        renderTable(
          ['USER', 'COPIES', 'NEW'],
          shown.map((u) => [u.user, u.copies.join(','), u.new ? 'new' : '']),
        ),
      )
      if (shown.length < result.users.length)
        this.log(`... and ${result.users.length - shown.length} more users (--verbose lists all)`)
    }
    const rest = skipped > 0 ? `; ${skipped} skipped (see the warnings)` : ''
    this.log(
      result.dryRun
        ? `Would record the copies of ${result.recorded} users from ${result.source} (${result.created} new to mailring, ${result.replaced} known)${rest}; nothing written (--dry-run).`
        : `Recorded the copies of ${result.recorded} users from ${result.source} (${result.created} new to mailring, ${result.replaced} replaced)${rest}. Next: mailring rebalance --dry-run.`,
    )
    return result
  }
}
