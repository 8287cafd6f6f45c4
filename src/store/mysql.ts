import {randomUUID} from 'node:crypto'
import type {Readable} from 'node:stream'

import mysql from 'mysql2/promise'
import type {
  Connection,
  ConnectionOptions,
  Pool,
  PoolConnection,
  ResultSetHeader,
  RowDataPacket,
} from 'mysql2/promise'

import {ExitCode, MailringError} from '../core/errors.js'
import type {ServerState, Topology} from '../core/topology.js'
import {describeHolder, holderNow, LockedError, lockedError, sameHolder} from './lock.js'
import {initialMetaRows, storeMetaOf} from './meta-rows.js'
import {latestVersion, pendingMigrations} from './migrations/index.js'
import {mysqlMigrations} from './migrations/mysql.js'
import {mysqlSslOptions, PASSWORD_ENV, type MysqlSettings} from './mysql-settings.js'
import type {
  ClaimOptions,
  ClusterLock,
  EnqueueOptions,
  EnqueueResult,
  Host,
  InsertUsersResult,
  LockHolder,
  MoveRecord,
  MoveState,
  NewMove,
  PlacementChunk,
  PlacementScan,
  ReplaceUsersResult,
  ReplicationOutcome,
  ReplicationQueueStats,
  ReplicationRequest,
  ReplicationTask,
  ServerHealth,
  ServerHealthState,
  ServerUsage,
  Store,
  StoreMeta,
  UserBatch,
  UserListOptions,
  UserRecord,
  UsersTable,
  UsersTableChunk,
  UsersTableSpec,
} from './store.js'
import {
  domainRows,
  serverChanges,
  serverIdsByName,
  serverNotEmpty,
  topologyOfRows,
  usageOfServers,
  type ServerRow,
} from './topology-rows.js'
import {
  checkMove,
  DELETE_MOVES_OF_SERVER_SQL,
  OPEN_MOVES_OF_SERVER_SQL,
  serverHasOpenMoves,
  SWITCH_MOVE_SQL,
  switchProblem,
  switchStatements,
  type SwitchRow,
  MOVE_SELECT,
  RETIRE_MOVE_SQL,
  RETIRED_MOVES_SQL,
  moveRecordOf,
  OPEN_STATES_SQL,
  switchRefused,
  UNSWITCHED_STATES_SQL,
  type MoveRow,
} from './move-rows.js'
import {
  avoidIds,
  checkHealth,
  CLAIM_ORDER,
  claimableSql,
  claimTimes,
  COUNT_SYNC_FAILURE_SQL,
  defaultHealthRow,
  DELETE_HOST_SQL,
  enqueueTimes,
  finishStatement,
  HEALTH_COLUMNS,
  healthUpdate,
  HELD_ENTRY_SQL,
  HOST_NAMED_SQL,
  hostNameTaken,
  hostOf,
  hostValues,
  INSERT_HOST_SQL,
  LIST_HOSTS_SQL,
  MARKER_SQL,
  mergeAssignments,
  mergeRequests,
  QUEUE_CHUNK,
  queueRows,
  queueStatsOf,
  RELEASE_SQL,
  SERVER_HEALTH_SQL,
  SERVER_ID_SQL,
  serverNameTaken,
  serverHealthOf,
  SET_HEALTH_SQL,
  STATS_BY_PRIORITY_SQL,
  STATS_LEASES_SQL,
  TASK_SELECT,
  taskOf,
  UPDATE_HOST_SQL,
  wholeMs,
  type HealthRow,
  type HostRow,
  type StatsRow,
  type TaskRow,
} from './replication-rows.js'
import {
  batchServerIds,
  forEachCopy,
  PACKED_COPY,
  placementChunk,
  ReplaceTally,
  Rollback,
  serverIndexById,
  tallyInserts,
} from './user-rows.js'

/** The name of the cluster lock (GET_LOCK) and of the lock that serialises schema changes. */
export const CLUSTER_LOCK_NAME = 'mailring_cluster'
const MIGRATION_LOCK_NAME = 'mailring_migrate'
/** Rows per bulk INSERT: well below max_allowed_packet, large enough to be fast. */
const INSERT_CHUNK = 10_000
/** How many times `limit` entries a claim reads before it locks them (others may be taking some). */
const CLAIM_WINDOW = 4
const MAX_CLAIM_WINDOW = 10_000
/** mailring's tables, those that refer to others first (dropped in this order). */
const MAILRING_TABLES = [
  'mailring_replication_queue',
  'mailring_server_health',
  'mailring_replication_markers',
  'mailring_hosts',
  'mailring_moves',
  'mailring_copies',
  'mailring_domain_servers',
  'mailring_cluster_lock',
  'mailring_users',
  'mailring_domains',
  'mailring_servers',
  'mailring_meta',
]

type Row = RowDataPacket & Record<string, unknown>
type Queryable = Pick<Connection, 'query'>

/**
 * The MySQL/MariaDB store (mysql2): the production store, in the database Dovecot's userdb reads. A small
 * pool for queries and transactions (InnoDB, REPEATABLE READ); the cluster lock is GET_LOCK on a dedicated
 * connection of its own, held for the life of the lock.
 */
export class MysqlStore implements Store {
  readonly location: string
  private readonly pool: Pool
  private readonly options: ConnectionOptions
  private readonly settings: MysqlSettings
  private heldLock?: MysqlLock
  private consecutiveIds?: boolean

  private constructor(settings: MysqlSettings) {
    this.settings = settings
    this.location = settings.location
    this.options = connectionOptions(settings)
    this.pool = mysql.createPool({...this.options, connectionLimit: 4, maxIdle: 4})
    // An idle pooled connection that breaks is replaced on next use; never crash on its 'error'.
    this.pool.on('connection', (connection) => connection.on('error', () => {}))
  }

  /** Creates the schema (or finds it) in the database; `created` is false when it existed already. */
  static async init(
    settings: MysqlSettings,
    options: {copies?: number} = {},
  ): Promise<{store: MysqlStore; created: boolean}> {
    const store = new MysqlStore(settings)
    try {
      const created = await store.withMigrationLock(async (conn) => {
        if ((await store.schemaVersion(conn)) > 0) return false
        const existing = await store.mailringTables(conn)
        try {
          await store.migrate(conn, 0)
          await conn.query('INSERT INTO mailring_meta (`key`, value) VALUES ?', [
            initialMetaRows(options.copies),
          ])
        } catch (error) {
          // DDL commits as it goes: take back what this init created, so that nothing is half-written.
          await store.dropTables(conn, existing)
          throw error
        }
        return true
      })
      if (!created) await store.upgrade()
      return {store, created}
    } catch (error) {
      await store.close()
      throw store.storeError(error)
    }
  }

  /** Opens an existing store, applying pending migrations; refuses one written by a newer mailring. */
  static async open(settings: MysqlSettings): Promise<MysqlStore> {
    const store = new MysqlStore(settings)
    try {
      const version = await store.schemaVersion(store.pool)
      if (version === 0) {
        throw new MailringError(
          `No mailring store in ${store.location}: run \`mailring init\` first (or pass --db).`,
          {code: 'no_store', exitCode: ExitCode.store},
        )
      }
      if (pendingMigrations(mysqlMigrations, version, store.location).length > 0) await store.upgrade()
      return store
    } catch (error) {
      await store.close()
      throw store.storeError(error)
    }
  }

  async meta(): Promise<StoreMeta> {
    return storeMetaOf(await this.guard(() => this.metaMap(this.pool)))
  }

  async close(): Promise<void> {
    await this.heldLock?.release()
    await this.pool.end().catch(() => {})
  }

  async readTopology(): Promise<Topology> {
    return this.transaction(async (conn) => this.topologyNow(conn), {write: false})
  }

