import * as Flags from '@oclif/core/flags'

import {confirmOrRefuse} from '../../cli/confirm.js'
import {lockFlags} from '../../cli/flags.js'
import {StoreCommand} from '../../cli/store-command.js'
import {parseDuration} from '../../core/duration.js'
import {ExitCode} from '../../core/errors.js'
import {cleanupRetired, retiredCopies, type CleanupOutcome} from '../../engine/rebalance/retire.js'

export interface RebalanceCleanupResult {
  dryRun: boolean
  /** Retired before this time (ISO). */
  before: string
  deleted: number
  failed: number
  copies: CleanupOutcome[]
}

export default class RebalanceCleanup extends StoreCommand {
  static override summary =
    'Delete the old copies that rebalance moved to the trash, once they are old enough.'
  static override description = `A move never deletes mail: the copy it replaces goes to <mail root>/.mailring-trash/<day>/<user>.<move> on the server it left, and the journal keeps where. cleanup deletes those retired before --older-than ago (default 7d), over SSH, and nothing else: only paths the journal names, and only inside a .mailring-trash folder. A server that cannot be reached keeps its trash for the next run. Asks for confirmation on a terminal (--yes for scripts); --dry-run lists what would go.

Exit codes: 0 deleted (or nothing to delete), 1 bad input, not confirmed, or some copies could not be deleted (the rest are), 3 cluster locked, 4 store error.`

  static override examples = [
    '<%= config.bin %> rebalance cleanup --dry-run',
    '<%= config.bin %> rebalance cleanup --older-than 14d --yes',
    '<%= config.bin %> rebalance cleanup --server mx03 --older-than 0s --yes --json',
  ]

  static override flags = {
    ...lockFlags,
    'older-than': Flags.string({
      summary: 'Only copies retired at least this long ago (e.g. 36h, 7d).',
      default: '7d',
    }),
    server: Flags.string({summary: 'Only the trash on this server (repeatable).', multiple: true}),
    'dry-run': Flags.boolean({summary: 'List what would be deleted; delete nothing.'}),
    yes: Flags.boolean({char: 'y', summary: 'Delete without asking for confirmation (scripts, CI).'}),
    'accept-new': Flags.boolean({
      summary: 'Trust and record the SSH host key of a server not in known_hosts yet.',
    }),
  }

  async run(): Promise<RebalanceCleanupResult> {
    const {flags} = await this.parse(RebalanceCleanup)
    const before = new Date(Date.now() - parseDuration(flags['older-than'], '--older-than'))
    return this.locked(flags, 'rebalance cleanup', async (store) => {
      const servers = flags.server === undefined ? undefined : new Set(flags.server)
      const waiting = await retiredCopies(store, before, servers)
      const dryRun = flags['dry-run']
      if (waiting.length === 0) {
        this.log(`No retired copies older than ${flags['older-than']}.`)
        return {dryRun, before: before.toISOString(), deleted: 0, failed: 0, copies: []}
      }
      if (!dryRun)
        await confirmOrRefuse(
          `Delete ${waiting.length} retired copies (moved to the trash before ${before.toISOString()}) for good?`,
          {yes: flags.yes, what: 'rebalance cleanup'},
        )
      const copies = await this.withFleet(flags, {acceptNew: flags['accept-new']}, (fleet) =>
        cleanupRetired(fleet, store, waiting, {
          dryRun,
          onOutcome: (o) => {
            if (o.error !== undefined)
              process.stderr.write(`${o.server}: ${o.trash}: not deleted: ${o.error}\n`)
            else if (dryRun) this.log(`${o.server}: ${o.trash}`)
          },
        }),
      )
      const deleted = copies.filter((c) => c.deleted).length
      const failed = copies.length - deleted
      this.log(
        dryRun
          ? `Would delete ${deleted} retired copies.`
          : `Deleted ${deleted} retired copies${failed > 0 ? `; ${failed} could not be deleted (kept for the next run)` : ''}.`,
      )
      if (failed > 0) process.exitCode = ExitCode.error
      return {dryRun, before: before.toISOString(), deleted, failed, copies}
    })
  }
}
