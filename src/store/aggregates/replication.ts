/**
 * The replicator's tables (schema 5, docs/decisions/0004-replicator.md): the replication queue (one entry per
 * user, requests merged into it, leased to one replicator at a time), its named markers, and server health.
 * First what does not depend on the SQL dialect (the priority ranks the queue stores, requests merged before
 * they are written, a queue row as a ReplicationTask, health with its defaults), then each dialect: MySQL
 * takes work with FOR UPDATE SKIP LOCKED, so that replicators share the queue.
 */
import {storeMetaOf, mysqlMeta, sqliteMeta} from './meta.js'
import {OPEN_STATES_SQL} from './moves.js'
import {mysqlServers, sqliteServers} from './servers.js'
import {affected, arrayRows, type MysqlConn, type Row, type SqliteDb} from './sql.js'
import {mysqlUsers} from './users.js'
import {
  REPLICATION_PRIORITIES,
  type ClaimOptions,
  type EnqueueOptions,
  type EnqueueResult,
  type ReplicationPriority,
  type ReplicationQueueStats,
  type ReplicationOutcome,
  type ReplicationRequest,
  type ReplicationTask,
  type ServerHealth,
  type ServerHealthState,
} from '../store.js'

/**
 * The rank a priority is stored as (mailring_replication_queue.priority): lower is more urgent. Fixed by
 * schema 5: a new priority gets a new number, these never change.
 */
const PRIORITY_RANK: Readonly<Record<ReplicationPriority, number>> = {
  mail: 0,
  change: 1,
  'catch-up': 2,
  full: 3,
}
const PRIORITY_OF_RANK: readonly ReplicationPriority[] = ['mail', 'change', 'catch-up', 'full']

function priorityRank(priority: ReplicationPriority): number {
  const rank = PRIORITY_RANK[priority]
  if (rank === undefined) throw new Error(`unknown replication priority ${String(priority)}`)
  return rank
}

/** Users (and their requests) per statement of an enqueue or a lookup: well below any packet limit. */
const QUEUE_CHUNK = 1_000

/** A whole number of ms (a time or a length) that the SQL may hold, or an error naming it. */
function wholeMs(value: number, what: string): number {
  if (!Number.isSafeInteger(value)) throw new Error(`${what} must be a whole number of ms, not ${value}`)
  return value
}

/** Requests of one call merged per user, as the store merges them into an entry already waiting. */
interface MergedRequest {
  user: string
  rank: number
  /** The source server's name; null when unknown or when the requests named different ones. */
  source: string | null
  /** How many requests were merged: the generation is bumped by as many. */
  count: number
}

/** Merges the requests of one call per user (first appearance order). */
function mergeRequests(requests: readonly ReplicationRequest[]): MergedRequest[] {
  const byUser = new Map<string, MergedRequest>()
  for (const request of requests) {
    const rank = priorityRank(request.priority)
    const source = request.source ?? null
    const seen = byUser.get(request.user)
    if (!seen) byUser.set(request.user, {user: request.user, rank, source, count: 1})
    else {
      seen.rank = Math.min(seen.rank, rank)
      if (seen.source !== source) seen.source = null
      seen.count++
    }
  }
  return [...byUser.values()]
}

/** The times of an enqueue: a new entry is due at dueMs; a waiting one at most maxDelayMs after its first. */
function enqueueTimes(options: EnqueueOptions): {nowMs: number; dueMs: number; maxDelayMs: number} {
  const nowMs = wholeMs(options.nowMs, 'nowMs')
  const debounceMs = wholeMs(options.debounceMs, 'debounceMs')
  const maxDelayMs = wholeMs(options.maxDelayMs, 'maxDelayMs')
  if (debounceMs < 0 || maxDelayMs < 0) throw new Error('debounceMs and maxDelayMs must not be negative')
  return {nowMs, dueMs: nowMs + Math.min(debounceMs, maxDelayMs), maxDelayMs}
}