  async writeTopology(topology: Topology): Promise<void> {
    await this.transaction(async (conn) => {
      const changes = serverChanges(await this.serverRows(conn, true), topology)
      await conn.query('DELETE FROM mailring_domain_servers')
      await conn.query('DELETE FROM mailring_domains')
      for (const row of changes.removed) {
        const [holds] = await conn.query<Row[]>('SELECT 1 FROM mailring_copies WHERE server_id = ? LIMIT 1', [
          row.id,
        ])
        if (holds.length > 0) throw serverNotEmpty(row.name)
        const [moving] = await conn.query<Row[]>(OPEN_MOVES_OF_SERVER_SQL, [row.id, row.id])
        if (moving.length > 0) throw serverHasOpenMoves(row.name)
        await conn.query(DELETE_MOVES_OF_SERVER_SQL, [row.id, row.id])
        await conn.query('DELETE FROM mailring_servers WHERE id = ?', [row.id])
      }
      for (const values of changes.updated)
        await conn.query(
          'UPDATE mailring_servers SET address = ?, zone = ?, weight = ?, state = ? WHERE name = ?',
          values,
        )
      for (const values of changes.inserted) {
        const [hosts] = await conn.query<Row[]>(HOST_NAMED_SQL, [values[4]])
        if (hosts.length > 0) throw serverNameTaken(values[4])
        await conn.query(
          'INSERT INTO mailring_servers (address, zone, weight, state, name) VALUES (?, ?, ?, ?, ?)',
          values,
        )
      }
      const {domains, pins} = domainRows(topology, await this.serverIdMap(conn))
      for (const row of domains)
        await conn.query('INSERT INTO mailring_domains (domain, copies) VALUES (?, ?)', row)
      for (const row of pins)
        await conn.query('INSERT INTO mailring_domain_servers (domain, server_id) VALUES (?, ?)', row)
      await conn.query(
        "INSERT INTO mailring_meta (`key`, value) VALUES ('copies', ?) ON DUPLICATE KEY UPDATE value = VALUES(value)",
        [String(topology.copies)],
      )
    })
  }

  async insertUsers(
    batches: Iterable<UserBatch>,
    options: {skipExisting: boolean},
  ): Promise<InsertUsersResult> {
    return tallyInserts(options, (tally) =>
      this.transaction(async (conn) => {
        const serverIds = await this.serverIdMap(conn)
        const consecutive = await this.consecutiveAutoIncrement(conn)
        tally.begin(await this.lockUserIds(conn))
        let batchIndex = 0
        for (const batch of batches) {
          const ids = batchServerIds(batch, serverIds)
          for (let from = 0; from < batch.users.length; from += INSERT_CHUNK) {
            const to = Math.min(batch.users.length, from + INSERT_CHUNK)
            const rows: [string, string][] = []
            for (let i = from; i < to; i++) rows.push([batch.users[i]!, batch.domains[i]!])
            // userIds[i - from]: the id of a user added now, 0 for one that existed or repeats.
            const userIds = new Float64Array(to - from)
            let fast = false
            if (consecutive) {
              await conn.query('SAVEPOINT chunk')
              try {
                const [info] = await conn.query<ResultSetHeader>(
                  'INSERT INTO mailring_users (address, domain) VALUES ?',
                  [rows],
                )
                if (info.affectedRows === rows.length) {
                  for (let i = from; i < to; i++) {
                    userIds[i - from] = info.insertId + (i - from)
                    tally.add(info.insertId + (i - from), batchIndex, i)
                  }
                  fast = true
                } else await conn.query('ROLLBACK TO SAVEPOINT chunk')
              } catch (error) {
                if ((error as {code?: string}).code !== 'ER_DUP_ENTRY') throw error
                await conn.query('ROLLBACK TO SAVEPOINT chunk')
              }
            }
            if (!fast) {
              // Some of these users exist or repeat: insert the others, then tell them apart by id.
              const idOf = await this.upsertUsers(conn, rows)
              for (let i = from; i < to; i++) {
                const id = idOf.get(batch.users[i]!)!
                if (tally.add(id, batchIndex, i)) userIds[i - from] = id
              }
            }
            const copies: number[][] = []
            for (let i = from; i < to; i++) {
              const userId = userIds[i - from]!
              if (userId === 0) continue
              forEachCopy(batch, i, ids, (position, serverId) => copies.push([userId, position, serverId]))
            }
            await this.insertCopies(conn, copies)
          }
          batchIndex++
        }
        tally.end()
      }),
    )
  }

  async replaceUsers(batches: Iterable<UserBatch>, remove: readonly string[]): Promise<ReplaceUsersResult> {
    return this.transaction(async (conn) => {
      const tally = new ReplaceTally()
      const serverIds = await this.serverIdMap(conn)
      const firstNewId = (await this.lockUserIds(conn)) + 1
      for (const batch of batches) {
        const ids = batchServerIds(batch, serverIds)
        for (let from = 0; from < batch.users.length; from += INSERT_CHUNK) {
          const to = Math.min(batch.users.length, from + INSERT_CHUNK)
          // The last entry of a user wins: index of each user's last entry in this chunk.
          const last = new Map<string, number>()
          for (let i = from; i < to; i++) last.set(batch.users[i]!, i)
          const rows = [...last.values()].map((i) => [batch.users[i]!, batch.domains[i]!])
          const idOf = await this.upsertUsers(conn, rows)
          const userIds = [...idOf.values()]
          await conn.query('DELETE FROM mailring_copies WHERE user_id IN (?)', [userIds])
          const copies: number[][] = []
          for (const i of last.values()) {
            const id = idOf.get(batch.users[i]!)!
            tally.user(id, id >= firstNewId)
            forEachCopy(batch, i, ids, (position, serverId) => copies.push([id, position, serverId]))
          }
          await this.insertCopies(conn, copies)
        }
      }
      for (let from = 0; from < remove.length; from += INSERT_CHUNK) {
        const [info] = await conn.query<ResultSetHeader>('DELETE FROM mailring_users WHERE address IN (?)', [
          remove.slice(from, from + INSERT_CHUNK),
        ])
        tally.result.removed += info.affectedRows
      }
      return tally.result
    })
  }

  async removeUsers(users: readonly string[]): Promise<string[]> {
    return this.transaction(async (conn) => {
      const removed: string[] = []
      for (let from = 0; from < users.length; from += INSERT_CHUNK) {
        const part = users.slice(from, from + INSERT_CHUNK)
        const existing = await this.idsOf(conn, part)
        if (existing.size === 0) continue
        await conn.query('DELETE FROM mailring_users WHERE id IN (?)', [[...existing.values()]])
        removed.push(...part.filter((user) => existing.has(user)))
      }
      return removed
    })
  }

  async getUser(user: string): Promise<UserRecord | undefined> {
    return (
      await this.transaction((conn) => this.usersWithCopies(conn, 'address = ?', [user], 1), {write: false})
    )[0]
  }

  async listUsers(options: UserListOptions): Promise<UserRecord[]> {
    const where = options.domain === undefined ? 'address > ?' : 'address > ? AND domain = ?'
    const params =
      options.domain === undefined ? [options.after ?? ''] : [options.after ?? '', options.domain]
    return this.transaction((conn) => this.usersWithCopies(conn, where, params, options.limit), {
      write: false,
    })
  }

