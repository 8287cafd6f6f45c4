/**
 * What `mailring replicator status` shows, read from the store alone (so it works from any admin host,
 * whichever replicators run): the queue by priority and its lag, each server's health and replication
 * failures, and the periodic full sync's progress.
 */
import type {ReplicationQueueStats, ServerHealth, Store} from '../../store/store.js'
import {FULL_SYNC_MARKERS} from './full-sync.js'

export interface ReplicatorStatus {
  queue: ReplicationQueueStats & {
    /** Users waiting, all priorities. */
    waiting: number
    /** Age of the oldest change still waiting, in ms (null: nothing waits): the replication lag. */
    lagMs: number | null
  }
  servers: ServerHealth[]
  fullSync: {
    /** When the current pass started (ISO), null: none has started. */
    passStarted: string | null
    /** Users queued so far in the current pass. */
    queued: number
    /** When the last complete pass queued its last user (ISO), null: never. */
    lastFinished: string | null
  }
}

const iso = (ms: string | undefined): string | null => {
  const n = Number(ms)
  return ms === undefined || !Number.isFinite(n) || n <= 0 ? null : new Date(n).toISOString()
}

export async function replicatorStatus(store: Store, nowMs = Date.now()): Promise<ReplicatorStatus> {
  const [stats, servers, started, queued, finished] = await Promise.all([
    store.replicationStats(nowMs),
    store.serverHealth(),
    store.replicationMarker(FULL_SYNC_MARKERS.started),
    store.replicationMarker(FULL_SYNC_MARKERS.queued),
    store.replicationMarker(FULL_SYNC_MARKERS.finished),
  ])
  // oldestQueuedMs is an age at nowMs: the largest is the lag.
  const ages = stats.byPriority.map((p) => p.oldestQueuedMs).filter((ms): ms is number => ms !== null)
  return {
    queue: {
      ...stats,
      waiting: stats.byPriority.reduce((sum, p) => sum + p.waiting, 0),
      lagMs: ages.length === 0 ? null : Math.max(...ages),
    },
    servers,
    fullSync: {passStarted: iso(started), queued: Number(queued ?? 0) || 0, lastFinished: iso(finished)},
  }
}