/**
 * The queue rows of merged requests whose user is known, sorted by user id (so that two replicators
 * writing the same users lock them in the same order): [user_id, priority, source_server_id, due_ms,
 * first_queued_ms, generation]. `unknown` counts the requests whose user is not in the store.
 */
function queueRows(
  merged: readonly MergedRequest[],
  userIds: ReadonlyMap<string, number>,
  serverIds: ReadonlyMap<string, number>,
  times: {nowMs: number; dueMs: number},
): {rows: (number | null)[][]; unknown: number} {
  const rows: (number | null)[][] = []
  let unknown = 0
  for (const request of merged) {
    const userId = userIds.get(request.user)
    if (userId === undefined) {
      unknown += request.count
      continue
    }
    const source = request.source === null ? null : (serverIds.get(request.source) ?? null)
    rows.push([userId, request.rank, source, times.dueMs, times.nowMs, request.count])
  }
  rows.sort((a, b) => a[0]! - b[0]!)
  return {rows, unknown}
}

/**
 * What both stores' upserts set on an entry already waiting, given `new` (the row being inserted, as
 * `excluded.x` or `VALUES(x)`) and the max delay as the one parameter. Every value depends only on old
 * columns and new values, never on a column this statement sets (MySQL applies its SET left to right).
 */
function mergeAssignments(fresh: (column: string) => string): string {
  return [
    `due_ms = CASE WHEN ${fresh('due_ms')} < first_queued_ms + ? THEN ${fresh('due_ms')} ELSE first_queued_ms + ? END`,
    `source_server_id = CASE WHEN source_server_id = ${fresh('source_server_id')} THEN source_server_id ELSE NULL END`,
    `priority = CASE WHEN ${fresh('priority')} < priority THEN ${fresh('priority')} ELSE priority END`,
    `generation = generation + ${fresh('generation')}`,
  ].join(', ')
}

/** A claim's times and size, checked: whole ms, a limit of 0 or more. */
function claimTimes(options: ClaimOptions): {nowMs: number; limit: number; leaseUntilMs: number} {
  const nowMs = wholeMs(options.nowMs, 'nowMs')
  const leaseMs = wholeMs(options.leaseMs, 'leaseMs')
  if (!Number.isSafeInteger(options.limit) || options.limit < 0)
    throw new Error(`limit must be a whole number, not ${options.limit}`)
  if (leaseMs <= 0) throw new Error('leaseMs must be positive')
  return {nowMs, limit: options.limit, leaseUntilMs: nowMs + leaseMs}
}

/** The ids of the servers a claim avoids (unknown names hold no copies: left out). */
function avoidIds(servers: readonly string[] | undefined, serverIds: ReadonlyMap<string, number>): number[] {
  return (servers ?? []).flatMap((name) => {
    const id = serverIds.get(name)
    return id === undefined ? [] : [id]
  })
}

/** A queue entry as a claim reads it. */
interface TaskRow {
  user_id: number
  user: string
  priority: number
  source: string | null
  generation: number
  first_queued_ms: number
  attempts: number
}

/** The entries a claim may take: due, no live lease, no open move, no copy on a server to avoid. */
function claimableSql(nowMs: number, avoidIds: readonly number[]): string {
  const avoid =
    avoidIds.length === 0
      ? ''
      : ` AND NOT EXISTS (SELECT 1 FROM mailring_copies c WHERE c.user_id = q.user_id AND c.server_id IN (${avoidIds.map((id) => wholeMs(id, 'server id')).join(', ')}))`
  return (
    `q.due_ms <= ${nowMs} AND (q.lease_until_ms IS NULL OR q.lease_until_ms <= ${nowMs})` +
    ` AND NOT EXISTS (SELECT 1 FROM mailring_moves m WHERE m.user_id = q.user_id AND m.state IN (${OPEN_STATES_SQL}))` +
    avoid
  )
}

