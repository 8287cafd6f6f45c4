import {serverShares, type PlanSummary, type RebalancePlan} from '../core/plan.js'
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

export function planSummaryLine(summary: PlanSummary): string {
  if (summary.moves + summary.drops === 0)
    return `Nothing to move: all ${summary.users} users are on their target servers.`
  const ratio =
    summary.minimumMoves === 0
      ? ''
      : ` (${(summary.moves / summary.minimumMoves).toFixed(2)}x the minimum of ${summary.minimumMoves})`
  const drops = summary.drops > 0 ? `, ${summary.drops} extra copies to delete` : ''
  const copies =
    summary.copiesBefore === 0
      ? ''
      : `, ${percent(summary.moves / summary.copiesBefore)} of ${summary.copiesBefore} copies`
  return `${summary.moves} copies to move${ratio} for ${summary.usersAffected} of ${summary.users} users${copies}${drops}; a placement with the same copies per server moves at least ${summary.capacityLowerBound}.`
}
