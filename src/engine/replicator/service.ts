/**
 * The replication work of `mailring replicator run` (docs/decisions/0004-replicator.md): workers that take
 * users from the store's queue and sync every copy of each (N-way, `syncOneUser`), the periodic full sync
 * spread over its interval, and the catch-up of a server that returns after being down.
 *
 * Notifications (http-server.ts) and probes (prober.ts) feed it; it never changes placements. The queue is
 * in the store, so a crash loses nothing: what a dead replicator held is taken again when its lease ends.
 */
import {hostname} from 'node:os'
import {randomBytes} from 'node:crypto'

import {errorText} from '../../core/errors.js'
import type {
  ReplicationRequest,
  ReplicationTask,
  ServerHealthState,
  Store,
  SyncState,
} from '../../store/store.js'
import type {DovecotContext} from '../context.js'
import {DoveadmFleet} from '../sync/fleet.js'
import {syncCommand, syncStateOf} from '../../dovecot/doveadm.js'
import type {DoveadmReply} from '../../remote/doveadm.js'
import {statesToKeep, syncOneUser, type UserSyncResult} from '../sync/sync.js'
import {FullSyncScheduler} from './full-sync.js'

export interface ReplicatorTuning {
  /** A user becomes due this long after its last change ... */
  debounceMs: number
  /** ... but no later than this long after its first change still waiting. */
  maxDelayMs: number
  /** Every user is fully synced once per interval (0: never). */
  fullSyncIntervalMs: number
  /** Users synced at once by this replicator. */
  parallel: number
  /** Syncs in flight touching one server. */
  perServer: number
  /** How often the queue is looked at when nothing woke the workers earlier. */
  pollMs: number
  /**
   * How long a claimed task stays ours without renewal: what a killed replicator's users wait before another
   * one (or its restart) takes them. Syncs in flight renew it every third of it.
   */
  leaseMs: number
  /** First retry of a failed task; doubled per attempt up to maxBackoffMs. */
  backoffMs: number
  maxBackoffMs: number
}

export const DEFAULT_TUNING: ReplicatorTuning = {
  debounceMs: 500,
  maxDelayMs: 5_000,
  fullSyncIntervalMs: 24 * 3600_000,
  parallel: 8,
  perServer: 4,
  pollMs: 250,
  leaseMs: 15_000,
  backoffMs: 1_000,
  maxBackoffMs: 60_000,
}

/** What the service tells its observers (metrics, logs). */
export interface ReplicatorEvents {
  synced?(task: ReplicationTask, result: UserSyncResult, lagMs: number): void
  failed?(task: ReplicationTask, error: string, server: string | undefined, retryInMs: number): void
  caughtUp?(server: string, users: number): void
  log?(line: string): void
}

export interface ReplicatorOptions {
  store: Store
  /** Loads the servers and settings again: the topology can change while the service runs. */
  loadContext: () => Promise<DovecotContext>
  tuning?: Partial<ReplicatorTuning>
  events?: ReplicatorEvents
  now?: () => number
  /** Trust and record unknown SSH host keys (ssh transport). */
  acceptNew?: boolean
  /**
   * Marks a caught-up server up (the prober, whose hysteresis must know); true when it is up now. Default:
   * returning -> up in the store, compare-and-set.
   */
  markCaughtUp?: (server: string) => Promise<boolean>
}

/** How often the servers and settings are read again, and the health of every server. */
const CONTEXT_REFRESH_MS = 30_000
const HEALTH_REFRESH_MS = 1_000
/** A server found unusable during a sync is tried again after this long (the probes decide down). */
const UNUSABLE_FORGET_MS = 2_000
/** Users queued per store call by a catch-up. */
const CATCH_UP_BATCH = 1_000
/** A running replicator writes its heartbeat this often; one older than HEARTBEAT_FRESH_MS is gone. */
const HEARTBEAT_MS = 2_000
const HEARTBEAT_FRESH_MS = 6_000
export const HEARTBEAT_MARKER = 'replicator.heartbeat'

/** `<ms> <owner>`, or `<ms> <owner> stopped` written by a replicator that stopped at that time. */
function parseHeartbeat(
  value: string | undefined,
): {ms: number; owner: string; stopped: boolean} | undefined {
  const m = /^(\d+) (\S+)( stopped)?$/.exec(value ?? '')
  return m ? {ms: Number(m[1]), owner: m[2]!, stopped: m[3] !== undefined} : undefined
}