/** The claim's order: most urgent first, then oldest due. */
const CLAIM_ORDER = 'q.priority, q.due_ms, q.user_id'

/** The columns of a task, from mailring_replication_queue q, its user u and its source server s. */
const TASK_SELECT =
  'SELECT q.user_id, u.address AS user, q.priority, s.name AS source, q.generation, q.first_queued_ms, q.attempts ' +
  'FROM mailring_replication_queue q JOIN mailring_users u ON u.id = q.user_id ' +
  'LEFT JOIN mailring_servers s ON s.id = q.source_server_id'

function taskOf(row: TaskRow): ReplicationTask {
  return {
    user: String(row.user),
    priority: PRIORITY_OF_RANK[Number(row.priority)]!,
    source: row.source === null ? null : String(row.source),
    generation: Number(row.generation),
    firstQueuedMs: Number(row.first_queued_ms),
    attempts: Number(row.attempts),
  }
}

/** The lease a task is held by: its entry's generation, or undefined when `owner` no longer holds it. */
const HELD_ENTRY_SQL =
  'SELECT q.user_id, q.generation FROM mailring_replication_queue q JOIN mailring_users u ON u.id = q.user_id ' +
  'WHERE u.address = ? AND q.lease_owner = ?'
/** Done and unchanged since it was taken. */
const DELETE_ENTRY_SQL = 'DELETE FROM mailring_replication_queue WHERE user_id = ?'
/** Done, but a request came in meanwhile: due at once (since its first change), for another sync. */
const REQUEUE_ENTRY_SQL =
  'UPDATE mailring_replication_queue SET lease_owner = NULL, lease_until_ms = NULL, due_ms = first_queued_ms, ' +
  'attempts = 0, last_error = NULL WHERE user_id = ?'
/** Failed: an attempt more, its error, due again at the retry time. */
const RETRY_ENTRY_SQL =
  'UPDATE mailring_replication_queue SET lease_owner = NULL, lease_until_ms = NULL, due_ms = ?, ' +
  'attempts = attempts + 1, last_error = ? WHERE user_id = ?'
/**
 * What finishing a task does to its entry, held by the finisher with this generation, as [sql, params]:
 * done and unchanged, it goes; done with requests since, it stays due at once; failed, it waits its retry.
 */
function finishStatement(
  entry: Readonly<Record<string, unknown>>,
  task: ReplicationTask,
  outcome: ReplicationOutcome,
): [string, unknown[]] {
  const userId = Number(entry.user_id)
  if (!outcome.ok) return [RETRY_ENTRY_SQL, [wholeMs(outcome.retryAtMs, 'retryAtMs'), outcome.error, userId]]
  return [Number(entry.generation) === task.generation ? DELETE_ENTRY_SQL : REQUEUE_ENTRY_SQL, [userId]]
}

/** Graceful stop: every task of an owner back, due at once. */
const RELEASE_SQL =
  'UPDATE mailring_replication_queue SET lease_owner = NULL, lease_until_ms = NULL, due_ms = first_queued_ms ' +
  'WHERE lease_owner = ?'

/** Per priority: [priority, waiting, due, oldest first_queued_ms], then in flight and retrying (params: now x4). */
const STATS_BY_PRIORITY_SQL =
  'SELECT priority, COUNT(*) AS waiting, ' +
  'SUM(CASE WHEN due_ms <= ? AND (lease_until_ms IS NULL OR lease_until_ms <= ?) THEN 1 ELSE 0 END) AS due, ' +
  'MIN(first_queued_ms) AS oldest FROM mailring_replication_queue GROUP BY priority'
const STATS_LEASES_SQL =
  'SELECT SUM(CASE WHEN lease_until_ms > ? THEN 1 ELSE 0 END) AS in_flight, ' +
  'SUM(CASE WHEN attempts > 0 AND (lease_until_ms IS NULL OR lease_until_ms <= ?) THEN 1 ELSE 0 END) AS retrying ' +
  'FROM mailring_replication_queue'