  async journalMoves(plan: string, moves: readonly NewMove[]): Promise<number> {
    return this.transaction(async (conn) => {
      const ids = await this.serverIdMap(conn)
      const now = new Date().toISOString()
      for (const move of moves) {
        const [[user]] = await conn.query<Row[]>(
          'SELECT id FROM mailring_users WHERE address = ? FOR UPDATE',
          [move.user],
        )
        const userId = user === undefined ? undefined : Number(user.id)
        let copyAt: number | undefined
        let copies = 0
        let hasOpenMove = false
        let holdsTarget = false
        if (userId !== undefined) {
          const [held] = await conn.query<Row[]>(
            'SELECT 1 FROM mailring_copies WHERE user_id = ? AND server_id = ? LIMIT 1',
            [userId, move.to === null ? -1 : (ids.get(move.to) ?? -1)],
          )
          holdsTarget = held.length > 0
          const [[counted]] = await conn.query<Row[]>(
            'SELECT COUNT(*) AS n FROM mailring_copies WHERE user_id = ?',
            [userId],
          )
          copies = Number(counted!.n)
          const [[copy]] = await conn.query<Row[]>(
            'SELECT server_id FROM mailring_copies WHERE user_id = ? AND position = ?',
            [userId, move.position],
          )
          copyAt = copy === undefined ? undefined : Number(copy.server_id)
          const [open] = await conn.query<Row[]>(
            `SELECT 1 FROM mailring_moves WHERE user_id = ? AND state IN (${OPEN_STATES_SQL}) LIMIT 1`,
            [userId],
          )
          hasOpenMove = open.length > 0
        }
        checkMove(move, {userId, copyAt, copies, hasOpenMove, holdsTarget}, ids)
        const server = (name: string | null) => (name === null ? null : ids.get(name))
        await conn.query(
          'INSERT INTO mailring_moves (user_id, position, from_server_id, to_server_id, state, plan, updated_at) ' +
            "VALUES (?, ?, ?, ?, 'planned', ?, ?)",
          [userId, move.position, server(move.from), server(move.to), plan, now],
        )
      }
      return moves.length
    })
  }

  async openMoves(): Promise<MoveRecord[]> {
    return this.transaction(
      async (conn) => {
        const [rows] = await conn.query<Row[]>(
          `${MOVE_SELECT} WHERE m.state IN (${OPEN_STATES_SQL}) ORDER BY m.id`,
        )
        return rows.map((row) => moveRecordOf(row as unknown as MoveRow))
      },
      {write: false},
    )
  }

  async setMoveState(id: number, expected: MoveState, next: MoveState, error?: string): Promise<boolean> {
    return this.transaction(async (conn) => {
      const [result] = await conn.query<ResultSetHeader>(
        'UPDATE mailring_moves SET state = ?, attempts = attempts + ?, last_error = COALESCE(?, last_error), ' +
          'updated_at = ? WHERE id = ? AND state = ?',
        [next, error === undefined ? 0 : 1, error ?? null, new Date().toISOString(), id, expected],
      )
      return result.affectedRows > 0
    })
  }

  /**
   * READ COMMITTED, and the user's row locked first: the switch reads and renumbers one user's copies by
   * ranges of (user_id, position), and under REPEATABLE READ those ranges take gap locks that reach into
   * the next user's rows, so that switches of neighbouring users running at once deadlocked (seen with
   * added copies, --parallel 3). A deadlock left anyway is retried: it rolled the whole switch back.
   */
  async switchMove(id: number): Promise<void> {
    for (let attempt = 1; ; attempt++) {
      try {
        return await this.switchOnce(id)
      } catch (error) {
        const cause = (error as {cause?: {code?: string}}).cause
        if (attempt >= 3 || cause?.code !== 'ER_LOCK_DEADLOCK') throw error
      }
    }
  }

  private async switchOnce(id: number): Promise<void> {
    await this.transaction(
      async (conn) => {
        const [[row]] = await conn.query<Row[]>(`${SWITCH_MOVE_SQL} FOR UPDATE`, [id])
        if (!row) throw switchRefused(id, 'no such move')
        await conn.query('SELECT id FROM mailring_users WHERE id = ? FOR UPDATE', [row.user_id])
        const idOf = (v: unknown) => (v === null || v === undefined ? null : Number(v))
        const move: SwitchRow = {
          user_id: Number(row.user_id),
          position: Number(row.position),
          from_server_id: idOf(row.from_server_id),
          to_server_id: idOf(row.to_server_id),
          state: String(row.state),
        }
        const [copyRows] = await conn.query<Row[]>(
          'SELECT server_id FROM mailring_copies WHERE user_id = ? FOR UPDATE',
          [move.user_id],
        )
        const holdsTarget = copyRows.some((c) => Number(c.server_id) === move.to_server_id)
        const problem = switchProblem(move, copyRows.length, holdsTarget)
        if (problem !== undefined) throw switchRefused(id, problem)
        for (const statement of switchStatements(move, copyRows.length)) {
          const [changed] = await conn.query<ResultSetHeader>(statement.sql, statement.params)
          if (statement.mustChange !== undefined && changed.affectedRows !== 1)
            throw switchRefused(id, statement.mustChange)
        }
        await conn.query("UPDATE mailring_moves SET state = 'switched', updated_at = ? WHERE id = ?", [
          new Date().toISOString(),
          id,
        ])
      },
      {isolation: 'READ COMMITTED'},
    )
  }

  async retireMove(id: number, trash: string | null): Promise<boolean> {
    return this.transaction(async (conn) => {
      const [result] = await conn.query<ResultSetHeader>(RETIRE_MOVE_SQL, [
        trash,
        new Date().toISOString(),
        id,
      ])
      return result.affectedRows > 0
    })
  }

  async retiredMoves(before: string): Promise<MoveRecord[]> {
    return this.transaction(
      async (conn) => {
        const [rows] = await conn.query<Row[]>(RETIRED_MOVES_SQL, [before])
        return rows.map((row) => moveRecordOf(row as unknown as MoveRow))
      },
      {write: false},
    )
  }

  async cancelUnswitchedMoves(): Promise<number> {
    return this.transaction(async (conn) => {
      const [result] = await conn.query<ResultSetHeader>(
        `UPDATE mailring_moves SET state = 'cancelled', updated_at = ? WHERE state IN (${UNSWITCHED_STATES_SQL})`,
        [new Date().toISOString()],
      )
      return result.affectedRows
    })
  }

  async enqueueReplication(
    requests: readonly ReplicationRequest[],
    options: EnqueueOptions,
  ): Promise<EnqueueResult> {
    const times = enqueueTimes(options)
    const merged = mergeRequests(requests)
    if (merged.length === 0) return {queued: 0, unknownUsers: 0}
    return this.transaction(async (conn) => {
      const serverIds = await this.serverIdMap(conn)
      const result: EnqueueResult = {queued: 0, unknownUsers: 0}
      for (let from = 0; from < merged.length; from += QUEUE_CHUNK) {
        const chunk = merged.slice(from, from + QUEUE_CHUNK)
        // One lookup and one multi-row upsert per chunk, rows in user id order (no lock order cycles).
        const userIds = await this.idsOf(
          conn,
          chunk.map((request) => request.user),
        )
        const {rows, unknown} = queueRows(chunk, userIds, serverIds, times)
        if (rows.length > 0)
          await conn.query(
            'INSERT INTO mailring_replication_queue (user_id, priority, source_server_id, due_ms, first_queued_ms, generation) ' +
              `VALUES ? ON DUPLICATE KEY UPDATE ${mergeAssignments((column) => `VALUES(${column})`)}`,
            [rows, times.maxDelayMs, times.maxDelayMs],
          )
        result.queued += rows.length
        result.unknownUsers += unknown
      }
      return result
    })
  }

