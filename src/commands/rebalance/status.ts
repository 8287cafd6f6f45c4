import {StoreCommand} from '../../cli/store-command.js'
import {journalStatus, type JournalStatus} from '../../engine/rebalance/journal.js'
import {movesTable} from '../../ui/moves.js'

export type RebalanceStatusResult = JournalStatus

export default class RebalanceStatus extends StoreCommand {
  static override summary =
    'Show the moves of a rebalance that are not finished, with their state and last error.'
  static override description = `Every journaled move that is not finished: planned, copying, verified, switched (the new copy is current; the last sync from the old one is pending) or caught-up (the old copy is still to be retired). A move that failed keeps its state and shows the error and how many attempts it took; the next run tries it again.

Exit codes: 0 shown (also when none is open), 4 store error.`

  static override examples = [
    '<%= config.bin %> rebalance status',
    '<%= config.bin %> rebalance status --json',
  ]

  async run(): Promise<RebalanceStatusResult> {
    const {flags} = await this.parse(RebalanceStatus)
    const status = await journalStatus(await this.store(flags))
    if (status.moves.length === 0) this.log('No move is open.')
    else {
      this.log(movesTable(status.moves))
      this.log(
        `${status.moves.length} open: ${Object.entries(status.byState)
          .map(([state, n]) => `${n} ${state}`)
          .join(', ')}.`,
      )
    }
    return status
  }
}