interface StatsRow {
  priority: number
  waiting: number | string
  due: number | string | null
  oldest: number | string | null
}

/** The stats of every priority (zero when none waits), the oldest change as an age at `nowMs`. */
function queueStatsOf(
  nowMs: number,
  byPriority: readonly StatsRow[],
  leases: Readonly<Record<string, unknown>> | undefined,
): ReplicationQueueStats {
  const rows = new Map(byPriority.map((row) => [Number(row.priority), row]))
  return {
    byPriority: REPLICATION_PRIORITIES.map((priority) => {
      const row = rows.get(priorityRank(priority))
      return {
        priority,
        waiting: Number(row?.waiting ?? 0),
        due: Number(row?.due ?? 0),
        oldestQueuedMs: row?.oldest === null || row?.oldest === undefined ? null : nowMs - Number(row.oldest),
      }
    }),
    inFlight: Number(leases?.in_flight ?? 0),
    retrying: Number(leases?.retrying ?? 0),
  }
}

/** What an enqueue writes: the requests merged per user, and its times. */
export interface EnqueuePlan {
  merged: MergedRequest[]
  times: {nowMs: number; dueMs: number; maxDelayMs: number}
}

/**
 * An enqueue in either dialect: checks the times, merges the requests per user, and runs `write` only when
 * there is something to write: an empty call opens no transaction (and so succeeds whatever the lock).
 */
export async function enqueueWith(
  requests: readonly ReplicationRequest[],
  options: EnqueueOptions,
  write: (plan: EnqueuePlan) => EnqueueResult | Promise<EnqueueResult>,
): Promise<EnqueueResult> {
  const times = enqueueTimes(options)
  const merged = mergeRequests(requests)
  if (merged.length === 0) return {queued: 0, unknownUsers: 0}
  return write({merged, times})
}

export type ClaimPlan = ReturnType<typeof claimTimes> & Pick<ClaimOptions, 'owner' | 'avoidServers'>

/** A claim in either dialect: checks its times and size; a claim of none opens no transaction. */
export async function claimWith(
  options: ClaimOptions,
  write: (plan: ClaimPlan) => ReplicationTask[] | Promise<ReplicationTask[]>,
): Promise<ReplicationTask[]> {
  const plan = {...claimTimes(options), owner: options.owner, avoidServers: options.avoidServers}
  if (plan.limit === 0) return []
  return write(plan)
}

/** A renewal in either dialect: checks the time; renewing no user opens no transaction. */
export async function renewWith(
  users: readonly string[],
  leaseUntilMs: number,
  write: (until: number) => string[] | Promise<string[]>,
): Promise<string[]> {
  const until = wholeMs(leaseUntilMs, 'leaseUntilMs')
  if (users.length === 0) return []
  return write(until)
}

const UPSERT_ENTRY_COLUMNS =
  'INSERT INTO mailring_replication_queue (user_id, priority, source_server_id, due_ms, first_queued_ms, generation)'
const LEASE_SQL = 'UPDATE mailring_replication_queue SET lease_owner = ?, lease_until_ms = ?'

// Server health

interface HealthRow {
  server: string
  health: string | null
  since: string | null
  detail: string | null
  sync_failures: number | null
  last_sync_error: string | null
}

/** Every server with its health row, if any (sorted by name). */
const SERVER_HEALTH_SQL =
  'SELECT s.name AS server, h.health, h.since, h.detail, h.sync_failures, h.last_sync_error ' +
  'FROM mailring_servers s LEFT JOIN mailring_server_health h ON h.server_id = s.id ORDER BY s.name'

