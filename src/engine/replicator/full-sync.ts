/**
 * The periodic full sync: every user once per interval, queued a few at a time in address order so that the
 * work is spread evenly over the interval and never floods a server. Where it stands is kept in the store
 * (replication markers), so a restart goes on where the last run stopped, and a second replicator only
 * queues what the first queued already (queued entries merge).
 */
import type {ReplicationRequest, Store} from '../../store/store.js'

export const FULL_SYNC_MARKERS = {
  /** The last user queued in the current pass ('' at the start of a pass). */
  cursor: 'full_sync.cursor',
  /** When the current pass started (ms since the epoch). */
  started: 'full_sync.started',
  /** Users queued in the current pass. */
  queued: 'full_sync.queued',
  /** When the last pass queued its last user (ms since the epoch). */
  finished: 'full_sync.finished',
} as const

/** The scheduler looks at most this often; each look queues what is due since the last. */
const TICK_MS = 1_000
/** At most this many users per store call. */
const BATCH = 500

export class FullSyncScheduler {
  private lastTick = 0
  private usersEstimate: number | undefined

  constructor(
    private readonly store: Store,
    private readonly intervalMs: number,
    private readonly enqueue: (requests: ReplicationRequest[]) => Promise<unknown>,
  ) {}

  async tick(nowMs: number): Promise<void> {
    if (this.intervalMs <= 0 || nowMs - this.lastTick < TICK_MS) return
    this.lastTick = nowMs
    const marker = async (key: string) => this.store.replicationMarker(key)
    let started = Number(await marker(FULL_SYNC_MARKERS.started))
    if (!Number.isFinite(started) || started <= 0) {
      started = nowMs
      await this.startPass(nowMs)
    }
    this.usersEstimate ??= await this.store.countUsers()
    const queued = Number((await marker(FULL_SYNC_MARKERS.queued)) ?? '0')
    // Due by now: the share of the interval gone by, of every user.
    const due = Math.min(
      this.usersEstimate,
      Math.ceil(((nowMs - started) / this.intervalMs) * this.usersEstimate),
    )
    // Once the interval is over, whatever is left (users added during the pass) is queued and the pass ends.
    let want = nowMs - started >= this.intervalMs ? Number.MAX_SAFE_INTEGER : due - queued
    if (want <= 0) return
    let cursor = (await marker(FULL_SYNC_MARKERS.cursor)) ?? ''
    let count = queued
    while (want > 0) {
      const page = await this.store.listUsers({
        limit: Math.min(BATCH, want),
        ...(cursor ? {after: cursor} : {}),
      })
      if (page.length > 0) {
        await this.enqueue(page.map((u) => ({user: u.user, priority: 'full' as const})))
        cursor = page[page.length - 1]!.user
        count += page.length
        want -= page.length
      }
      if (page.length < Math.min(BATCH, want + page.length)) {
        // The end of the users: the pass is over; the next starts when this interval ends.
        await this.store.setReplicationMarker(FULL_SYNC_MARKERS.finished, String(nowMs))
        await this.startPass(Math.max(nowMs, started + this.intervalMs))
        this.usersEstimate = await this.store.countUsers()
        return
      }
    }
    await this.store.setReplicationMarker(FULL_SYNC_MARKERS.cursor, cursor)
    await this.store.setReplicationMarker(FULL_SYNC_MARKERS.queued, String(count))
  }

  private async startPass(startMs: number): Promise<void> {
    await this.store.setReplicationMarker(FULL_SYNC_MARKERS.started, String(startMs))
    await this.store.setReplicationMarker(FULL_SYNC_MARKERS.cursor, '')
    await this.store.setReplicationMarker(FULL_SYNC_MARKERS.queued, '0')
  }
}