  /**
   * Two steps in one READ COMMITTED transaction: a plain read of the claimable entries in claim order
   * (a window a few times `limit` wide), then, slice by slice in that order, FOR UPDATE SKIP LOCKED on
   * those entries by primary key, checking again that they are due and free: an entry another replicator
   * is taking right now is skipped, not waited for, and no row is locked that is not taken. Open moves and
   * avoided servers are checked by the plain read (a move journaled at that very moment may still see its
   * user synced once more: harmless, a sync is idempotent).
   */
  async claimReplication(options: ClaimOptions): Promise<ReplicationTask[]> {
    const {nowMs, limit, leaseUntilMs} = claimTimes(options)
    if (limit === 0) return []
    return this.transaction(
      async (conn) => {
        const avoid = avoidIds(options.avoidServers, await this.serverIdMap(conn))
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
        await conn.query(
          'UPDATE mailring_replication_queue SET lease_owner = ?, lease_until_ms = ? WHERE user_id IN (?)',
          [options.owner, leaseUntilMs, taken],
        )
        const [rows] = await conn.query<Row[]>(
          `${TASK_SELECT} WHERE q.user_id IN (?) ORDER BY ${CLAIM_ORDER}`,
          [taken],
        )
        return rows.map((row) => taskOf(row as unknown as TaskRow))
      },
      {isolation: 'READ COMMITTED'},
    )
  }