/** A server's health; one without a row is up since `createdAt` (the store's creation). */
function serverHealthOf(row: HealthRow, createdAt: string): ServerHealth {
  return {
    server: String(row.server),
    health: (row.health ?? 'up') as ServerHealthState,
    since: row.since ?? createdAt,
    detail: row.detail ?? '',
    syncFailures: Number(row.sync_failures ?? 0),
    lastSyncError: row.last_sync_error,
  }
}

/**
 * The values of the row a server without one gets before it is written, as it reads without one:
 * [server_id, health, since, detail]. Each store inserts it unless it exists.
 */
function defaultHealthRow(serverId: number, createdAt: string): [number, string, string, string] {
  return [serverId, 'up', createdAt, '']
}
const HEALTH_COLUMNS = '(server_id, health, since, detail)'

/**
 * Compare-and-set of a server's health (params from healthUpdate): `since` only changes with the health,
 * sync failures are reset when it becomes up.
 */
const SET_HEALTH_SQL =
  'UPDATE mailring_server_health SET since = CASE WHEN ? = 1 THEN ? ELSE since END, ' +
  'sync_failures = CASE WHEN ? = 1 THEN 0 ELSE sync_failures END, ' +
  'last_sync_error = CASE WHEN ? = 1 THEN NULL ELSE last_sync_error END, ' +
  'detail = ?, health = ? WHERE server_id = ? AND health = ?'

function healthUpdate(
  serverId: number,
  expected: ServerHealthState,
  next: ServerHealthState,
  detail: string,
  nowIso: string,
): unknown[] {
  const changed = expected !== next ? 1 : 0
  const becomesUp = changed && next === 'up' ? 1 : 0
  return [changed, nowIso, becomesUp, becomesUp, oneLine(detail), next, serverId, expected]
}

/** Counts a failed sync against a server (its row exists). */
const COUNT_SYNC_FAILURE_SQL =
  'UPDATE mailring_server_health SET sync_failures = sync_failures + 1, last_sync_error = ? WHERE server_id = ?'

function checkHealth(...states: ServerHealthState[]): void {
  for (const state of states)
    if (state !== 'up' && state !== 'down' && state !== 'returning')
      throw new Error(`unknown server health ${String(state)}`)
}

function oneLine(text: string): string {
  return text.replace(/\s*[\r\n]+\s*/g, ' ').trim()
}

// Markers

const MARKER_SQL = 'SELECT value FROM mailring_replication_markers WHERE `key` = ?'
const SET_MARKER_SQL = 'INSERT INTO mailring_replication_markers (`key`, value) VALUES (?, ?)'