export function backoffFor(
  attempts: number,
  tuning: Pick<ReplicatorTuning, 'backoffMs' | 'maxBackoffMs'>,
): number {
  const base = Math.min(tuning.maxBackoffMs, tuning.backoffMs * 2 ** Math.min(attempts, 20))
  // Jitter: replicators retrying a server that came back do not all come at once.
  return Math.round(base * (0.75 + Math.random() * 0.5))
}

export class Replicator {
  readonly owner = `${hostname()}:${process.pid}:${randomBytes(4).toString('hex')}`
  readonly tuning: ReplicatorTuning
  private readonly store: Store
  private readonly now: () => number
  private readonly events: ReplicatorEvents
  private ctx!: DovecotContext
  private ctxAt = 0
  private fleet!: DoveadmFleet
  private readonly unusableSince = new Map<string, number>()
  private health = new Map<string, ServerHealthState>()
  private healthAt = 0
  private beatAt = 0
  private renewedAt = 0
  private readonly inFlight = new Map<string, Promise<void>>()
  private readonly perServer = new Map<string, number>()
  /** Servers returning after being down: the users still to catch up there. */
  private readonly catchingUp = new Map<string, Set<string>>()
  /** How many users each server's catch-up started with (its set empties as they are done). */
  private readonly catchUpSizes = new Map<string, number>()
  private running = false
  private loop: Promise<void> | undefined
  private wake: (() => void) | undefined
  private wakeTimer: NodeJS.Timeout | undefined
  private readonly fullSync: FullSyncScheduler
  /** Set by stop(): claims stop, syncs in flight finish. */
  private stopping = false

  constructor(private readonly options: ReplicatorOptions) {
    this.store = options.store
    this.tuning = {...DEFAULT_TUNING, ...options.tuning}
    this.now = options.now ?? Date.now
    this.events = options.events ?? {}
    this.fullSync = new FullSyncScheduler(this.store, this.tuning.fullSyncIntervalMs, (requests) =>
      this.enqueue(requests),
    )
  }

  async start(): Promise<void> {
    await this.refreshContext(true)
    await this.refreshHealth(true)
    await this.catchUpAfterGap()
    // A server left returning by an earlier run (or another replicator) is caught up again: idempotent.
    for (const [server, health] of this.health) if (health === 'returning') await this.startCatchUp(server)
    this.running = true
    this.loop = this.work()
  }

  /** Stops taking work, lets the syncs in flight finish, gives back what is still held. */
  async stop(): Promise<void> {
    if (!this.running) return
    this.stopping = true
    this.running = false
    this.poke()
    await this.loop
    await Promise.allSettled(this.inFlight.values())
    await this.store.releaseReplication(this.owner)
    // Not listening any more: the next replicator to start must not count on this one.
    await this.store.setReplicationMarker(HEARTBEAT_MARKER, `${this.now()} ${this.owner} stopped`)
    await this.fleet.close()
  }

  /** Queues changes (from notifications); wakes the workers when they become due. */
  async enqueue(requests: readonly ReplicationRequest[]): Promise<{queued: number; unknownUsers: number}> {
    if (requests.length === 0) return {queued: 0, unknownUsers: 0}
    const t = this.tuning
    const result = await this.store.enqueueReplication(requests, {
      nowMs: this.now(),
      debounceMs: t.debounceMs,
      maxDelayMs: t.maxDelayMs,
    })
    this.pokeAfter(t.debounceMs)
    return result
  }

  /** The probes' news: a server went down, returned (catch it up), or is up. */
  async healthChanged(server: string, health: ServerHealthState): Promise<void> {
    const before = this.health.get(server)
    this.health.set(server, health)
    if (health === 'returning' && before !== 'returning') await this.startCatchUp(server)
    if (health === 'down') this.catchingUp.delete(server)
    if (health !== 'down') this.forgetUnusable(server)
    this.poke()
  }

  private log(line: string): void {
    this.events.log?.(line)
  }

  private async work(): Promise<void> {
    while (this.running) {
      try {
        await this.heartbeat()
        await this.renewLeases()
        await this.refreshContext()
        await this.refreshHealth()
        await this.fullSync.tick(this.now())
        const limit = this.claimLimit()
        if (limit > 0 && !this.stopping) {
          const tasks = await this.store.claimReplication({
            owner: this.owner,
            nowMs: this.now(),
            limit,
            leaseMs: this.tuning.leaseMs,
            avoidServers: this.busyServers(),
          })
          for (const task of tasks) this.begin(task, await this.takeCopies(task))
          if (tasks.length === limit) continue
        }
      } catch (error) {
        // The store may be briefly unavailable (a locked SQLite file, a dropped connection): say so, go on.
        this.log(errorText(error))
      }
      await this.sleep(this.tuning.pollMs)
    }
  }

