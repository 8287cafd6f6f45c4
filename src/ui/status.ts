import type {StatusOutcome, StatusServer, StoreStatus} from '../engine/status.js'
import {percent, renderTable} from './table.js'

/** The lines above any warning: the store, and who holds the cluster lock. */
export function statusHeading(read: StoreStatus): string[] {
  const {status} = read
  const lines = [
    `Store ${status.store} (schema ${status.schemaVersion}, placement algorithm ${status.algorithm})`,
  ]
  if (read.lockedBy) lines.push(`Locked by ${read.lockedBy}`)
  return lines
}

export function statusWarnings(outcome: StatusOutcome): string[] {
  return [
    ...outcome.shortfall.map((issue) => `${issue.message} (users can be added once there are enough)`),
    ...outcome.warnings.map((warning) => warning.message),
  ]
}

/** The lines below the warnings: the servers and what is pending, or how to add the first servers. */
export function statusReport(outcome: StatusOutcome): string[] {
  const {status, summary} = outcome
  if (outcome.topology.servers.length === 0)
    return ['No servers yet: add them with `mailring node add` or `mailring topology apply -f FILE`.']
  if (!summary) return []
  const pending = status.pendingMoves + status.pendingDrops
  return [
    statusServersTable(status.servers),
    `${status.users} users, ${summary.copiesBefore} copies (default ${status.copies} per user). ` +
      (pending === 0
        ? 'Every copy is on its target server.'
        : `Pending: ${status.pendingMoves} moves${status.pendingDrops ? `, ${status.pendingDrops} copies to delete` : ''}; see \`mailring rebalance --dry-run\`.`),
  ]
}

export function statusServersTable(servers: readonly StatusServer[]): string {
  return renderTable(
    ['SERVER', 'STATE', 'ZONE', 'WEIGHT', 'USERS', 'COPIES', 'SHARE', 'TARGET', 'IN', 'OUT'],
    servers.map((s) => [
      s.name,
      s.state,
      s.zone ?? '-',
      s.weight,
      s.primaries,
      s.copies,
      percent(s.share),
      percent(s.targetShare),
      s.movesIn,
      s.movesOut,
    ]),
    {align: ['left', 'left', 'left', 'right', 'right', 'right', 'right', 'right', 'right', 'right']},
  )
}