export const sqliteQueue = {
  enqueue(db: SqliteDb, {merged, times}: EnqueuePlan): EnqueueResult {
    const serverIds = sqliteServers.ids(db)
    // One lookup per chunk of users, not one per user.
    const lookup = db
      .prepare('SELECT j.value, u.id FROM json_each(?) j JOIN mailring_users u ON u.address = j.value')
      .raw()
    const upsert = db.prepare(
      `${UPSERT_ENTRY_COLUMNS} VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (user_id) DO UPDATE SET ${mergeAssignments((column) => `excluded.${column}`)}`,
    )
    const result: EnqueueResult = {queued: 0, unknownUsers: 0}
    for (let from = 0; from < merged.length; from += QUEUE_CHUNK) {
      const chunk = merged.slice(from, from + QUEUE_CHUNK)
      const userIds = new Map(
        lookup.all(JSON.stringify(chunk.map((request) => request.user))) as [string, number][],
      )
      const {rows, unknown} = queueRows(chunk, userIds, serverIds, times)
      for (const row of rows) upsert.run(...row, times.maxDelayMs, times.maxDelayMs)
      result.queued += rows.length
      result.unknownUsers += unknown
    }
    return result
  },
  claim(db: SqliteDb, {nowMs, limit, leaseUntilMs, owner, avoidServers}: ClaimPlan): ReplicationTask[] {
    const avoid = avoidIds(avoidServers, sqliteServers.ids(db))
    const rows = db
      .prepare(`${TASK_SELECT} WHERE ${claimableSql(nowMs, avoid)} ORDER BY ${CLAIM_ORDER} LIMIT ${limit}`)
      .all() as TaskRow[]
    const lease = db.prepare(`${LEASE_SQL} WHERE user_id = ?`)
    for (const row of rows) lease.run(owner, leaseUntilMs, row.user_id)
    return rows.map(taskOf)
  },
  renew(db: SqliteDb, owner: string, users: readonly string[], until: number): string[] {
    const renew = db.prepare(
      'UPDATE mailring_replication_queue SET lease_until_ms = ? WHERE lease_owner = ? ' +
        'AND user_id = (SELECT id FROM mailring_users WHERE address = ?)',
    )
    return users.filter((user) => renew.run(until, owner, user).changes > 0)
  },
  finish(db: SqliteDb, owner: string, task: ReplicationTask, outcome: ReplicationOutcome): boolean {
    const held = db.prepare(HELD_ENTRY_SQL).get(task.user, owner) as Record<string, unknown> | undefined
    if (!held) return false
    const [sql, params] = finishStatement(held, task, outcome)
    db.prepare(sql).run(...params)
    if (!outcome.ok && outcome.server !== undefined)
      sqliteHealth.countFailure(db, outcome.server, outcome.error)
    return true
  },
  release(db: SqliteDb, owner: string): number {
    return db.prepare(RELEASE_SQL).run(owner).changes
  },
  stats(db: SqliteDb, nowMs: number): ReplicationQueueStats {
    const now = wholeMs(nowMs, 'nowMs')
    return queueStatsOf(
      now,
      db.prepare(STATS_BY_PRIORITY_SQL).all(now, now) as StatsRow[],
      db.prepare(STATS_LEASES_SQL).get(now, now) as Record<string, unknown>,
    )
  },
  marker(db: SqliteDb, key: string): string | undefined {
    return db.prepare(MARKER_SQL).pluck().get(key) as string | undefined
  },
  setMarker(db: SqliteDb, key: string, value: string): void {
    db.prepare(`${SET_MARKER_SQL} ON CONFLICT (key) DO UPDATE SET value = excluded.value`).run(key, value)
  },
}

/** How many times `limit` entries a claim reads before it locks them (others may be taking some). */
const CLAIM_WINDOW = 4
const MAX_CLAIM_WINDOW = 10_000