  private busyServers(): string[] {
    const busy = [...this.perServer].filter(([, n]) => n >= this.tuning.perServer).map(([s]) => s)
    return busy
  }

  /**
   * How many tasks one claim may take: the free workers, but no more than the room left on the busiest
   * server not at its limit (those at it are avoided), so that one claim cannot push a server past
   * per_server, whichever servers the claimed users turn out to be on.
   */
  private claimLimit(): number {
    const free = this.tuning.parallel - this.inFlight.size
    const counts = [...this.perServer.values()].filter((n) => n < this.tuning.perServer)
    const room = this.tuning.perServer - Math.max(0, ...counts)
    return Math.max(0, Math.min(free, room))
  }

  /** The user's copies, counted against their servers at once (before the next claim looks). */
  private async takeCopies(task: ReplicationTask): Promise<string[]> {
    const record = await this.store.getUser(task.user)
    const copies = record?.copies ?? []
    // A server added since the servers were last read: read them again.
    if (copies.some((s) => !this.ctx.servers.some((known) => known.name === s)))
      await this.refreshContext(true)
    for (const s of copies) this.perServer.set(s, (this.perServer.get(s) ?? 0) + 1)
    return copies
  }

  private begin(task: ReplicationTask, copies: string[]): void {
    const job = this.runTask(task, copies)
      .catch((error: unknown) => this.log(`${task.user}: ${errorText(error)}`))
      .finally(() => {
        this.inFlight.delete(task.user)
        this.poke()
      })
    this.inFlight.set(task.user, job)
  }

  private async runTask(task: ReplicationTask, copies: string[]): Promise<void> {
    try {
      const outcome = await this.syncCopies(task, copies)
      await this.noteMissed(task, copies, outcome.ok)
      // The next change on these copies syncs incrementally from this sync's states (syncFromSource); the
      // older ones no longer hold, nor any after a sync that failed (aggregates/sync-states.ts).
      if (!outcome.ok || outcome.result.syncs > 0)
        await this.store.saveSyncStates(task.user, outcome.ok ? statesToKeep(outcome.result) : [])
      if (outcome.ok) {
        await this.store.finishReplication(this.owner, task, {ok: true})
        this.events.synced?.(task, outcome.result, this.now() - task.firstQueuedMs)
        this.caughtUpUser(task.user, copies)
        return
      }
      const retryIn = backoffFor(task.attempts, this.tuning)
      await this.store.finishReplication(this.owner, task, {
        ok: false,
        error: outcome.error,
        retryAtMs: this.now() + retryIn,
        ...(outcome.server === undefined ? {} : {server: outcome.server}),
      })
      this.events.failed?.(task, outcome.error, outcome.server, retryIn)
    } finally {
      for (const s of copies) this.perServer.set(s, (this.perServer.get(s) ?? 1) - 1)
    }
  }

  /**
   * Keeps what down servers missed (store.recordMissed): a sync that went through without the copies on
   * down servers leaves them a change to catch up on when they return, and only those users are caught up
   * then (startCatchUp). A catch-up or full sync that reached every copy clears them.
   */
  private async noteMissed(task: ReplicationTask, copies: readonly string[], ok: boolean): Promise<void> {
    if (!ok) return
    const down = copies.filter((s) => this.isDown(s))
    if (down.length > 0) await this.store.recordMissed(task.user, down, this.now())
    else if (
      task.priority === 'catch-up' ||
      task.priority === 'full' ||
      [...this.catchingUp.values()].some((users) => users.has(task.user))
    )
      await this.store.clearMissed(task.user, copies)
  }

  /**
   * Syncs the copies whose server is not down; a down server is left out without failing the user (it is
   * caught up when it returns). A copy that fails otherwise fails the task: it is retried with back-off.
   */
  private async syncCopies(
    task: ReplicationTask,
    copies: readonly string[],
  ): Promise<{ok: true; result: UserSyncResult} | {ok: false; error: string; server?: string}> {
    const live = copies.filter((s) => !this.isDown(s))
    for (const s of live) this.forgetUnusable(s, UNUSABLE_FORGET_MS)
    if (live.length < 2) {
      // Nothing to sync (one copy, or all others down): done; a returning server is caught up then.
      const result: UserSyncResult = {
        user: task.user,
        status: 'in-sync',
        copies: [...copies],
        skipped: [],
        syncs: 0,
        ms: 0,
      }
      return {ok: true, result}
    }
    const fast = await this.syncFromSource(task, live)
    if (fast) return {ok: true, result: fast}
    const result = await syncOneUser(this.fleet, task.user, live, task.priority === 'full')
    if (result.status === 'synced' || result.status === 'in-sync') return {ok: true, result}
    for (const skipped of result.skipped)
      if (!this.unusableSince.has(skipped.server)) this.unusableSince.set(skipped.server, this.now())
    const server = result.skipped[0]?.server ?? serverNamed(result.message, live)
    return {
      ok: false,
      error: result.message ?? result.status,
      ...(server === undefined ? {} : {server}),
    }
  }

