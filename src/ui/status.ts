import type {DoveadmStatus, StatusOutcome, StatusServer, StoreStatus} from '../engine/cluster/status.js'
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
  // Too few servers for a target placement: no shares to show, but what doveadm said all the same.
  if (!summary) return outcome.doveadm ? [statusDoveadmTable(outcome)] : []
  const pending = status.pendingMoves + status.pendingDrops
  return [
    statusServersTable(status.servers),
    `${status.users} users, ${summary.copiesBefore} copies (default ${status.copies} per user). ` +
      (pending === 0
        ? 'Every copy is on its target server.'
        : `Pending: ${status.pendingMoves} moves${status.pendingDrops ? `, ${status.pendingDrops} copies to delete` : ''}; see \`mailring rebalance --dry-run\`.`),
  ]
}

/** The servers' table; with a DOVEADM column when the servers were probed (`status --doveadm`). */
export function statusServersTable(servers: readonly StatusServer[]): string {
  const probed = servers.some((s) => s.doveadm !== undefined)
  return renderTable(
    [
      'SERVER',
      'STATE',
      'ZONE',
      'WEIGHT',
      'USERS',
      'COPIES',
      'SHARE',
      'TARGET',
      'IN',
      'OUT',
      ...(probed ? ['DOVEADM'] : []),
    ],
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
      ...(probed ? [doveadmCell(s.doveadm)] : []),
    ]),
    {
      align: [
        'left',
        'left',
        'left',
        'right',
        'right',
        'right',
        'right',
        'right',
        'right',
        'right',
        ...(probed ? (['left'] as const) : []),
      ],
    },
  )
}

/** Each server's state and doveadm, when there are too few servers for the full table. */
function statusDoveadmTable(outcome: StatusOutcome): string {
  const found = new Map((outcome.doveadm ?? []).map((d) => [d.server, d]))
  return renderTable(
    ['SERVER', 'STATE', 'ZONE', 'DOVEADM'],
    outcome.topology.servers.map((s) => [s.name, s.state, s.zone ?? '-', doveadmCell(found.get(s.name))]),
  )
}

/** `ok 3 ms`, `unreachable`, `refused` or `down` (not probed). */
export function doveadmCell(doveadm: DoveadmStatus | undefined): string {
  if (doveadm === undefined) return '-'
  return doveadm.state === 'ok' ? `ok ${doveadm.ms} ms` : doveadm.state
}

/** Why each server's doveadm is unreachable or refused: the lines below the table (`status --doveadm`). */
export function statusDoveadmWarnings(outcome: StatusOutcome): string[] {
  return (outcome.doveadm ?? []).flatMap((d) =>
    d.state === 'unreachable' || d.state === 'refused' ? [`${d.server} ${d.state}: ${d.reason}`] : [],
  )
}