export const mysqlQueue = {
  /** One lookup and one multi-row upsert per chunk, rows in user id order (no lock order cycles). */
  async enqueue(conn: MysqlConn, {merged, times}: EnqueuePlan): Promise<EnqueueResult> {
    const serverIds = await mysqlServers.ids(conn)
    const result: EnqueueResult = {queued: 0, unknownUsers: 0}
    for (let from = 0; from < merged.length; from += QUEUE_CHUNK) {
      const chunk = merged.slice(from, from + QUEUE_CHUNK)
      const userIds = await mysqlUsers.ids(
        conn,
        chunk.map((request) => request.user),
      )
      const {rows, unknown} = queueRows(chunk, userIds, serverIds, times)
      if (rows.length > 0)
        await conn.query(
          `${UPSERT_ENTRY_COLUMNS} VALUES ? ON DUPLICATE KEY UPDATE ${mergeAssignments((column) => `VALUES(${column})`)}`,
          [rows, times.maxDelayMs, times.maxDelayMs],
        )
      result.queued += rows.length
      result.unknownUsers += unknown
    }
    return result
  },
  /**
   * Two steps, in the READ COMMITTED transaction the store opens: a plain read of the claimable entries in
   * claim order (a window a few times `limit` wide), then, slice by slice in that order, FOR UPDATE SKIP
   * LOCKED on those entries by primary key, checking again that they are due and free: an entry another
   * replicator is taking right now is skipped, not waited for, and no row is locked that is not taken. Open
   * moves and avoided servers are checked by the plain read (a move journaled at that very moment may still
   * see its user synced once more: harmless, a sync is idempotent).
   */
  async claim(
    conn: MysqlConn,
    {nowMs, limit, leaseUntilMs, owner, avoidServers}: ClaimPlan,
  ): Promise<ReplicationTask[]> {
    const avoid = avoidIds(avoidServers, await mysqlServers.ids(conn))
    const candidates = await arrayRows(
      conn,
      `SELECT q.user_id FROM mailring_replication_queue q WHERE ${claimableSql(nowMs, avoid)} ` +
        `ORDER BY ${CLAIM_ORDER} LIMIT ${Math.min(limit * CLAIM_WINDOW, MAX_CLAIM_WINDOW)}`,
      [],
    )
    const taken: number[] = []
    for (let next = 0; taken.length < limit && next < candidates.length;) {
      const slice = candidates.slice(next, next + limit - taken.length).map((row) => Number(row[0]))
      next += slice.length
      const locked = await arrayRows(
        conn,
        `SELECT user_id FROM mailring_replication_queue WHERE user_id IN (?) AND due_ms <= ${nowMs} ` +
          `AND (lease_until_ms IS NULL OR lease_until_ms <= ${nowMs}) FOR UPDATE SKIP LOCKED`,
        [slice],
      )
      taken.push(...locked.map((row) => Number(row[0])))
    }
    if (taken.length === 0) return []
    await conn.query(`${LEASE_SQL} WHERE user_id IN (?)`, [owner, leaseUntilMs, taken])
    const [rows] = await conn.query<Row[]>(`${TASK_SELECT} WHERE q.user_id IN (?) ORDER BY ${CLAIM_ORDER}`, [
      taken,
    ])
    return rows.map((row) => taskOf(row as unknown as TaskRow))
  },
  async renew(conn: MysqlConn, owner: string, users: readonly string[], until: number): Promise<string[]> {
    const held = new Set<string>()
    for (let from = 0; from < users.length; from += QUEUE_CHUNK) {
      const ids = await mysqlUsers.ids(conn, users.slice(from, from + QUEUE_CHUNK))
      if (ids.size === 0) continue
      await conn.query(
        'UPDATE mailring_replication_queue SET lease_until_ms = ? WHERE lease_owner = ? AND user_id IN (?)',
        [until, owner, [...ids.values()]],
      )
      const rows = await arrayRows(
        conn,
        'SELECT user_id FROM mailring_replication_queue WHERE lease_owner = ? AND user_id IN (?)',
        [owner, [...ids.values()]],
      )
      const stillHeld = new Set(rows.map((row) => Number(row[0])))
      for (const [user, id] of ids) if (stillHeld.has(id)) held.add(user)
    }
    return users.filter((user) => held.has(user))
  },
  async finish(
    conn: MysqlConn,
    owner: string,
    task: ReplicationTask,
    outcome: ReplicationOutcome,
  ): Promise<boolean> {
    const [[held]] = await conn.query<Row[]>(`${HELD_ENTRY_SQL} FOR UPDATE`, [task.user, owner])
    if (!held) return false
    const [sql, params] = finishStatement(held, task, outcome)
    await conn.query(sql, params)
    if (!outcome.ok && outcome.server !== undefined)
      await mysqlHealth.countFailure(conn, outcome.server, outcome.error)
    return true
  },
  async release(conn: MysqlConn, owner: string): Promise<number> {
    return affected(conn, RELEASE_SQL, [owner])
  },
  async stats(conn: MysqlConn, nowMs: number): Promise<ReplicationQueueStats> {
    const now = wholeMs(nowMs, 'nowMs')
    const [byPriority] = await conn.query<Row[]>(STATS_BY_PRIORITY_SQL, [now, now])
    const [[leases]] = await conn.query<Row[]>(STATS_LEASES_SQL, [now, now])
    return queueStatsOf(now, byPriority as unknown as StatsRow[], leases)
  },
  async marker(conn: MysqlConn, key: string): Promise<string | undefined> {
    const [[row]] = await conn.query<Row[]>(MARKER_SQL, [key])
    return row === undefined ? undefined : String(row.value)
  },
  async setMarker(conn: MysqlConn, key: string, value: string): Promise<void> {
    await conn.query(`${SET_MARKER_SQL} ON DUPLICATE KEY UPDATE value = VALUES(value)`, [key, value])
  },
}

