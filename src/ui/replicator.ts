import {formatDuration} from '../core/duration.js'
import type {ReplicatorStatus} from '../engine/replicator/status.js'
import {renderTable} from './table.js'

/** `replicator status` for people: the queue, then the servers, then the full sync. */
export function replicatorStatusText(status: ReplicatorStatus): string {
  const q = status.queue
  const lines: string[] = []
  lines.push(
    q.waiting === 0
      ? `Queue: empty (${q.inFlight} in flight).`
      : `Queue: ${q.waiting} users waiting, ${q.inFlight} in flight, ${q.retrying} retrying; lag ${formatDuration(q.lagMs ?? 0)}.`,
  )
  if (q.waiting > 0)
    lines.push(
      renderTable(
        ['priority', 'waiting', 'due', 'oldest'],
        q.byPriority.map((p) => [
          p.priority,
          p.waiting,
          p.due,
          p.oldestQueuedMs === null ? '-' : formatDuration(p.oldestQueuedMs),
        ]),
      ),
    )
  lines.push('')
  lines.push(
    renderTable(
      ['server', 'health', 'since', 'sync failures', 'last error'],
      status.servers.map((s) => [s.server, s.health, s.since, s.syncFailures, s.lastSyncError ?? '']),
    ),
  )
  const f = status.fullSync
  lines.push(
    '',
    f.passStarted === null
      ? 'Full sync: no pass has started (is a replicator running with full_sync_interval set?).'
      : `Full sync: pass started ${f.passStarted}, ${f.queued} users queued so far; last complete pass ${f.lastFinished ?? 'never'}.`,
  )
  return lines.join('\n')
}