  async renewReplication(owner: string, users: readonly string[], leaseUntilMs: number): Promise<string[]> {
    const until = wholeMs(leaseUntilMs, 'leaseUntilMs')
    if (users.length === 0) return []
    return this.transaction(async (conn) => {
      const held = new Set<string>()
      for (let from = 0; from < users.length; from += QUEUE_CHUNK) {
        const ids = await this.idsOf(conn, users.slice(from, from + QUEUE_CHUNK))
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
    })
  }

  async finishReplication(
    owner: string,
    task: ReplicationTask,
    outcome: ReplicationOutcome,
  ): Promise<boolean> {
    return this.transaction(async (conn) => {
      const [[held]] = await conn.query<Row[]>(`${HELD_ENTRY_SQL} FOR UPDATE`, [task.user, owner])
      if (!held) return false
      const [sql, params] = finishStatement(held, task, outcome)
      await conn.query(sql, params)
      if (outcome.ok) return true
      if (outcome.server !== undefined) {
        const [[server]] = await conn.query<Row[]>(SERVER_ID_SQL, [outcome.server])
        if (server) {
          await this.ensureHealthRow(conn, Number(server.id))
          await conn.query(COUNT_SYNC_FAILURE_SQL, [outcome.error, server.id])
        }
      }
      return true
    })
  }

  async releaseReplication(owner: string): Promise<number> {
    return this.transaction(async (conn) => {
      const [result] = await conn.query<ResultSetHeader>(RELEASE_SQL, [owner])
      return result.affectedRows
    })
  }

  async replicationStats(nowMs: number): Promise<ReplicationQueueStats> {
    const now = wholeMs(nowMs, 'nowMs')
    return this.transaction(
      async (conn) => {
        const [byPriority] = await conn.query<Row[]>(STATS_BY_PRIORITY_SQL, [now, now])
        const [[leases]] = await conn.query<Row[]>(STATS_LEASES_SQL, [now, now])
        return queueStatsOf(now, byPriority as unknown as StatsRow[], leases)
      },
      {write: false},
    )
  }

  async replicationMarker(key: string): Promise<string | undefined> {
    return this.guard(async () => {
      const [[row]] = await this.pool.query<Row[]>(MARKER_SQL, [key])
      return row === undefined ? undefined : String(row.value)
    })
  }

  async setReplicationMarker(key: string, value: string): Promise<void> {
    await this.transaction(async (conn) => {
      await conn.query(
        'INSERT INTO mailring_replication_markers (`key`, value) VALUES (?, ?) ON DUPLICATE KEY UPDATE value = VALUES(value)',
        [key, value],
      )
    })
  }

  async serverHealth(): Promise<ServerHealth[]> {
    return this.transaction(
      async (conn) => {
        const {createdAt} = storeMetaOf(await this.metaMap(conn))
        const [rows] = await conn.query<Row[]>(SERVER_HEALTH_SQL)
        return rows.map((row) => serverHealthOf(row as unknown as HealthRow, createdAt))
      },
      {write: false},
    )
  }

  async setServerHealth(
    server: string,
    expected: ServerHealthState,
    next: ServerHealthState,
    detail: string,
  ): Promise<boolean> {
    checkHealth(expected)
    checkHealth(next)
    return this.transaction(async (conn) => {
      const [[row]] = await conn.query<Row[]>(SERVER_ID_SQL, [server])
      if (!row) return false
      await this.ensureHealthRow(conn, Number(row.id))
      const [result] = await conn.query<ResultSetHeader>(
        SET_HEALTH_SQL,
        healthUpdate(Number(row.id), expected, next, detail, new Date().toISOString()),
      )
      return result.affectedRows === 1
    })
  }

  async listHosts(): Promise<Host[]> {
    return this.guard(async () => {
      const [rows] = await this.pool.query<Row[]>(LIST_HOSTS_SQL)
      return rows.map((row) => hostOf(row as unknown as HostRow))
    })
  }

  async putHost(host: Host): Promise<void> {
    const values = hostValues(host)
    await this.transaction(async (conn) => {
      const [servers] = await conn.query<Row[]>(`${SERVER_ID_SQL} LOCK IN SHARE MODE`, [host.name])
      if (servers.length > 0) throw hostNameTaken(host.name)
      const [updated] = await conn.query<ResultSetHeader>(UPDATE_HOST_SQL, values)
      if (updated.affectedRows === 0) await conn.query(INSERT_HOST_SQL, values)
    })
  }

  async removeHost(name: string): Promise<boolean> {
    return this.transaction(async (conn) => {
      const [result] = await conn.query<ResultSetHeader>(DELETE_HOST_SQL, [name])
      return result.affectedRows > 0
    })
  }

  /** Gives a server without a health row the row it reads as (up since the store's creation). */
  private async ensureHealthRow(conn: Queryable, serverId: number): Promise<void> {
    const {createdAt} = storeMetaOf(await this.metaMap(conn))
    await conn.query(
      `INSERT INTO mailring_server_health ${HEALTH_COLUMNS} VALUES (?) ON DUPLICATE KEY UPDATE server_id = server_id`,
      [defaultHealthRow(serverId, createdAt)],
    )
  }

  async countUsers(): Promise<number> {
    return this.guard(async () => {
      const [[row]] = await this.pool.query<Row[]>('SELECT COUNT(*) AS n FROM mailring_users')
      return Number(row!.n)
    })
  }

  async serverUsage(): Promise<ServerUsage[]> {
    return this.transaction(
      async (conn) => {
        const [rows] = await conn.query<Row[]>(
          'SELECT server_id, COUNT(*) AS copies, CAST(SUM(position = 0) AS SIGNED) AS primaries FROM mailring_copies GROUP BY server_id',
        )
        const counts = new Map(
          rows.map((row) => [
            Number(row.server_id),
            {copies: Number(row.copies), primaries: Number(row.primaries)},
          ]),
        )
        return usageOfServers(await this.serverRows(conn), counts)
      },
      {write: false},
    )
  }

  async *scanUsers(chunkSize = 50_000): AsyncGenerator<string[]> {
    const conn = await this.guard(() => this.pool.getConnection())
    try {
      await this.guard(async () => {
        await conn.query('SET TRANSACTION ISOLATION LEVEL REPEATABLE READ')
        await conn.query('START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY')
      })
      let after = 0
      for (;;) {
        const rows = await this.guard(() =>
          arrayRows(conn, 'SELECT id, address FROM mailring_users WHERE id > ? ORDER BY id LIMIT ?', [
            after,
            chunkSize,
          ]),
        )
        if (rows.length === 0) return
        after = Number(rows[rows.length - 1]![0])
        yield rows.map((row) => row[1] as string)
      }
    } finally {
      await conn.query('COMMIT').catch(() => {})
      conn.release()
    }
  }

  async scanPlacements(chunkSize = 50_000): Promise<PlacementScan> {
    // A connection of its own with a consistent snapshot for the whole scan (InnoDB MVCC).
    const conn = await this.guard(() => this.pool.getConnection())
    let servers: ServerRow[]
    try {
      await this.guard(async () => {
        await conn.query('SET TRANSACTION ISOLATION LEVEL REPEATABLE READ')
        await conn.query('START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY')
      })
      servers = await this.guard(() => this.serverRows(conn))
    } catch (error) {
      conn.release()
      throw error
    }
    const indexOfId = serverIndexById(servers)
    const guard = <T>(work: () => Promise<T>): Promise<T> => this.guard(work)
    async function* chunks(): AsyncGenerator<PlacementChunk> {
      try {
        let after = 0
        for (;;) {
          const chunk = await guard(async () => {
            const users = await arrayRows(
              conn,
              'SELECT id, address FROM mailring_users WHERE id > ? ORDER BY id LIMIT ?',
              [after, chunkSize],
            )
            if (users.length === 0) return undefined
            const first = users[0]![0] as number
            const last = users[users.length - 1]![0] as number
            const copies = await arrayRows(
              conn,
              `SELECT ${PACKED_COPY} FROM mailring_copies WHERE user_id BETWEEN ? AND ? ORDER BY user_id, position`,
              [first, last],
            )
            after = last
            return placementChunk(
              users.map((row) => row[0] as number),
              users.map((row) => row[1] as string),
              copies.map((row) => Number(row[0])),
              indexOfId,
            )
          })
          if (!chunk) return
          yield chunk
        }
      } finally {
        await conn.query('COMMIT').catch(() => {})
        conn.release()
      }
    }
    return {servers: servers.map((row) => row.name), chunks: chunks()}
  }

  async acquireLock(command: string): Promise<ClusterLock> {
    if (this.heldLock && !this.heldLock.isLost()) throw lockedError(this.heldLock.holder)
    const holder = holderNow(command)
    let conn: Connection | undefined
    try {
      conn = await mysql.createConnection(this.options)
      const [[row]] = await conn.query<Row[]>(
        `SELECT GET_LOCK('${CLUSTER_LOCK_NAME}', 0) AS got, CONNECTION_ID() AS id`,
      )
      if (Number(row!.got) !== 1) {
        const current = await this.lockRow(this.pool)
        throw current
          ? lockedError(current)
          : new LockedError(
              `The cluster is locked by another mailring process that is just starting or stopping: try again.`,
            )
      }
      // A row left behind means its holder's connection died without releasing: tell the new holder.
      const previous = await this.lockRow(conn)
      // The token names the connection that holds GET_LOCK, so that `mailring unlock` ends that one only.
      const token = `${Number(row!.id)}:${randomUUID()}`
      await conn.query(
        'REPLACE INTO mailring_cluster_lock (id, token, pid, host, command, since) VALUES (1, ?, ?, ?, ?, ?)',
        [token, holder.pid, holder.host, holder.command, holder.since],
      )
      const lock = new MysqlLock(conn, Number(row!.id), token, holder, previous, this.location, () => {
        if (this.heldLock === lock) this.heldLock = undefined
      })
      this.heldLock = lock
      return lock
    } catch (error) {
      await conn?.end().catch(() => {})
      throw this.storeError(error)
    }
  }

  async lockHolder(): Promise<LockHolder | undefined> {
    return this.guard(async () =>
      (await this.lockConnection()) === undefined ? undefined : this.lockRow(this.pool),
    )
  }

  async breakLock(expected: LockHolder): Promise<boolean> {
    return this.guard(async () => {
      const holding = await this.lockConnection()
      if (holding === undefined) return false
      const [rows] = await this.pool.query<Row[]>(
        'SELECT token, pid, host, command, since FROM mailring_cluster_lock WHERE id = 1',
      )
      const row = rows[0]
      // The row must be the holding connection's own: a row left by a holder whose connection died, read
      // while a new holder has just taken GET_LOCK, names someone who no longer holds it.
      if (
        !row ||
        !sameHolder(holderOfRow(row), expected) ||
        String(row.token).split(':')[0] !== String(holding)
      )
        return false
      try {
        await this.pool.query(`KILL CONNECTION ${holding}`)
      } catch (error) {
        // Gone already: its holder released the lock, or its connection ended, in the meantime.
        if ((error as {code?: string}).code === 'ER_NO_SUCH_THREAD') return false
        throw error
      }
      await this.pool.query('DELETE FROM mailring_cluster_lock WHERE id = 1 AND token = ?', [row.token])
      // KILL returns before the killed connection has ended and freed GET_LOCK: wait for that (briefly).
      for (let waited = 0; waited < 5_000 && (await this.lockConnection()) === holding; waited += 50)
        await new Promise((resolve) => setTimeout(resolve, 50))
      return true
    })
  }

  /** The id of the connection that holds GET_LOCK, if one does. */
  private async lockConnection(): Promise<number | undefined> {
    const [[row]] = await this.pool.query<Row[]>(`SELECT IS_USED_LOCK('${CLUSTER_LOCK_NAME}') AS id`)
    return row!.id === null ? undefined : Number(row!.id)
  }

  async usersTable(spec: UsersTableSpec): Promise<UsersTable> {
    const columns =
      spec.userColumn !== undefined ? [spec.userColumn] : [spec.localColumn!, spec.domainColumn!]
    const known = await this.tableColumns(spec.table, spec.source)
    const missing = columns.find((column) => !known.has(column.toLowerCase()))
    if (missing !== undefined) throw missingColumn(spec, missing, known, spec.source)
    const pool = this.pool
    const guard = <T>(work: () => Promise<T>): Promise<T> => this.guard(work)
    const wrap = (error: unknown): unknown => this.storeError(error)
    const addressSql =
      spec.userColumn !== undefined
        ? quoteIdentifier(spec.userColumn)
        : `CONCAT(${quoteIdentifier(spec.localColumn!)}, '@', ${quoteIdentifier(spec.domainColumn!)})`
    return {
      name: spec.table,
      checkColumns: async (extra, source) => {
        const known = await this.tableColumns(spec.table, spec.source)
        const absent = extra.find((column) => !known.has(column.toLowerCase()))
        if (absent !== undefined) throw missingColumn(spec, absent, known, source)
      },
      differences: async () => {
        // Only when the operator's column(s) are indexed strings: otherwise each lookup would scan.
        const first = spec.userColumn ?? spec.localColumn!
        const [info] = await this.guard(() =>
          this.pool.query<Row[]>(
            `SELECT c.COLUMN_NAME AS name, c.CHARACTER_SET_NAME AS charset, c.COLLATION_NAME AS collation,
               EXISTS (SELECT 1 FROM information_schema.STATISTICS s WHERE s.TABLE_SCHEMA = c.TABLE_SCHEMA
                 AND s.TABLE_NAME = c.TABLE_NAME AND s.COLUMN_NAME = c.COLUMN_NAME AND s.SEQ_IN_INDEX = 1) AS indexed
             FROM information_schema.COLUMNS c WHERE c.TABLE_SCHEMA = DATABASE() AND c.TABLE_NAME = ?`,
            [spec.table],
          ),
        )
        const column = (name: string): Row | undefined =>
          info.find((row) => String(row.name).toLowerCase() === name.toLowerCase())
        const columns =
          spec.userColumn !== undefined ? [spec.userColumn] : [spec.localColumn!, spec.domainColumn!]
        if (columns.some((name) => !column(name)?.charset || !column(name)?.collation)) return undefined
        if (Number(column(first)!.indexed) !== 1) return undefined
        const as = (name: string, value: string): string => {
          const row = column(name)!
          const charset = String(row.charset)
          const collation = String(row.collation)
          if (!/^\w+$/.test(charset) || !/^\w+$/.test(collation))
            throw new Error(`odd collation ${collation}`)
          return `CONVERT(${value} USING ${charset}) COLLATE ${collation}`
        }
        const t = quoteIdentifier(spec.table)
        const unmatchedSql = `SELECT ${addressSql} FROM ${t} WHERE NOT EXISTS (SELECT 1 FROM mailring_users u WHERE u.address = CONVERT(${addressSql} USING utf8mb4) COLLATE utf8mb4_bin)`
        const domainOfU = "SUBSTRING_INDEX(u.address, '@', -1)"
        const localOfU = `LEFT(u.address, CHAR_LENGTH(u.address) - CHAR_LENGTH(${domainOfU}) - 1)`
        const listed =
          spec.userColumn !== undefined
            ? `o.${quoteIdentifier(spec.userColumn)} = ${as(spec.userColumn, 'u.address')}`
            : `o.${quoteIdentifier(spec.localColumn!)} = ${as(spec.localColumn!, localOfU)} AND o.${quoteIdentifier(spec.domainColumn!)} = ${as(spec.domainColumn!, domainOfU)}`
        const unlistedSql = `SELECT u.address FROM mailring_users u WHERE NOT EXISTS (SELECT 1 FROM ${t} o WHERE ${listed})`
        const column0 = async function* (sql: string): AsyncGenerator<string[]> {
          const conn = await guard(() => pool.getConnection())
          try {
            const rows = await guard(() => arrayRows(conn, sql, []))
            for (let from = 0; from < rows.length; from += 10_000)
              yield rows.slice(from, from + 10_000).map((row) => text(row[0]))
          } finally {
            conn.release()
          }
        }
        return {unmatched: column0(unmatchedSql), unlisted: column0(unlistedSql)}
      },
      rows: (extra = [], chunkSize = 10_000) => {
        const sql = `SELECT ${[addressSql, ...extra.map(quoteIdentifier)].join(', ')} FROM ${quoteIdentifier(spec.table)}`
        async function* chunks(): AsyncGenerator<UsersTableChunk> {
          const conn = await guard(() => pool.getConnection())
          try {
            await conn.query('SET TRANSACTION ISOLATION LEVEL REPEATABLE READ')
            await conn.query('START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY')
            // Streamed: the promise API has no .stream(), the callback connection underneath has.
            const stream = (conn.connection as unknown as {query(o: object): {stream(): Readable}})
              .query({sql, rowsAsArray: true})
              .stream()
            let chunk: UsersTableChunk = {users: [], columns: extra.map(() => [])}
            try {
              for await (const row of stream as AsyncIterable<unknown[]>) {
                chunk.users.push(text(row[0]))
                for (let c = 0; c < extra.length; c++) chunk.columns[c]!.push(text(row[c + 1]))
                if (chunk.users.length >= chunkSize) {
                  yield chunk
                  chunk = {users: [], columns: extra.map(() => [])}
                }
              }
            } catch (error) {
              stream.destroy()
              throw error
            }
            if (chunk.users.length > 0) yield chunk
            await conn.query('COMMIT')
          } catch (error) {
            throw wrap(error)
          } finally {
            conn.release()
          }
        }
        return chunks()
      },
    }
  }

  /** The columns (lower-case) of a table in the store's database; a missing table is one clear line. */
  private async tableColumns(table: string, source: string): Promise<Set<string>> {
    checkIdentifier(table, source)
    const [rows] = await this.guard(() =>
      this.pool.query<Row[]>(
        'SELECT COLUMN_NAME AS name FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = ?',
        [table],
      ),
    )
    if (rows.length === 0) {
      throw new MailringError(
        `${source}: the users table \`${table}\` does not exist in database ${this.settings.database} (or this user may not see it).`,
        {code: 'users_table'},
      )
    }
    return new Set(rows.map((row) => String(row.name).toLowerCase()))
  }

  // ---- helpers

  private async transaction<T>(
    work: (conn: PoolConnection) => Promise<T>,
    options: {write?: boolean; isolation?: 'READ COMMITTED'} = {},
  ): Promise<T> {
    const write = options.write ?? true
    const conn = await this.guard(() => this.pool.getConnection())
    try {
      // For the next transaction only: the pool's connections stay REPEATABLE READ.
      if (options.isolation)
        await this.guard(() => conn.query(`SET TRANSACTION ISOLATION LEVEL ${options.isolation}`))
      await this.guard(() => conn.query(write ? 'START TRANSACTION' : 'START TRANSACTION READ ONLY'))
      let result: T
      try {
        result = await this.guard(() => work(conn))
        if (write && this.heldLock) await this.heldLock.verify(conn)
        await this.guard(() => conn.query('COMMIT'))
      } catch (error) {
        await conn.query('ROLLBACK').catch(() => {})
        throw error
      }
      return result
    } finally {
      conn.release()
    }
  }

  /** Runs `work` on one connection holding the migration lock (schema changes one at a time). */
  private async withMigrationLock<T>(work: (conn: PoolConnection) => Promise<T>): Promise<T> {
    const conn = await this.guard(() => this.pool.getConnection())
    try {
      const [[row]] = await this.guard(() =>
        conn.query<Row[]>(`SELECT GET_LOCK('${MIGRATION_LOCK_NAME}', 60) AS got`),
      )
      if (Number(row!.got) !== 1)
        throw new MailringError(
          `Store ${this.location}: another mailring is changing the schema; try again.`,
          {
            code: 'locked',
            exitCode: ExitCode.locked,
          },
        )
      try {
        return await this.guard(() => work(conn))
      } finally {
        await conn.query(`DO RELEASE_LOCK('${MIGRATION_LOCK_NAME}')`).catch(() => {})
      }
    } finally {
      conn.release()
    }
  }

  private async upgrade(): Promise<void> {
    await this.withMigrationLock(async (conn) => this.migrate(conn, await this.schemaVersion(conn)))
  }

  private async migrate(conn: Queryable, current: number): Promise<void> {
    for (const migration of pendingMigrations(mysqlMigrations, current, this.location)) {
      for (const statement of migration.statements) await conn.query(statement)
      await conn.query(
        "INSERT INTO mailring_meta (`key`, value) VALUES ('schema_version', ?) ON DUPLICATE KEY UPDATE value = VALUES(value)",
        [String(migration.version)],
      )
    }
  }

  private async schemaVersion(conn: Queryable): Promise<number> {
    const [tables] = await conn.query<Row[]>(
      "SELECT 1 FROM information_schema.TABLES WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = 'mailring_meta'",
    )
    if (tables.length === 0) {
      const [[db]] = await conn.query<Row[]>('SELECT DATABASE() AS db')
      if (db!.db === null)
        throw new MailringError(`Store ${this.location}: no database selected.`, {
          code: 'store',
          exitCode: ExitCode.store,
        })
      return 0
    }
    const [rows] = await conn.query<Row[]>("SELECT value FROM mailring_meta WHERE `key` = 'schema_version'")
    return rows.length === 0 ? 0 : Number(rows[0]!.value)
  }

  private async mailringTables(conn: Queryable): Promise<Set<string>> {
    const [rows] = await conn.query<Row[]>(
      "SELECT TABLE_NAME AS name FROM information_schema.TABLES WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME LIKE 'mailring\\_%'",
    )
    return new Set(rows.map((row) => String(row.name)))
  }

  private async dropTables(conn: Queryable, keep: Set<string>): Promise<void> {
    for (const table of MAILRING_TABLES) {
      if (keep.has(table)) continue
      await conn.query(`DROP TABLE IF EXISTS ${table}`).catch(() => {})
    }
  }

  private async metaMap(conn: Queryable): Promise<Map<string, string>> {
    const [rows] = await conn.query<Row[]>('SELECT `key`, value FROM mailring_meta')
    return new Map(rows.map((row) => [String(row.key), String(row.value)]))
  }

  private async serverRows(conn: Queryable, forUpdate = false): Promise<ServerRow[]> {
    const [rows] = await conn.query<Row[]>(
      `SELECT id, name, address, zone, weight, state FROM mailring_servers ORDER BY id${forUpdate ? ' FOR UPDATE' : ''}`,
    )
    return rows.map((row) => ({
      id: Number(row.id),
      name: String(row.name),
      address: String(row.address),
      zone: row.zone === null ? null : String(row.zone),
      weight: Number(row.weight),
      state: row.state as ServerState,
    }))
  }

  private async serverIdMap(conn: Queryable): Promise<Map<string, number>> {
    return serverIdsByName(await this.serverRows(conn))
  }

  /** The highest user id (0 for none), read FOR UPDATE: ids above it are then the users this transaction adds. */
  private async lockUserIds(conn: Queryable): Promise<number> {
    const [[top]] = await conn.query<Row[]>(
      'SELECT COALESCE(MAX(id), 0) AS top FROM mailring_users FOR UPDATE',
    )
    return Number(top!.top)
  }

  /** Whether a multi-row INSERT gets consecutive ids (innodb_autoinc_lock_mode 0 or 1, increment 1). */
  private async consecutiveAutoIncrement(conn: Queryable): Promise<boolean> {
    if (this.consecutiveIds === undefined) {
      const [[row]] = await conn.query<Row[]>(
        'SELECT @@innodb_autoinc_lock_mode AS mode, @@auto_increment_increment AS step',
      )
      this.consecutiveIds = Number(row!.mode) !== 2 && Number(row!.step) === 1
    }
    return this.consecutiveIds
  }

  private async idsOf(conn: Queryable, users: readonly string[]): Promise<Map<string, number>> {
    if (users.length === 0) return new Map()
    const rows = await arrayRows(conn, 'SELECT address, id FROM mailring_users WHERE address IN (?)', [users])
    return new Map(rows.map((row) => [row[0] as string, Number(row[1])]))
  }

  /** Adds the users (address, domain) that do not exist yet; the ids of all of them, by address. */
  private async upsertUsers(conn: Queryable, rows: string[][]): Promise<Map<string, number>> {
    await conn.query(
      'INSERT INTO mailring_users (address, domain) VALUES ? ON DUPLICATE KEY UPDATE id = id',
      [rows],
    )
    return this.idsOf(
      conn,
      rows.map((row) => row[0]!),
    )
  }

  private async insertCopies(conn: Queryable, copies: number[][]): Promise<void> {
    for (let from = 0; from < copies.length; from += INSERT_CHUNK * 2)
      await conn.query('INSERT INTO mailring_copies (user_id, position, server_id) VALUES ?', [
        copies.slice(from, from + INSERT_CHUNK * 2),
      ])
  }

  private async lockRow(conn: Queryable): Promise<LockHolder | undefined> {
    const [rows] = await conn.query<Row[]>(
      'SELECT pid, host, command, since FROM mailring_cluster_lock WHERE id = 1',
    )
    return rows[0] && holderOfRow(rows[0])
  }

  private async topologyNow(conn: Queryable): Promise<Topology> {
    const meta = await this.metaMap(conn)
    const servers = await this.serverRows(conn)
    const [pins] = await conn.query<Row[]>(
      'SELECT d.domain, s.name FROM mailring_domain_servers d JOIN mailring_servers s ON s.id = d.server_id',
    )
    const [domains] = await conn.query<Row[]>('SELECT domain, copies FROM mailring_domains')
    return topologyOfRows({
      meta,
      servers,
      domains: domains.map((row) => [String(row.domain), row.copies === null ? null : Number(row.copies)]),
      pins: pins.map((row) => [String(row.domain), String(row.name)]),
    })
  }

  private async usersWithCopies(
    conn: Queryable,
    where: string,
    params: unknown[],
    limit: number,
  ): Promise<UserRecord[]> {
    const [users] = await conn.query<Row[]>(
      `SELECT id, address, domain FROM mailring_users WHERE ${where} ORDER BY address LIMIT ?`,
      [...params, limit],
    )
    if (users.length === 0) return []
    const [copies] = await conn.query<Row[]>(
      'SELECT c.user_id, s.name FROM mailring_copies c JOIN mailring_servers s ON s.id = c.server_id WHERE c.user_id IN (?) ORDER BY c.user_id, c.position',
      [users.map((row) => row.id)],
    )
    const byUser = new Map<number, string[]>()
    for (const row of copies) {
      const list = byUser.get(Number(row.user_id)) ?? []
      list.push(String(row.name))
      byUser.set(Number(row.user_id), list)
    }
    return users.map((row) => ({
      user: String(row.address),
      domain: String(row.domain),
      copies: byUser.get(Number(row.id)) ?? [],
    }))
  }

  private async guard<T>(work: () => Promise<T>): Promise<T> {
    try {
      return await work()
    } catch (error) {
      throw this.storeError(error)
    }
  }

  private storeError(error: unknown): unknown {
    return mysqlStoreError(error, this.settings)
  }
}

/** The cluster lock: GET_LOCK held by a dedicated connection; the lock is lost when that connection is. */
class MysqlLock implements ClusterLock {
  readonly lost: Promise<Error>
  readonly replacedStale?: LockHolder
  private lostError?: MailringError
  private released = false
  private resolveLost!: (error: Error) => void