export const sqliteHealth = {
  list(db: SqliteDb): ServerHealth[] {
    const createdAt = storeMetaOf(sqliteMeta.map(db)).createdAt
    return (db.prepare(SERVER_HEALTH_SQL).all() as HealthRow[]).map((row) => serverHealthOf(row, createdAt))
  },
  set(
    db: SqliteDb,
    server: string,
    expected: ServerHealthState,
    next: ServerHealthState,
    detail: string,
  ): boolean {
    checkHealth(expected, next)
    const serverId = sqliteServers.id(db, server)
    if (serverId === undefined) return false
    sqliteHealth.ensureRow(db, serverId)
    const update = healthUpdate(serverId, expected, next, detail, new Date().toISOString())
    return db.prepare(SET_HEALTH_SQL).run(...update).changes === 1
  },
  /** Counts a failed sync against a server (an unknown server is left out). */
  countFailure(db: SqliteDb, server: string, error: string): void {
    const serverId = sqliteServers.id(db, server)
    if (serverId === undefined) return
    sqliteHealth.ensureRow(db, serverId)
    db.prepare(COUNT_SYNC_FAILURE_SQL).run(error, serverId)
  },
  /** Gives a server without a health row the row it reads as (up since the store's creation). */
  ensureRow(db: SqliteDb, serverId: number): void {
    db.prepare(
      `INSERT INTO mailring_server_health ${HEALTH_COLUMNS} VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING`,
    ).run(...defaultHealthRow(serverId, storeMetaOf(sqliteMeta.map(db)).createdAt))
  },
}

export const mysqlHealth = {
  async list(conn: MysqlConn): Promise<ServerHealth[]> {
    const {createdAt} = storeMetaOf(await mysqlMeta.map(conn))
    const [rows] = await conn.query<Row[]>(SERVER_HEALTH_SQL)
    return rows.map((row) => serverHealthOf(row as unknown as HealthRow, createdAt))
  },
  async set(
    conn: MysqlConn,
    server: string,
    expected: ServerHealthState,
    next: ServerHealthState,
    detail: string,
  ): Promise<boolean> {
    checkHealth(expected, next)
    const serverId = await mysqlServers.id(conn, server)
    if (serverId === undefined) return false
    await mysqlHealth.ensureRow(conn, serverId)
    const update = healthUpdate(serverId, expected, next, detail, new Date().toISOString())
    return (await affected(conn, SET_HEALTH_SQL, update)) === 1
  },
  /** Counts a failed sync against a server (an unknown server is left out). */
  async countFailure(conn: MysqlConn, server: string, error: string): Promise<void> {
    const serverId = await mysqlServers.id(conn, server)
    if (serverId === undefined) return
    await mysqlHealth.ensureRow(conn, serverId)
    await conn.query(COUNT_SYNC_FAILURE_SQL, [error, serverId])
  },
  /** Gives a server without a health row the row it reads as (up since the store's creation). */
  async ensureRow(conn: MysqlConn, serverId: number): Promise<void> {
    const {createdAt} = storeMetaOf(await mysqlMeta.map(conn))
    await conn.query(
      `INSERT INTO mailring_server_health ${HEALTH_COLUMNS} VALUES (?) ON DUPLICATE KEY UPDATE server_id = server_id`,
      [defaultHealthRow(serverId, createdAt)],
    )
  },
}