  /**
   * The fast path for a change Dovecot told us about: the copy it happened on is known, so that copy is
   * synced (two-way) with each other copy, without reading every copy's state first: the syncs go in ONE
   * doveadm request to that copy (one doveadm-server process on a stock Dovecot, where the full N-way sync
   * costs about eight). Each sync is incremental from dsync's state saved for the pair (source, copy), as
   * the stock replicator's are: without a state, dsync skips a mailbox whose summary matches on both
   * sides, though each copy took another message (issue 20, split A). A pair without a state yet is synced
   * in full (`-f`), which prints its first state. Any failure, even "not fully synced", falls back to the
   * full N-way sync, which reads every copy and syncs until they agree. Full and catch-up syncs always take
   * that way.
   */
  private async syncFromSource(
    task: ReplicationTask,
    live: readonly string[],
  ): Promise<UserSyncResult | undefined> {
    const source = task.source
    if ((task.priority !== 'mail' && task.priority !== 'change') || source === null || !live.includes(source))
      return undefined
    const started = this.now()
    const wasUnusable = this.fleet.problemOf(source) !== undefined
    const targets = live.filter((s) => s !== source)
    const saved = new Map(
      (await this.store.syncStates(task.user)).filter((s) => s.from === source).map((s) => [s.to, s.state]),
    )
    const commands = targets.map((target) => {
      const state = saved.get(target)
      return syncCommand({
        user: task.user,
        destination: this.fleet.syncDestination(target),
        full: state === undefined,
        state: state ?? '',
        lockSeconds: this.fleet.ctx.doveadm.lockSeconds,
      })
    })
    let replies: DoveadmReply[] = []
    try {
      replies = await this.fleet.runAll(source, commands)
    } catch {
      replies = []
    }
    if (replies.length !== commands.length || !replies.every((reply) => reply.outcome === 'ok')) {
      // A sync with a copy that cannot be reached fails on the source's side (its doveadm may close the
      // request): the source is not to blame. The full sync reads every copy and finds the one that is.
      if (!wasUnusable) this.fleet.forget(source)
      return undefined
    }
    const states: SyncState[] = []
    replies.forEach((reply, i) => {
      const state = syncStateOf(reply.rows)
      if (state !== undefined) states.push({from: source, to: targets[i]!, state})
    })
    return {
      user: task.user,
      status: 'synced',
      copies: [...live],
      hub: source,
      skipped: [],
      syncs: commands.length,
      states,
      ms: this.now() - started,
    }
  }

  private isDown(server: string): boolean {
    if (this.health.get(server) === 'down') return true
    return this.ctx.servers.find((s) => s.name === server)?.state === 'down'
  }

  /** Lets the fleet try a server again that it found unusable (at least `olderThanMs` ago). */
  private forgetUnusable(server: string, olderThanMs = 0): void {
    const since = this.unusableSince.get(server)
    if (since === undefined && this.fleet.problemOf(server) === undefined) return
    if (since !== undefined && this.now() - since < olderThanMs) return
    this.unusableSince.delete(server)
    this.fleet.forget(server)
  }

  /**
   * Dovecot does not keep a notification it could not post (2.3 drops it after its 1 s time-out), so every
   * change made while no replicator listened is unknown: unless another replicator is alive (its heartbeat
   * is fresh), every user is queued for a quick catch-up sync. Users in sync cost a status read per copy.
   */
  private async catchUpAfterGap(): Promise<void> {
    const read = async () => parseHeartbeat(await this.store.replicationMarker(HEARTBEAT_MARKER))
    const beat = await read()
    if (beat && !beat.stopped && this.now() - beat.ms < HEARTBEAT_FRESH_MS) {
      // Fresh: another replicator, or one just killed. Only a live one beats again meanwhile.
      await new Promise((resolve) => setTimeout(resolve, HEARTBEAT_MS * 2 + 500))
      const again = await read()
      if (again && again.ms > beat.ms) {
        await this.heartbeat(true)
        return
      }
    }
    await this.heartbeat(true)
    let users = 0
    for await (const chunk of this.store.scanUsers(CATCH_UP_BATCH)) {
      await this.enqueue(chunk.map((user) => ({user, priority: 'catch-up' as const})))
      users += chunk.length
    }
    const since = beat ? `since ${new Date(beat.ms).toISOString()}` : 'before'
    this.log(
      `no replicator was listening ${since}: notifications of that time are lost, so all ${users} users are queued for a catch-up sync`,
    )
  }

