import {lockFlags} from '../../cli/flags.js'
import {StoreCommand} from '../../cli/store-command.js'
import {cancelMoves} from '../../engine/rebalance/journal.js'
import type {MoveRecord} from '../../store/store.js'
import {movesTable} from '../../ui/moves.js'

export interface RebalanceCancelResult {
  cancelled: number
  /** Moves past their switch: they finish on the next run (their new copy is already current). */
  left: MoveRecord[]
}

export default class RebalanceCancel extends StoreCommand {
  static override summary = 'Cancel the moves that have not switched yet; their users stay where they are.'
  static override description = `Before its switch a move has changed no placement: cancelling it leaves the user on its current copies (a copy already made on the target is left there, unused). Moves that have switched are not cancelled: their new copy is current, and the next \`mailring rebalance\` finishes them. Takes the cluster lock.

Exit codes: 0 cancelled (also when there was nothing to cancel), 3 cluster locked, 4 store error.`

  static override examples = [
    '<%= config.bin %> rebalance cancel',
    '<%= config.bin %> rebalance cancel --json',
  ]
  static override flags = {...lockFlags}

  async run(): Promise<RebalanceCancelResult> {
    const {flags} = await this.parse(RebalanceCancel)
    const result = await this.locked(flags, 'rebalance cancel', (store) => cancelMoves(store))
    this.log(`Cancelled ${result.cancelled} move${result.cancelled === 1 ? '' : 's'} that had not switched.`)
    if (result.left.length > 0) {
      this.log(movesTable(result.left))
      this.log(`${result.left.length} switched move(s) left to finish with the next \`mailring rebalance\`.`)
    }
    return result
  }
}
