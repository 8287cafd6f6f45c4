import {serverShares, type PlanMove, type PlanSummary, type RebalancePlan} from '../core/plan.js'
import type {Topology} from '../core/topology.js'
import {percent, renderTable} from './table.js'

export interface PlanServerRow {
  server: string
  /** State in the target topology; "removed" when the target no longer has the server. */
  state: string
  copiesBefore: number
  copiesAfter: number
  shareBefore: number
  shareAfter: number
  movesIn: number
  movesOut: number
}

export function planServerRows(plan: RebalancePlan, target: Topology): PlanServerRow[] {
  const states = new Map(target.servers.map((s) => [s.name, s.state as string]))
  return serverShares(plan).map((s) => ({
    server: s.server,
    state: states.get(s.server) ?? 'removed',
    copiesBefore: s.before,
    copiesAfter: s.after,
    shareBefore: s.shareBefore,
    shareAfter: s.shareAfter,
    movesIn: s.movesIn,
    movesOut: s.movesOut,
  }))
}

export function planServersTable(rows: readonly PlanServerRow[]): string {
  return renderTable(
    ['SERVER', 'STATE', 'COPIES NOW', 'SHARE NOW', 'COPIES AFTER', 'SHARE AFTER', 'IN', 'OUT'],
    rows.map((r) => [
      r.server,
      r.state,
      r.copiesBefore,
      percent(r.shareBefore),
      r.copiesAfter,
      percent(r.shareAfter),
      r.movesIn,
      r.movesOut,
    ]),
    {align: ['left', 'left', 'right', 'right', 'right', 'right', 'right', 'right']},
  )
}

/**
 * The plan in two lines: what moves, against the fewest moves that reach the target placement
 * (minimumMoves); then against the fewest that any placement with the same copies per server could make
 * (capacityLowerBound), so that the two minimums are never confused.
 */
export function planSummaryLine(summary: PlanSummary): string {
  const {moves, drops, users, usersAffected, minimumMoves, capacityLowerBound, copiesBefore} = summary
  if (moves + drops === 0) return `Nothing to move: all ${users} users are on their target servers.`
  const deletes = `${drops} extra copies to delete`
  if (moves === 0) return `${deletes} for ${usersAffected} of ${users} users; nothing to move.`
  const share = copiesBefore === 0 ? '' : ` (${percent(moves / copiesBefore)} of ${copiesBefore} copies)`
  const fewest =
    moves <= minimumMoves
      ? 'the fewest that reach the target placement'
      : `${(moves / minimumMoves).toFixed(2)}x the ${minimumMoves} that reach the target placement at the least`
  const sizes =
    capacityLowerBound >= moves
      ? 'No placement with the same copies per server moves fewer.'
      : `The copies per server alone need at least ${capacityLowerBound} moves (what the growing servers gain); this placement takes ${moves - capacityLowerBound} more.`
  return `${moves} copies to move for ${usersAffected} of ${users} users${share}${drops > 0 ? `, and ${deletes}` : ''}: ${fewest} (one per target server that holds no copy of its user yet).\n${sizes}`
}

/** The first `shown` moves as a table (USER, FROM, TO), and how many more there are; '' when none. */
export function planMovesText(
  moves: {readonly length: number; at(index: number): PlanMove | undefined},
  shown: number,
): string {
  const listed = Array.from({length: Math.min(shown, moves.length)}, (_, i) => moves.at(i)!)
  if (listed.length === 0) return ''
  const table = renderTable(
    ['USER', 'FROM', 'TO'],
    listed.map((m) => [m.user, m.from ?? '(new copy)', m.to ?? '(delete)']),
  )
  return moves.length > shown ? `${table}\n... and ${moves.length - shown} more moves` : table
}