  /** Keeps the leases of the syncs in flight (a long first sync of a big mailbox outlives one lease). */
  private async renewLeases(): Promise<void> {
    if (this.now() - this.renewedAt < this.tuning.leaseMs / 3 || this.inFlight.size === 0) return
    this.renewedAt = this.now()
    await this.store.renewReplication(this.owner, [...this.inFlight.keys()], this.now() + this.tuning.leaseMs)
  }

  /** Tells other replicators (and the next start of this one) that notifications are being taken. */
  private async heartbeat(force = false): Promise<void> {
    if (!force && this.now() - this.beatAt < HEARTBEAT_MS) return
    this.beatAt = this.now()
    await this.store.setReplicationMarker(HEARTBEAT_MARKER, `${this.now()} ${this.owner}`)
  }

  /**
   * A server is answering again: its users with a change it missed while it was down (noteMissed) are
   * queued for a catch-up, and it takes logins again once they are done. Not every user it holds: a short
   * outage would queue them all, and a flapping server flooded the queue (issue 20 C).
   */
  private async startCatchUp(server: string): Promise<void> {
    const users = new Set(await this.store.missedUsers(server))
    const list = [...users]
    for (let i = 0; i < list.length; i += CATCH_UP_BATCH)
      await this.enqueue(
        list.slice(i, i + CATCH_UP_BATCH).map((user) => ({user, priority: 'catch-up' as const})),
      )
    this.catchingUp.set(server, users)
    this.catchUpSizes.set(server, users.size)
    this.log(
      `${server} returned: catching up its ${users.size} users with changes it missed before it takes logins again`,
    )
    if (users.size === 0) await this.finishCatchUp(server)
  }

  private caughtUpUser(user: string, copies: readonly string[]): void {
    for (const server of copies) {
      const left = this.catchingUp.get(server)
      if (!left?.delete(user) || left.size > 0) continue
      void this.finishCatchUp(server).catch((error: unknown) => this.log(errorText(error)))
    }
  }

  private async finishCatchUp(server: string): Promise<void> {
    const users = this.catchUpSizes.get(server) ?? 0
    this.catchingUp.delete(server)
    this.catchUpSizes.delete(server)
    const up = this.options.markCaughtUp
      ? await this.options.markCaughtUp(server)
      : await this.store.setServerHealth(server, 'returning', 'up', 'caught up')
    if (up) {
      this.health.set(server, 'up')
      this.log(`${server} is caught up and takes logins again`)
      this.events.caughtUp?.(server, users)
    }
  }

  private async refreshContext(force = false): Promise<void> {
    if (!force && this.now() - this.ctxAt < CONTEXT_REFRESH_MS) return
    const ctx = await this.options.loadContext()
    const old = this.fleet
    this.ctx = ctx
    this.fleet = new DoveadmFleet(ctx, {
      perServer: this.tuning.perServer,
      ...(this.options.acceptNew ? {acceptNew: true} : {}),
    })
    this.ctxAt = this.now()
    // Syncs in flight keep the fleet they started with; its connections close when they are done.
    if (old) {
      const flights = [...this.inFlight.values()]
      void Promise.allSettled(flights).then(() => old.close())
    }
  }

  private async refreshHealth(force = false): Promise<void> {
    if (!force && this.now() - this.healthAt < HEALTH_REFRESH_MS) return
    const records = await this.store.serverHealth()
    const next = new Map(records.map((r) => [r.server, r.health]))
    this.healthAt = this.now()
    // Changes made by another replicator's probes (or by the operator) are news here too.
    for (const [server, health] of next)
      if (this.health.get(server) !== health && this.running) await this.healthChanged(server, health)
    this.health = next
  }

  private poke(): void {
    const wake = this.wake
    this.wake = undefined
    wake?.()
  }

  private pokeAfter(ms: number): void {
    if (this.wakeTimer) return
    this.wakeTimer = setTimeout(() => {
      this.wakeTimer = undefined
      this.poke()
    }, ms + 5)
    this.wakeTimer.unref()
  }

  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.wake = undefined
        resolve()
      }, ms)
      this.wake = () => {
        clearTimeout(timer)
        resolve()
      }
    })
  }
}

/** The copy a failure message names ("server: ..."), when it names one of `copies`. */
function serverNamed(message: string | undefined, copies: readonly string[]): string | undefined {
  if (message === undefined) return undefined
  const head = message.split(':', 1)[0]
  return copies.find((s) => s === head)
}
