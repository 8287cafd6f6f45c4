import {randomUUID} from 'node:crypto'
import {accessSync, constants, existsSync, mkdirSync, statSync} from 'node:fs'
import {userInfo} from 'node:os'
import {dirname} from 'node:path'

import Database from 'better-sqlite3'

import {ExitCode, MailringError} from '../core/errors.js'
import type {Topology} from '../core/topology.js'
import {pendingMigrations} from './migrations/index.js'
import {sqliteMigrations} from './migrations/sqlite.js'
import {holderNow, lockBrokenError, lockedError, processAlive} from './lock.js'
import {initialMetaRows, storeMetaOf} from './meta-rows.js'
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

/** How long a write waits for another process's transaction before giving up. */
const BUSY_TIMEOUT_MS = 15_000

// A store that this user may read but not write is opened as a file: URI with ?immutable=1 when no other
// process has it open (see openReadOnly); SQLite takes such URIs only when told before its first connection.
process.env.SQLITE_USE_URI ??= '1'

/**
 * How a store that this user may only read is open. `signature` is set when SQLite reads the file as
 * immutable, without its -wal and -shm files (none exist, and the folder is not this user's to create
 * them), which holds only as long as nobody writes the file: it is the file as it was when opened, and is
 * checked after every read.
 */
interface ReadOnly {
  signature?: string
}

/**
 * The embedded store: one SQLite file in WAL mode (readers never block the writer), a busy timeout so
 * that two processes take turns instead of failing, and a transaction around every change.
 */
export class SqliteStore implements Store {
  readonly location: string
  private readonly db: Database.Database
  /** The lock this store holds: its token in the lock row, checked by every write. */
  private heldLock?: {token: string; holder: LockHolder}
  /** Transactions that write: each checks, before it commits, that a lock this store holds is still its own. */
  private readonly writes = {
    transaction: <A extends unknown[], T>(work: (...args: A) => T) =>
      this.db.transaction((...args: A) => {
        const result = work(...args)
        this.checkLockHeld()
        return result
      }),
  }

  private constructor(
    db: Database.Database,
    private readonly path: string,
    /** Set when this user may read the store but not write it. */
    private readonly readOnly?: ReadOnly,
  ) {
    this.db = db
    this.location = `sqlite:${path}`
  }

  /** Creates (or finds) an initialised store at `path`; `created` is false when it existed already. */
  static async init(
    path: string,
    options: {copies?: number} = {},
  ): Promise<{store: SqliteStore; created: boolean}> {
    // An existing store is only found, and may be one this user reads but does not write.
    if (existsSync(path) && !mayWrite(path)) return {store: await SqliteStore.open(path), created: false}
    const folder = nearestFolder(path)
    if (!mayWrite(folder, true)) {
      throw new MailringError(
        `Cannot create the store ${path}: ${userName()} may not write ${folder === dirname(path) ? 'its folder' : 'the folder'} ${folder}: run mailring init as a user who may, or give another place with --db sqlite:PATH.`,
        {code: 'store_read_only', exitCode: ExitCode.store},
      )
    }
    const db = guard(path, () => {
      mkdirSync(dirname(path), {recursive: true})
      return new Database(path)
    })
    const store = new SqliteStore(db, path)
    try {
      store.configure()
      const created = guard(path, () =>
        db
          .transaction(() => {
            if (store.schemaVersion() > 0) return false
            store.migrate()
            const setMeta = db.prepare('INSERT INTO mailring_meta (key, value) VALUES (?, ?)')
            for (const [key, value] of initialMetaRows(options.copies)) setMeta.run(key, value)
            return true
          })
          .immediate(),
      )
      if (!created) store.upgrade()
      return {store, created}
    } catch (error) {
      db.close()
      throw error
    }
  }

  /**
   * Opens an existing store, applying pending migrations; refuses one written by a newer mailring. A store
   * this user may read but not write (or any, with `readOnly`) is opened read-only: every read works, and a
   * change is refused in one line (see openReadOnly).
   */
  static async open(path: string, options: {readOnly?: boolean} = {}): Promise<SqliteStore> {
    if (!existsSync(path)) {
      throw new MailringError(`No mailring store at ${path}: run \`mailring init\` first (or pass --db).`, {
        code: 'no_store',
        exitCode: ExitCode.store,
      })
    }
    const readOnly = options.readOnly || !mayWrite(path) ? openReadOnly(path) : undefined
    const db = readOnly?.db ?? guard(path, () => new Database(path, {fileMustExist: true}))
    const store = new SqliteStore(db, path, readOnly?.how)
    try {
      store.configure()
      if (store.guard(() => store.schemaVersion()) === 0) {
        throw new MailringError(
          `${path} is not a mailring store (no schema version): run \`mailring init\`.`,
          {
            code: 'no_store',
            exitCode: ExitCode.store,
          },
        )
      }
      store.upgrade()
      return store
    } catch (error) {
      db.close()
      throw error
    }
  }