  constructor(
    private readonly conn: Connection,
    private readonly connectionId: number,
    private readonly token: string,
    readonly holder: LockHolder,
    previous: LockHolder | undefined,
    private readonly location: string,
    private readonly onEnd: () => void,
  ) {
    if (previous) this.replacedStale = previous
    this.lost = new Promise((resolve) => (this.resolveLost = resolve))
    const markLost = (): void => {
      if (this.released || this.lostError) return
      this.lostError = new MailringError(
        `Lost the cluster lock: the database connection that held it (${location}) broke; stopped before writing anything more. Run the command again.`,
        {code: 'lock_lost', exitCode: ExitCode.locked},
      )
      // The store keeps this lock as its own until released: every write it tries now is refused.
      this.resolveLost(this.lostError)
    }
    conn.on('error', markLost)
    conn.on('end', markLost)
    // The underlying socket closing (e.g. KILL on the server) also ends the lock.
    ;(conn as unknown as {connection: {stream?: NodeJS.EventEmitter}}).connection.stream?.on(
      'close',
      markLost,
    )
  }

  isLost(): boolean {
    return this.lostError !== undefined
  }

  assertHeld(): void {
    if (this.lostError) throw this.lostError
    if (this.released)
      throw new MailringError(`The cluster lock of ${describeHolder(this.holder)} was released.`, {
        code: 'lock_lost',
        exitCode: ExitCode.locked,
      })
  }

