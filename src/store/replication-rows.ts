/**
 * The replicator's tables (schema 5, docs/decisions/0004-replicator.md) as rows, and the logic that does
 * not depend on the SQL dialect: the priority ranks the queue stores, requests merged before they are
 * written, a queue row as a ReplicationTask, server health with its defaults, hosts. Each store keeps its
 * upsert syntax, its locking and the transaction around them.
 */
import {MailringError} from '../core/errors.js'
import {OPEN_STATES_SQL} from './move-rows.js'
import {
  REPLICATION_PRIORITIES,
  type ClaimOptions,
  type EnqueueOptions,
  type Host,
  type HostRole,
  type ReplicationPriority,
  type ReplicationQueueStats,
  type ReplicationOutcome,
  type ReplicationRequest,
  type ReplicationTask,
  type ServerHealth,
  type ServerHealthState,
} from './store.js'

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

export function priorityRank(priority: ReplicationPriority): number {
  const rank = PRIORITY_RANK[priority]
  if (rank === undefined) throw new Error(`unknown replication priority ${String(priority)}`)
  return rank
}

/** Users (and their requests) per statement of an enqueue or a lookup: well below any packet limit. */
export const QUEUE_CHUNK = 1_000

/** A whole number of ms (a time or a length) that the SQL may hold, or an error naming it. */
export function wholeMs(value: number, what: string): number {
  if (!Number.isSafeInteger(value)) throw new Error(`${what} must be a whole number of ms, not ${value}`)
  return value
}

/** Requests of one call merged per user, as the store merges them into an entry already waiting. */
export interface MergedRequest {
  user: string
  rank: number
  /** The source server's name; null when unknown or when the requests named different ones. */
  source: string | null
  /** How many requests were merged: the generation is bumped by as many. */
  count: number
}

