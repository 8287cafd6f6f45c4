/** The move journal as operators see it: `rebalance status` and `rebalance cancel`. */
import type {MoveRecord, MoveState, Store} from '../../store/store.js'

export interface JournalStatus {
  /** Moves not finished yet, oldest first. */
  moves: MoveRecord[]
  /** How many open moves are in each state. */
  byState: Partial<Record<MoveState, number>>
}

export async function journalStatus(store: Store): Promise<JournalStatus> {
  const moves = await store.openMoves()
  const byState: Partial<Record<MoveState, number>> = {}
  for (const move of moves) byState[move.state] = (byState[move.state] ?? 0) + 1
  return {moves, byState}
}

/** Cancels the open moves that have not switched; the switched ones are left to finish. */
export async function cancelMoves(store: Store): Promise<{cancelled: number; left: MoveRecord[]}> {
  const cancelled = await store.cancelUnswitchedMoves()
  return {cancelled, left: await store.openMoves()}
}