  /** Checks, inside a transaction about to commit, that this connection still holds the lock. */
  async verify(conn: Queryable): Promise<void> {
    this.assertHeld()
    const [[row]] = await conn.query<Row[]>(`SELECT IS_USED_LOCK('${CLUSTER_LOCK_NAME}') AS id`)
    if (row!.id === null || Number(row!.id) !== this.connectionId) {
      this.lostError ??= new MailringError(
        `Lost the cluster lock: the database (${this.location}) no longer holds it for this process; nothing of this step was written. Run the command again.`,
        {code: 'lock_lost', exitCode: ExitCode.locked},
      )
      this.resolveLost(this.lostError)
      throw this.lostError
    }
  }

  async release(): Promise<void> {
    if (this.released) return
    this.released = true
    this.onEnd()
    if (!this.lostError) {
      await this.conn
        .query('DELETE FROM mailring_cluster_lock WHERE id = 1 AND token = ?', [this.token])
        .catch(() => {})
      await this.conn.query(`DO RELEASE_LOCK('${CLUSTER_LOCK_NAME}')`).catch(() => {})
    }
    await this.conn.end().catch(() => {})
  }
}

function holderOfRow(row: Row): LockHolder {
  return {
    pid: Number(row.pid),
    host: String(row.host),
    command: String(row.command),
    since: String(row.since),
  }
}

/** Rows as arrays (no object per row). */
async function arrayRows(conn: Queryable, sql: string, values: unknown[]): Promise<unknown[][]> {
  const [rows] = await conn.query<RowDataPacket[]>({sql, values, rowsAsArray: true})
  return rows as unknown as unknown[][]
}

function text(value: unknown): string {
  if (value === null || value === undefined) return ''
  if (Buffer.isBuffer(value)) return value.toString('utf8')
  return String(value)
}

/** mysql2's options for these settings. */
export function connectionOptions(settings: MysqlSettings): ConnectionOptions {
  return {
    host: settings.host,
    port: settings.port,
    user: settings.user,
    ...(settings.password === undefined ? {} : {password: settings.password}),
    database: settings.database,
    charset: 'utf8mb4_bin',
    connectTimeout: 10_000,
    enableKeepAlive: true,
    supportBigNumbers: true,
    dateStrings: true,
    ...(settings.tls ? {ssl: mysqlSslOptions(settings.tls)} : {}),
  }
}

/** A MySQL identifier mailring may read: letters, digits, _ and $, at most 64 characters. */
export function checkIdentifier(name: string, source: string): void {
  if (!/^[A-Za-z0-9_$]{1,64}$/.test(name)) {
    throw new MailringError(
      `${source}: "${name}" is not a table or column name mailring accepts (letters, digits, _ and $, at most 64).`,
      {code: 'users_table'},
    )
  }
}

export function quoteIdentifier(name: string): string {
  return `\`${name.replace(/`/g, '``')}\``
}