/** Merges the requests of one call per user (first appearance order). */
export function mergeRequests(requests: readonly ReplicationRequest[]): MergedRequest[] {
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
export function enqueueTimes(options: EnqueueOptions): {nowMs: number; dueMs: number; maxDelayMs: number} {
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
export function queueRows(
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
export function mergeAssignments(fresh: (column: string) => string): string {
  return [
    `due_ms = CASE WHEN ${fresh('due_ms')} < first_queued_ms + ? THEN ${fresh('due_ms')} ELSE first_queued_ms + ? END`,
    `source_server_id = CASE WHEN source_server_id = ${fresh('source_server_id')} THEN source_server_id ELSE NULL END`,
    `priority = CASE WHEN ${fresh('priority')} < priority THEN ${fresh('priority')} ELSE priority END`,
    `generation = generation + ${fresh('generation')}`,
  ].join(', ')
}

/** A claim's times and size, checked: whole ms, a limit of 0 or more. */
export function claimTimes(options: ClaimOptions): {nowMs: number; limit: number; leaseUntilMs: number} {
  const nowMs = wholeMs(options.nowMs, 'nowMs')
  const leaseMs = wholeMs(options.leaseMs, 'leaseMs')
  if (!Number.isSafeInteger(options.limit) || options.limit < 0)
    throw new Error(`limit must be a whole number, not ${options.limit}`)
  if (leaseMs <= 0) throw new Error('leaseMs must be positive')
  return {nowMs, limit: options.limit, leaseUntilMs: nowMs + leaseMs}
}

/** The ids of the servers a claim avoids (unknown names hold no copies: left out). */
export function avoidIds(
  servers: readonly string[] | undefined,
  serverIds: ReadonlyMap<string, number>,
): number[] {
  return (servers ?? []).flatMap((name) => {
    const id = serverIds.get(name)
    return id === undefined ? [] : [id]
  })
}

/** A server's id by name. */
export const SERVER_ID_SQL = 'SELECT id FROM mailring_servers WHERE name = ?'

/** A queue entry as a claim reads it. */
export interface TaskRow {
  user_id: number
  user: string
  priority: number
  source: string | null
  generation: number
  first_queued_ms: number
  attempts: number
}

/** The entries a claim may take: due, no live lease, no open move, no copy on a server to avoid. */
export function claimableSql(nowMs: number, avoidIds: readonly number[]): string {
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
export const CLAIM_ORDER = 'q.priority, q.due_ms, q.user_id'

/** The columns of a task, from mailring_replication_queue q, its user u and its source server s. */
export const TASK_SELECT =
  'SELECT q.user_id, u.address AS user, q.priority, s.name AS source, q.generation, q.first_queued_ms, q.attempts ' +
  'FROM mailring_replication_queue q JOIN mailring_users u ON u.id = q.user_id ' +
  'LEFT JOIN mailring_servers s ON s.id = q.source_server_id'

export function taskOf(row: TaskRow): ReplicationTask {
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
export const HELD_ENTRY_SQL =
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
export function finishStatement(
  entry: Readonly<Record<string, unknown>>,
  task: ReplicationTask,
  outcome: ReplicationOutcome,
): [string, unknown[]] {
  const userId = Number(entry.user_id)
  if (!outcome.ok) return [RETRY_ENTRY_SQL, [wholeMs(outcome.retryAtMs, 'retryAtMs'), outcome.error, userId]]
  return [Number(entry.generation) === task.generation ? DELETE_ENTRY_SQL : REQUEUE_ENTRY_SQL, [userId]]
}

/** Graceful stop: every task of an owner back, due at once. */
export const RELEASE_SQL =
  'UPDATE mailring_replication_queue SET lease_owner = NULL, lease_until_ms = NULL, due_ms = first_queued_ms ' +
  'WHERE lease_owner = ?'

/** Per priority: [priority, waiting, due, oldest first_queued_ms], then in flight and retrying (params: now x4). */
export const STATS_BY_PRIORITY_SQL =
  'SELECT priority, COUNT(*) AS waiting, ' +
  'SUM(CASE WHEN due_ms <= ? AND (lease_until_ms IS NULL OR lease_until_ms <= ?) THEN 1 ELSE 0 END) AS due, ' +
  'MIN(first_queued_ms) AS oldest FROM mailring_replication_queue GROUP BY priority'
export const STATS_LEASES_SQL =
  'SELECT SUM(CASE WHEN lease_until_ms > ? THEN 1 ELSE 0 END) AS in_flight, ' +
  'SUM(CASE WHEN attempts > 0 AND (lease_until_ms IS NULL OR lease_until_ms <= ?) THEN 1 ELSE 0 END) AS retrying ' +
  'FROM mailring_replication_queue'

export interface StatsRow {
  priority: number
  waiting: number | string
  due: number | string | null
  oldest: number | string | null
}

/** The stats of every priority (zero when none waits), the oldest change as an age at `nowMs`. */
export function queueStatsOf(
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

// Server health

export interface HealthRow {
  server: string
  health: string | null
  since: string | null
  detail: string | null
  sync_failures: number | null
  last_sync_error: string | null
}

/** Every server with its health row, if any (sorted by name). */
export const SERVER_HEALTH_SQL =
  'SELECT s.name AS server, h.health, h.since, h.detail, h.sync_failures, h.last_sync_error ' +
  'FROM mailring_servers s LEFT JOIN mailring_server_health h ON h.server_id = s.id ORDER BY s.name'

/** A server's health; one without a row is up since `createdAt` (the store's creation). */
export function serverHealthOf(row: HealthRow, createdAt: string): ServerHealth {
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
export function defaultHealthRow(serverId: number, createdAt: string): [number, string, string, string] {
  return [serverId, 'up', createdAt, '']
}
export const HEALTH_COLUMNS = '(server_id, health, since, detail)'

/**
 * Compare-and-set of a server's health (params from healthUpdate): `since` only changes with the health,
 * sync failures are reset when it becomes up.
 */
export const SET_HEALTH_SQL =
  'UPDATE mailring_server_health SET since = CASE WHEN ? = 1 THEN ? ELSE since END, ' +
  'sync_failures = CASE WHEN ? = 1 THEN 0 ELSE sync_failures END, ' +
  'last_sync_error = CASE WHEN ? = 1 THEN NULL ELSE last_sync_error END, ' +
  'detail = ?, health = ? WHERE server_id = ? AND health = ?'

export function healthUpdate(
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
export const COUNT_SYNC_FAILURE_SQL =
  'UPDATE mailring_server_health SET sync_failures = sync_failures + 1, last_sync_error = ? WHERE server_id = ?'

export function checkHealth(state: ServerHealthState): void {
  if (state !== 'up' && state !== 'down' && state !== 'returning')
    throw new Error(`unknown server health ${String(state)}`)
}

function oneLine(text: string): string {
  return text.replace(/\s*[\r\n]+\s*/g, ' ').trim()
}

// Hosts

export interface HostRow {
  name: string
  address: string
  role: string
  dovecot_version: string | null
}

export const LIST_HOSTS_SQL = 'SELECT name, address, role, dovecot_version FROM mailring_hosts ORDER BY name'
export const UPDATE_HOST_SQL =
  'UPDATE mailring_hosts SET address = ?, role = ?, dovecot_version = ? WHERE name = ?'
export const INSERT_HOST_SQL =
  'INSERT INTO mailring_hosts (address, role, dovecot_version, name) VALUES (?, ?, ?, ?)'
export const DELETE_HOST_SQL = 'DELETE FROM mailring_hosts WHERE name = ?'

export function hostOf(row: HostRow): Host {
  return {
    name: String(row.name),
    address: String(row.address),
    role: row.role as HostRole,
    dovecotVersion: row.dovecot_version === null ? null : String(row.dovecot_version),
  }
}

/** A host's values in the order UPDATE_HOST_SQL and INSERT_HOST_SQL take them, after checking its role. */
export function hostValues(host: Host): [string, HostRole, string | null, string] {
  if (host.role !== 'proxy' && host.role !== 'director')
    throw new MailringError(`Host ${host.name}: role must be proxy or director, not ${String(host.role)}.`, {
      code: 'host_refused',
    })
  return [host.address, host.role, host.dovecotVersion, host.name]
}

export function hostNameTaken(name: string): MailringError {
  return new MailringError(
    `Cannot add host ${name}: a mail server has that name already (see mailring node list); give the proxy or director another name.`,
    {code: 'host_name_taken'},
  )
}

/** A host by name (a new server may not take its name). */
export const HOST_NAMED_SQL = 'SELECT 1 FROM mailring_hosts WHERE name = ?'

export function serverNameTaken(name: string): MailringError {
  return new MailringError(
    `Cannot add server ${name}: a proxy or director host has that name already (see mailring proxy list); give the server another name.`,
    {code: 'server_name_taken'},
  )
}

// Markers

export const MARKER_SQL = 'SELECT value FROM mailring_replication_markers WHERE `key` = ?'