  async meta(): Promise<StoreMeta> {
    return this.guard(() => storeMetaOf(this.metaMap()))
  }

  async close(): Promise<void> {
    if (this.db.open) this.db.close()
  }

  async readTopology(): Promise<Topology> {
    return this.guard(() => this.db.transaction(() => this.topologyNow())())
  }

  async writeTopology(topology: Topology): Promise<void> {
    this.guard(() =>
      this.writes
        .transaction(() => {
          const changes = serverChanges(this.serverRows(), topology)
          this.db.prepare('DELETE FROM mailring_domain_servers').run()
          this.db.prepare('DELETE FROM mailring_domains').run()
          const holdsCopies = this.db
            .prepare('SELECT 1 FROM mailring_copies WHERE server_id = ? LIMIT 1')
            .pluck()
          const deleteServer = this.db.prepare('DELETE FROM mailring_servers WHERE id = ?')
          const moving = this.db.prepare(OPEN_MOVES_OF_SERVER_SQL).pluck()
          const deleteMoves = this.db.prepare(DELETE_MOVES_OF_SERVER_SQL)
          for (const row of changes.removed) {
            if (holdsCopies.get(row.id) !== undefined) throw serverNotEmpty(row.name)
            if (moving.get(row.id, row.id) !== undefined) throw serverHasOpenMoves(row.name)
            deleteMoves.run(row.id, row.id)
            deleteServer.run(row.id)
          }
          const update = this.db.prepare(
            'UPDATE mailring_servers SET address = ?, zone = ?, weight = ?, state = ? WHERE name = ?',
          )
          for (const values of changes.updated) update.run(...values)
          const insert = this.db.prepare(
            'INSERT INTO mailring_servers (address, zone, weight, state, name) VALUES (?, ?, ?, ?, ?)',
          )
          const hostNamed = this.db.prepare(HOST_NAMED_SQL)
          for (const values of changes.inserted) {
            if (hostNamed.get(values[4]) !== undefined) throw serverNameTaken(values[4])
            insert.run(...values)
          }
          const {domains, pins} = domainRows(topology, serverIdsByName(this.serverRows()))
          const insertDomain = this.db.prepare('INSERT INTO mailring_domains (domain, copies) VALUES (?, ?)')
          for (const row of domains) insertDomain.run(...row)
          const insertPin = this.db.prepare(
            'INSERT INTO mailring_domain_servers (domain, server_id) VALUES (?, ?)',
          )
          for (const row of pins) insertPin.run(...row)
          this.db
            .prepare(
              "INSERT INTO mailring_meta (key, value) VALUES ('copies', ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            )
            .run(String(topology.copies))
        })
        .immediate(),
    )
  }

  async insertUsers(
    batches: Iterable<UserBatch>,
    options: {skipExisting: boolean},
  ): Promise<InsertUsersResult> {
    return tallyInserts(options, (tally) =>
      this.guard(() =>
        this.writes
          .transaction(() => {
            const serverIds = serverIdsByName(this.serverRows())
            const insertUser = this.db.prepare(
              'INSERT INTO mailring_users (address, domain) VALUES (?, ?) ON CONFLICT (address) DO NOTHING',
            )
            const insertCopy = this.db.prepare(
              'INSERT INTO mailring_copies (user_id, position, server_id) VALUES (?, ?, ?)',
            )
            const idOf = this.db.prepare('SELECT id FROM mailring_users WHERE address = ?').pluck()
            // Rows added from here on get ids above every older one (INTEGER PRIMARY KEY: max + 1).
            tally.begin(
              (this.db.prepare('SELECT max(id) FROM mailring_users').pluck().get() as number | null) ?? 0,
            )
            let batchIndex = 0
            for (const batch of batches) {
              const ids = batchServerIds(batch, serverIds)
              for (let i = 0; i < batch.users.length; i++) {
                const info = insertUser.run(batch.users[i], batch.domains[i])
                const userId = (
                  info.changes === 0 ? idOf.get(batch.users[i]) : info.lastInsertRowid
                ) as number
                if (!tally.add(userId, batchIndex, i)) continue
                forEachCopy(batch, i, ids, (position, serverId) => insertCopy.run(userId, position, serverId))
              }
              batchIndex++
            }
            tally.end()
          })
          .immediate(),
      ),
    )
  }

  async replaceUsers(batches: Iterable<UserBatch>, remove: readonly string[]): Promise<ReplaceUsersResult> {
    return this.guard(() =>
      this.writes
        .transaction(() => {
          const tally = new ReplaceTally()
          const serverIds = serverIdsByName(this.serverRows())
          const idOf = this.db.prepare('SELECT id FROM mailring_users WHERE address = ?').pluck()
          const insertUser = this.db.prepare('INSERT INTO mailring_users (address, domain) VALUES (?, ?)')
          const deleteCopies = this.db.prepare('DELETE FROM mailring_copies WHERE user_id = ?')
          const insertCopy = this.db.prepare(
            'INSERT INTO mailring_copies (user_id, position, server_id) VALUES (?, ?, ?)',
          )
          for (const batch of batches) {
            const ids = batchServerIds(batch, serverIds)
            for (let i = 0; i < batch.users.length; i++) {
              const found = idOf.get(batch.users[i]) as number | undefined
              if (found !== undefined) deleteCopies.run(found)
              const userId =
                found ?? (insertUser.run(batch.users[i], batch.domains[i]).lastInsertRowid as number)
              tally.user(userId, found === undefined)
              forEachCopy(batch, i, ids, (position, serverId) => insertCopy.run(userId, position, serverId))
            }
          }
          const removeUser = this.db.prepare('DELETE FROM mailring_users WHERE address = ?')
          for (const user of remove) tally.result.removed += removeUser.run(user).changes
          return tally.result
        })
        .immediate(),
    )
  }

  async usersTable(spec: UsersTableSpec): Promise<UsersTable> {
    throw new MailringError(
      `${spec.source}: an operator's users table needs the MySQL/MariaDB store (db: mysql://...); ${this.location} is the embedded store.`,
      {code: 'users_table_unsupported'},
    )
  }

  async removeUsers(users: readonly string[]): Promise<string[]> {
    return this.guard(() =>
      this.writes
        .transaction(() => {
          const remove = this.db.prepare('DELETE FROM mailring_users WHERE address = ?')
          return users.filter((user) => remove.run(user).changes > 0)
        })
        .immediate(),
    )
  }

  async getUser(user: string): Promise<UserRecord | undefined> {
    return this.guard(() => this.db.transaction(() => this.usersWithCopies('address = ?', [user], 1)[0])())
  }

  async listUsers(options: UserListOptions): Promise<UserRecord[]> {
    const where = options.domain === undefined ? 'address > ?' : 'address > ? AND domain = ?'
    const params =
      options.domain === undefined ? [options.after ?? ''] : [options.after ?? '', options.domain]
    return this.guard(() => this.db.transaction(() => this.usersWithCopies(where, params, options.limit))())
  }

  async journalMoves(plan: string, moves: readonly NewMove[]): Promise<number> {
    return this.guard(() =>
      this.writes
        .transaction(() => {
          const ids = serverIdsByName(this.serverRows())
          const userId = this.db.prepare('SELECT id FROM mailring_users WHERE address = ?').pluck()
          const copyAt = this.db
            .prepare('SELECT server_id FROM mailring_copies WHERE user_id = ? AND position = ?')
            .pluck()
          const holds = this.db
            .prepare('SELECT 1 FROM mailring_copies WHERE user_id = ? AND server_id = ? LIMIT 1')
            .pluck()
          const count = this.db.prepare('SELECT count(*) FROM mailring_copies WHERE user_id = ?').pluck()
          const open = this.db
            .prepare(
              `SELECT 1 FROM mailring_moves WHERE user_id = ? AND state IN (${OPEN_STATES_SQL}) LIMIT 1`,
            )
            .pluck()
          const insert = this.db.prepare(
            'INSERT INTO mailring_moves (user_id, position, from_server_id, to_server_id, state, plan, updated_at) ' +
              "VALUES (?, ?, ?, ?, 'planned', ?, ?)",
          )
          const now = new Date().toISOString()
          for (const move of moves) {
            const id = userId.get(move.user) as number | undefined
            checkMove(
              move,
              {
                userId: id,
                copyAt: id === undefined ? undefined : (copyAt.get(id, move.position) as number | undefined),
                copies: id === undefined ? 0 : (count.get(id) as number),
                hasOpenMove: id !== undefined && open.get(id) !== undefined,
                holdsTarget:
                  id !== undefined && move.to !== null && holds.get(id, ids.get(move.to) ?? -1) !== undefined,
              },
              ids,
            )
            const server = (name: string | null) => (name === null ? null : ids.get(name))
            insert.run(id, move.position, server(move.from), server(move.to), plan, now)
          }
          return moves.length
        })
        .immediate(),
    )
  }

  async openMoves(): Promise<MoveRecord[]> {
    return this.guard(() =>
      (
        this.db
          .prepare(`${MOVE_SELECT} WHERE m.state IN (${OPEN_STATES_SQL}) ORDER BY m.id`)
          .all() as MoveRow[]
      ).map(moveRecordOf),
    )
  }

  async setMoveState(id: number, expected: MoveState, next: MoveState, error?: string): Promise<boolean> {
    return this.guard(
      () =>
        this.db
          .prepare(
            'UPDATE mailring_moves SET state = ?, attempts = attempts + ?, last_error = COALESCE(?, last_error), ' +
              'updated_at = ? WHERE id = ? AND state = ?',
          )
          .run(next, error === undefined ? 0 : 1, error ?? null, new Date().toISOString(), id, expected)
          .changes > 0,
    )
  }

  async switchMove(id: number): Promise<void> {
    this.guard(() =>
      this.writes
        .transaction(() => {
          const move = this.db.prepare(SWITCH_MOVE_SQL).get(id) as SwitchRow | undefined
          if (!move) throw switchRefused(id, 'no such move')
          const copies = this.db
            .prepare('SELECT count(*) FROM mailring_copies WHERE user_id = ?')
            .pluck()
            .get(move.user_id) as number
          const holdsTarget =
            move.to_server_id !== null &&
            this.db
              .prepare('SELECT 1 FROM mailring_copies WHERE user_id = ? AND server_id = ?')
              .get(move.user_id, move.to_server_id) !== undefined
          const problem = switchProblem(move, copies, holdsTarget)
          if (problem !== undefined) throw switchRefused(id, problem)
          for (const statement of switchStatements(move, copies)) {
            const changed = this.db.prepare(statement.sql).run(...statement.params).changes
            if (statement.mustChange !== undefined && changed !== 1)
              throw switchRefused(id, statement.mustChange)
          }
          this.db
            .prepare("UPDATE mailring_moves SET state = 'switched', updated_at = ? WHERE id = ?")
            .run(new Date().toISOString(), id)
        })
        .immediate(),
    )
  }

  async retireMove(id: number, trash: string | null): Promise<boolean> {
    return this.guard(
      () => this.db.prepare(RETIRE_MOVE_SQL).run(trash, new Date().toISOString(), id).changes > 0,
    )
  }

  async retiredMoves(before: string): Promise<MoveRecord[]> {
    return this.guard(() => (this.db.prepare(RETIRED_MOVES_SQL).all(before) as MoveRow[]).map(moveRecordOf))
  }

  async cancelUnswitchedMoves(): Promise<number> {
    return this.guard(
      () =>
        this.db
          .prepare(
            `UPDATE mailring_moves SET state = 'cancelled', updated_at = ? WHERE state IN (${UNSWITCHED_STATES_SQL})`,
          )
          .run(new Date().toISOString()).changes,
    )
  }

  async enqueueReplication(
    requests: readonly ReplicationRequest[],
    options: EnqueueOptions,
  ): Promise<EnqueueResult> {
    const times = enqueueTimes(options)
    const merged = mergeRequests(requests)
    if (merged.length === 0) return {queued: 0, unknownUsers: 0}
    return this.guard(() =>
      this.writes
        .transaction(() => {
          const serverIds = serverIdsByName(this.serverRows())
          // One lookup per chunk of users, not one per user.
          const lookup = this.db
            .prepare('SELECT j.value, u.id FROM json_each(?) j JOIN mailring_users u ON u.address = j.value')
            .raw()
          const upsert = this.db.prepare(
            'INSERT INTO mailring_replication_queue (user_id, priority, source_server_id, due_ms, first_queued_ms, generation) ' +
              `VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (user_id) DO UPDATE SET ${mergeAssignments((column) => `excluded.${column}`)}`,
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
        })
        .immediate(),
    )
  }

  async claimReplication(options: ClaimOptions): Promise<ReplicationTask[]> {
    const {nowMs, limit, leaseUntilMs} = claimTimes(options)
    if (limit === 0) return []
    return this.guard(() =>
      this.writes
        .transaction(() => {
          const avoid = avoidIds(options.avoidServers, serverIdsByName(this.serverRows()))
          const rows = this.db
            .prepare(
              `${TASK_SELECT} WHERE ${claimableSql(nowMs, avoid)} ORDER BY ${CLAIM_ORDER} LIMIT ${limit}`,
            )
            .all() as TaskRow[]
          const lease = this.db.prepare(
            'UPDATE mailring_replication_queue SET lease_owner = ?, lease_until_ms = ? WHERE user_id = ?',
          )
          for (const row of rows) lease.run(options.owner, leaseUntilMs, row.user_id)
          return rows.map(taskOf)
        })
        .immediate(),
    )
  }

  async renewReplication(owner: string, users: readonly string[], leaseUntilMs: number): Promise<string[]> {
    const until = wholeMs(leaseUntilMs, 'leaseUntilMs')
    if (users.length === 0) return []
    return this.guard(() =>
      this.writes
        .transaction(() => {
          const renew = this.db.prepare(
            'UPDATE mailring_replication_queue SET lease_until_ms = ? WHERE lease_owner = ? ' +
              'AND user_id = (SELECT id FROM mailring_users WHERE address = ?)',
          )
          return users.filter((user) => renew.run(until, owner, user).changes > 0)
        })
        .immediate(),
    )
  }

  async finishReplication(
    owner: string,
    task: ReplicationTask,
    outcome: ReplicationOutcome,
  ): Promise<boolean> {
    return this.guard(() =>
      this.writes
        .transaction(() => {
          const held = this.db.prepare(HELD_ENTRY_SQL).get(task.user, owner) as
            {user_id: number; generation: number} | undefined
          if (!held) return false
          const [sql, params] = finishStatement(held as Record<string, unknown>, task, outcome)
          this.db.prepare(sql).run(...params)
          if (outcome.ok) return true
          const serverId =
            outcome.server === undefined
              ? undefined
              : (this.db.prepare(SERVER_ID_SQL).pluck().get(outcome.server) as number | undefined)
          if (serverId !== undefined) {
            this.ensureHealthRow(serverId)
            this.db.prepare(COUNT_SYNC_FAILURE_SQL).run(outcome.error, serverId)
          }
          return true
        })
        .immediate(),
    )
  }

  async releaseReplication(owner: string): Promise<number> {
    return this.guard(() => this.db.prepare(RELEASE_SQL).run(owner).changes)
  }

  async replicationStats(nowMs: number): Promise<ReplicationQueueStats> {
    const now = wholeMs(nowMs, 'nowMs')
    return this.guard(() =>
      this.db.transaction(() =>
        queueStatsOf(
          now,
          this.db.prepare(STATS_BY_PRIORITY_SQL).all(now, now) as StatsRow[],
          this.db.prepare(STATS_LEASES_SQL).get(now, now) as Record<string, unknown>,
        ),
      )(),
    )
  }

  async replicationMarker(key: string): Promise<string | undefined> {
    return this.guard(() => this.db.prepare(MARKER_SQL).pluck().get(key) as string | undefined)
  }

  async setReplicationMarker(key: string, value: string): Promise<void> {
    this.guard(() =>
      this.db
        .prepare(
          'INSERT INTO mailring_replication_markers (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value',
        )
        .run(key, value),
    )
  }

  async serverHealth(): Promise<ServerHealth[]> {
    return this.guard(() =>
      this.db.transaction(() => {
        const createdAt = storeMetaOf(this.metaMap()).createdAt
        return (this.db.prepare(SERVER_HEALTH_SQL).all() as HealthRow[]).map((row) =>
          serverHealthOf(row, createdAt),
        )
      })(),
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
    return this.guard(() =>
      this.writes
        .transaction(() => {
          const serverId = this.db.prepare(SERVER_ID_SQL).pluck().get(server) as number | undefined
          if (serverId === undefined) return false
          this.ensureHealthRow(serverId)
          const update = healthUpdate(serverId, expected, next, detail, new Date().toISOString())
          return this.db.prepare(SET_HEALTH_SQL).run(...update).changes === 1
        })
        .immediate(),
    )
  }

  async listHosts(): Promise<Host[]> {
    return this.guard(() => (this.db.prepare(LIST_HOSTS_SQL).all() as HostRow[]).map(hostOf))
  }

  async putHost(host: Host): Promise<void> {
    const values = hostValues(host)
    this.guard(() =>
      this.writes
        .transaction(() => {
          if (this.db.prepare(SERVER_ID_SQL).get(host.name) !== undefined) throw hostNameTaken(host.name)
          if (this.db.prepare(UPDATE_HOST_SQL).run(...values).changes === 0)
            this.db.prepare(INSERT_HOST_SQL).run(...values)
        })
        .immediate(),
    )
  }

  async removeHost(name: string): Promise<boolean> {
    return this.guard(() => this.db.prepare(DELETE_HOST_SQL).run(name).changes > 0)
  }

  /** Gives a server without a health row the row it reads as (up since the store's creation). */
  private ensureHealthRow(serverId: number): void {
    this.db
      .prepare(
        `INSERT INTO mailring_server_health ${HEALTH_COLUMNS} VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING`,
      )
      .run(...defaultHealthRow(serverId, storeMetaOf(this.metaMap()).createdAt))
  }

  async countUsers(): Promise<number> {
    return this.guard(() => this.db.prepare('SELECT count(*) FROM mailring_users').pluck().get() as number)
  }

  async serverUsage(): Promise<ServerUsage[]> {
    return this.guard(() =>
      this.db.transaction(() => {
        const counts = new Map<number, {copies: number; primaries: number}>()
        const rows = this.db
          .prepare('SELECT server_id, count(*), sum(position = 0) FROM mailring_copies GROUP BY server_id')
          .raw()
          .all() as [number, number, number][]
        for (const [id, copies, primaries] of rows) counts.set(id, {copies, primaries})
        return usageOfServers(this.serverRows(), counts)
      })(),
    )
  }

  async *scanUsers(chunkSize = 50_000): AsyncGenerator<string[]> {
    const page = this.db
      .prepare('SELECT id, address FROM mailring_users WHERE id > ? ORDER BY id LIMIT ?')
      .raw()
    const db = this.db
    const ownTransaction = !db.inTransaction
    if (ownTransaction) db.prepare('BEGIN').run()
    try {
      let after = 0
      for (;;) {
        const rows = this.guard(() => page.all(after, chunkSize) as [number, string][])
        if (rows.length === 0) return
        after = rows[rows.length - 1]![0]
        yield rows.map((row) => row[1])
      }
    } finally {
      if (ownTransaction && db.inTransaction) db.prepare('COMMIT').run()
    }
  }

  async scanPlacements(chunkSize = 20_000): Promise<PlacementScan> {
    const servers = this.guard(() => this.serverRows())
    const indexOfId = serverIndexById(servers)
    // Plucked numbers and strings, not row arrays: a million users would otherwise be millions of arrays.
    const idsAfter = this.db.prepare('SELECT id FROM mailring_users WHERE id > ? ORDER BY id LIMIT ?').pluck()
    const addressesBetween = this.db
      .prepare('SELECT address FROM mailring_users WHERE id BETWEEN ? AND ? ORDER BY id')
      .pluck()
    const copiesBetween = this.db
      .prepare(
        `SELECT ${PACKED_COPY} FROM mailring_copies WHERE user_id BETWEEN ? AND ? ORDER BY user_id, position`,
      )
      .pluck()
    const db = this.db
    const guarded = <T>(work: () => T): T => this.guard(work)
    async function* chunks(): AsyncGenerator<PlacementChunk> {
      // One read transaction: a consistent snapshot even while another process writes (WAL).
      const ownTransaction = !db.inTransaction
      if (ownTransaction) db.prepare('BEGIN').run()
      try {
        let after = 0
        for (;;) {
          const chunk = guarded(() => {
            const ids = idsAfter.all(after, chunkSize) as number[]
            if (ids.length === 0) return undefined
            const first = ids[0]!
            const last = ids[ids.length - 1]!
            const users = addressesBetween.all(first, last) as string[]
            const copies = copiesBetween.all(first, last) as number[]
            after = last
            return placementChunk(ids, users, copies, indexOfId)
          })
          if (!chunk) return
          yield chunk
        }
      } finally {
        if (ownTransaction && db.inTransaction) db.prepare('COMMIT').run()
      }
    }
    return {servers: servers.map((row) => row.name), chunks: chunks()}
  }

  async acquireLock(command: string): Promise<ClusterLock> {
    const token = randomUUID()
    const holder = holderNow(command)
    const replacedStale = this.guard(() =>
      this.db
        .transaction(() => {
          const current = this.lockRow()
          let stale: LockHolder | undefined
          if (current) {
            if (current.host === holder.host && !processAlive(current.pid)) stale = current
            else throw lockedError(current)
          }
          this.db
            .prepare(
              `INSERT INTO mailring_cluster_lock (id, token, pid, host, command, since) VALUES (1, ?, ?, ?, ?, ?)
               ON CONFLICT (id) DO UPDATE SET token = excluded.token, pid = excluded.pid, host = excluded.host,
                 command = excluded.command, since = excluded.since`,
            )
            .run(token, holder.pid, holder.host, holder.command, holder.since)
          return stale
        })
        .immediate(),
    )
    const held = {token, holder}
    this.heldLock = held
    return {
      holder,
      ...(replacedStale ? {replacedStale} : {}),
      // The lock is a row in the file: only `mailring unlock` takes it away, which the checks below notice.
      lost: new Promise<Error>(() => {}),
      assertHeld: () => {
        if (this.heldLock === held) this.guard(() => this.checkLockHeld())
      },
      release: async () => {
        if (this.heldLock !== held) return
        this.heldLock = undefined
        if (!this.db.open) return
        this.guard(() =>
          this.db.prepare('DELETE FROM mailring_cluster_lock WHERE id = 1 AND token = ?').run(token),
        )
      },
    }
  }

  async lockHolder(): Promise<LockHolder | undefined> {
    return this.guard(() => this.lockRow())
  }

  async breakLock(expected: LockHolder): Promise<boolean> {
    return this.guard(
      () =>
        this.db
          .prepare(
            'DELETE FROM mailring_cluster_lock WHERE id = 1 AND pid = ? AND host = ? AND command = ? AND since = ?',
          )
          .run(expected.pid, expected.host, expected.command, expected.since).changes === 1,
    )
  }

  /** Throws (exit code 3) when the lock this store holds was broken by `mailring unlock`. */
  private checkLockHeld(): void {
    if (!this.heldLock) return
    const token = this.db.prepare('SELECT token FROM mailring_cluster_lock WHERE id = 1').pluck().get()
    if (token !== this.heldLock.token) throw lockBrokenError(this.heldLock.holder)
  }

  private lockRow(): LockHolder | undefined {
    return this.db
      .prepare('SELECT pid, host, command, since FROM mailring_cluster_lock WHERE id = 1')
      .get() as LockHolder | undefined
  }

  private configure(): void {
    this.guard(() => {
      // A store that this user may only read stays as it is (in WAL mode already: init made it so).
      if (!this.readOnly) this.db.pragma('journal_mode = WAL')
      this.db.pragma(`busy_timeout = ${BUSY_TIMEOUT_MS}`)
      this.db.pragma('foreign_keys = ON')
      // WAL with synchronous=NORMAL is durable across application crashes; a power loss may lose the
      // last transactions, never corrupt the database.
      this.db.pragma('synchronous = NORMAL')
      // 64 MB of page cache: a million-user import updates the address index all over.
      this.db.pragma('cache_size = -65536')
    })
  }

  private schemaVersion(): number {
    const hasMeta = this.db
      .prepare("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'mailring_meta'")
      .get()
    if (!hasMeta) return 0
    const value = this.db
      .prepare("SELECT value FROM mailring_meta WHERE key = 'schema_version'")
      .pluck()
      .get()
    return value === undefined ? 0 : Number(value)
  }

  /** Applies pending migrations (inside the caller's transaction). */
  private migrate(): void {
    for (const migration of pendingMigrations(sqliteMigrations, this.schemaVersion(), this.location)) {
      for (const statement of migration.statements) this.db.prepare(statement).run()
      this.db
        .prepare(
          "INSERT INTO mailring_meta (key, value) VALUES ('schema_version', ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        )
        .run(String(migration.version))
    }
  }

  /** Brings an existing store to the latest schema; refuses one from a newer mailring. */
  private upgrade(): void {
    const current = this.guard(() => this.schemaVersion())
    const pending = pendingMigrations(sqliteMigrations, current, this.location)
    if (pending.length === 0) return
    if (this.readOnly) {
      throw new MailringError(
        `Store ${this.location} has schema ${current}, this mailring needs ${pending[pending.length - 1]!.version}, and ${userName()} may not write it: run \`mailring init\` once as a user who may, to upgrade it.`,
        {code: 'store_read_only', exitCode: ExitCode.store},
      )
    }
    this.guard(() => this.db.transaction(() => this.migrate()).immediate())
  }

  private metaMap(): Map<string, string> {
    const rows = this.db.prepare('SELECT key, value FROM mailring_meta').raw().all() as [string, string][]
    return new Map(rows)
  }

  private serverRows(): ServerRow[] {
    return this.db
      .prepare('SELECT id, name, address, zone, weight, state FROM mailring_servers ORDER BY id')
      .all() as ServerRow[]
  }

  private topologyNow(): Topology {
    const meta = this.metaMap()
    const servers = this.serverRows()
    const pins = this.db
      .prepare(
        'SELECT d.domain, s.name FROM mailring_domain_servers d JOIN mailring_servers s ON s.id = d.server_id',
      )
      .raw()
      .all() as [string, string][]
    const domains = this.db.prepare('SELECT domain, copies FROM mailring_domains').raw().all() as [
      string,
      number | null,
    ][]
    return topologyOfRows({meta, servers, domains, pins})
  }

  private usersWithCopies(where: string, params: unknown[], limit: number): UserRecord[] {
    const users = this.db
      .prepare(`SELECT id, address, domain FROM mailring_users WHERE ${where} ORDER BY address LIMIT ?`)
      .raw()
      .all(...params, limit) as [number, string, string][]
    const copiesOf = this.db
      .prepare(
        'SELECT s.name FROM mailring_copies c JOIN mailring_servers s ON s.id = c.server_id WHERE c.user_id = ? ORDER BY c.position',
      )
      .pluck()
    return users.map(([id, user, domain]) => ({user, domain, copies: copiesOf.all(id) as string[]}))
  }

  /**
   * guard() of the module, and for a store this user may only read: a write refused as one line that
   * says so, and for an immutable read, a refusal when the file changed while it was read.
   */
  private guard<T>(work: () => T): T {
    if (!this.readOnly) return guard(this.location, work)
    let result: T
    try {
      result = work()
    } catch (error) {
      const code = (error as {code?: unknown}).code
      if (typeof code === 'string' && code.startsWith('SQLITE_READONLY')) throw this.readOnlyError(error)
      this.checkUnchanged()
      return guard(this.location, () => {
        throw error
      })
    }
    this.checkUnchanged()
    return result
  }

  private readOnlyError(cause: unknown): MailringError {
    return new MailringError(
      `Store ${this.location} is read-only for ${userName()}: run commands that change it as a user who may write ${this.path} and its folder ${dirname(this.path)} (its owner), or give ${userName()} write access to both.`,
      {code: 'store_read_only', exitCode: ExitCode.store, cause},
    )
  }

  private checkUnchanged(): void {
    const {signature} = this.readOnly ?? {}
    if (signature === undefined || fileSignature(this.path) === signature) return
    throw new MailringError(
      `Store ${this.location} was written by another process while this one read it (read only, without a lock): run the command again.`,
      {code: 'store_changed', exitCode: ExitCode.store},
    )
  }
}

/**
 * Whether this user may write `path` (an existing store: the file, and its folder for the -wal and -shm
 * files SQLite keeps beside it), or, with `isFolder`, create files in the folder `path`.
 */
function mayWrite(path: string, isFolder = false): boolean {
  try {
    if (!isFolder) accessSync(path, constants.W_OK)
    accessSync(isFolder ? path : dirname(path), constants.W_OK | constants.X_OK)
    return true
  } catch {
    return false
  }
}

/** The folder of `path`, or its nearest ancestor that exists (init creates the folders in between). */
function nearestFolder(path: string): string {
  let folder = dirname(path)
  while (!existsSync(folder) && dirname(folder) !== folder) folder = dirname(folder)
  return folder
}

/**
 * Opens a store that this user may read but not write. While another process has it open, its -wal and
 * -shm files exist and SQLite reads through them as usual. Otherwise SQLite cannot read a WAL database
 * without creating them, which the folder does not allow: it reads the file as immutable, without locks,
 * and every read checks that the file has not changed since (a writer that starts meanwhile changes it
 * only when it checkpoints).
 */
function openReadOnly(path: string): {db: Database.Database; how: ReadOnly} {
  if (existsSync(`${path}-wal`)) {
    const db = guard(path, () => new Database(path, {readonly: true, fileMustExist: true}))
    try {
      db.prepare('SELECT count(*) FROM sqlite_master').get()
      return {db, how: {}}
    } catch {
      // The writer closed the store meanwhile and took its -wal file with it: read the file as it is.
      db.close()
    }
  }
  const signature = fileSignature(path)
  const uri = `file:${path.replace(/[%?#]/g, (c) => `%${c.charCodeAt(0).toString(16)}`)}?immutable=1`
  const db = guard(path, () => new Database(uri, {readonly: true, fileMustExist: true}))
  return {db, how: {signature}}
}

/** What changes when a file is written: its identity, size and times. */
function fileSignature(path: string): string {
  const stat = statSync(path, {bigint: true})
  return `${stat.dev}:${stat.ino}:${stat.size}:${stat.mtimeNs}:${stat.ctimeNs}`
}

/** This process's user, for messages. */
function userName(): string {
  try {
    return `user ${userInfo().username}`
  } catch {
    return `user id ${process.getuid?.() ?? '?'}`
  }
}

/** Turns SQLite's errors into one-line store errors (exit code 4); mailring's own errors pass through. */
function guard<T>(location: string, work: () => T): T {
  try {
    return work()
  } catch (error) {
    if (error instanceof MailringError || error instanceof Rollback) throw error
    if (!(error instanceof Database.SqliteError) && (error as NodeJS.ErrnoException).code === undefined)
      throw error
    const code = (error as {code?: string}).code ?? ''
    const reason =
      code === 'SQLITE_BUSY'
        ? 'the database is busy: another process kept it locked for too long; try again'
        : code === 'SQLITE_NOTADB'
          ? 'not a SQLite database'
          : code === 'SQLITE_READONLY'
            ? 'the database is read-only'
            : code === 'SQLITE_CORRUPT'
              ? 'the database file is corrupt'
              : (error as Error).message
    throw new MailringError(`Store ${location}: ${reason}.`, {
      code: 'store',
      exitCode: ExitCode.store,
      cause: error,
    })
  }
}