function missingColumn(
  spec: UsersTableSpec,
  column: string,
  known: Set<string>,
  source: string,
): MailringError {
  checkIdentifier(column, source)
  return new MailringError(
    `${source}: the users table \`${spec.table}\` has no column \`${column}\` (it has ${[...known].sort().join(', ')}).`,
    {code: 'users_table'},
  )
}

const PRIVILEGES_HINT = 'SELECT, INSERT, UPDATE, DELETE, CREATE, ALTER, INDEX, REFERENCES'

/**
 * Turns mysql2's errors into one-line store errors (exit code 4) that never show the password; mailring's
 * own errors pass through.
 */
export function mysqlStoreError(error: unknown, settings: MysqlSettings): unknown {
  if (error instanceof MailringError || error instanceof Rollback) return error
  const err = error as {code?: string; errno?: number; sqlMessage?: string; message?: string; fatal?: boolean}
  if (err === null || typeof err !== 'object' || (err.code === undefined && err.errno === undefined))
    return error
  const where = `${settings.host}:${settings.port}`
  const user = settings.user
  const code = err.code ?? ''
  const raw = err.sqlMessage ?? err.message ?? String(error)
  let message: string
  if (['ECONNREFUSED', 'ENOTFOUND', 'EAI_AGAIN', 'ETIMEDOUT', 'EHOSTUNREACH', 'ENETUNREACH'].includes(code)) {
    const reason =
      code === 'ECONNREFUSED'
        ? 'connection refused'
        : code === 'ENOTFOUND' || code === 'EAI_AGAIN'
          ? 'unknown host'
          : code === 'ETIMEDOUT'
            ? 'timed out'
            : 'no route to host'
    message = `Cannot reach the MySQL/MariaDB server at ${where} (${reason}): is it running, and are host and port in ${settings.location} right?`
  } else if (code === 'ER_ACCESS_DENIED_ERROR' || code === 'ER_ACCESS_DENIED_NO_PASSWORD_ERROR') {
    message = `The MySQL/MariaDB server at ${where} refused user ${user} (access denied): check the password (${settings.passwordSource === 'none' ? `none given: set ${PASSWORD_ENV} or db_password_file` : `from ${settings.passwordSource}`}) and that the user may connect from this host.`
  } else if (code === 'ER_DBACCESS_DENIED_ERROR') {
    message = `Store ${settings.location}: user ${user} may not use database ${settings.database}: GRANT ${PRIVILEGES_HINT} ON \`${settings.database}\`.* TO it.`
  } else if (code === 'ER_BAD_DB_ERROR') {
    message = `Store ${settings.location}: database ${settings.database} does not exist: create it (CREATE DATABASE \`${settings.database}\` CHARACTER SET utf8mb4) and grant ${user} ${PRIVILEGES_HINT} on it.`
  } else if (
    code === 'ER_TABLEACCESS_DENIED_ERROR' ||
    code === 'ER_COLUMNACCESS_DENIED_ERROR' ||
    code === 'ER_SPECIFIC_ACCESS_DENIED_ERROR' ||
    code === 'ER_PROCACCESS_DENIED_ERROR'
  ) {
    const privilege = /^([\w ,]+?) command denied/i.exec(raw)?.[1]?.toUpperCase()
    const table = /for table [`']?(?:[^`']*[`']?\.[`']?)?([^`']+)[`']?/i.exec(raw)?.[1]
    message = privilege
      ? `Store ${settings.location}: user ${user} lacks the ${privilege} privilege${privilege.includes(',') ? 's' : ''}${table ? ` on table ${table}` : ''}: GRANT ${PRIVILEGES_HINT} ON \`${settings.database}\`.* TO it.`
      : `Store ${settings.location}: user ${user} lacks a privilege (${raw}): GRANT ${PRIVILEGES_HINT} ON \`${settings.database}\`.* TO it.`
  } else if (code === 'ER_KILL_DENIED_ERROR') {
    message = `Store ${settings.location}: user ${user} may not end the connection that holds the cluster lock (${raw}): unlock as the database user that took it, or as one with the CONNECTION ADMIN (MySQL: CONNECTION_ADMIN) or SUPER privilege.`
  } else if (code === 'PROTOCOL_CONNECTION_LOST' || code === 'ECONNRESET' || code === 'EPIPE') {
    message = `Store ${settings.location}: lost the connection to the server; nothing of the interrupted step was written. Try again.`
  } else if (code === 'ER_LOCK_WAIT_TIMEOUT' || code === 'ER_LOCK_DEADLOCK') {
    message = `Store ${settings.location}: the database is busy (${code === 'ER_LOCK_DEADLOCK' ? 'deadlock' : 'lock wait timeout'}); nothing was written; try again.`
  } else if (code.startsWith('HANDSHAKE') || /SSL|TLS|certificate/i.test(raw)) {
    message = `Store ${settings.location}: TLS failed: ${raw} (check db_tls in the config file).`
  } else {
    message = `Store ${settings.location}: ${raw}`
  }
  return new MailringError(redactSecret(message, settings.password), {
    code: 'store',
    exitCode: ExitCode.store,
    cause: error,
  })
}

/** Removes a secret from a message, whatever echoed it. */
export function redactSecret(message: string, secret: string | undefined): string {
  if (secret === undefined || secret === '') return message
  return message.split(secret).join('***')
}

/** The highest schema version this mailring writes to MySQL. */
export const MYSQL_SCHEMA_VERSION = latestVersion(mysqlMigrations)
