import mysql from 'mysql2/promise'
import type {ConnectionOptions, Pool, PoolConnection} from 'mysql2/promise'

import {ExitCode, MailringError} from '../core/errors.js'
import type {Topology} from '../core/topology.js'
import {MysqlLocking} from './aggregates/lock.js'
import {mysqlMeta, storeMetaOf} from './aggregates/meta.js'
import {mysqlHosts} from './aggregates/hosts.js'
import {mysqlMoves} from './aggregates/moves.js'
import {claimWith, enqueueWith, mysqlHealth, mysqlQueue, renewWith} from './aggregates/replication.js'
import type {MysqlConn, MysqlSnapshot} from './aggregates/sql.js'
import {mysqlTopology} from './aggregates/topology.js'
import {mysqlUsers, tallyInserts} from './aggregates/users.js'
import {pendingMigrations} from './migrations/index.js'
import {mysqlMigrations} from './migrations/mysql.js'
import {mysqlStoreError} from './mysql-errors.js'
import {mysqlSslOptions, type MysqlSettings} from './mysql-settings.js'
import {mysqlUsersTable} from './mysql-users-table.js'
import type * as api from './store.js'

/**
 * The MySQL/MariaDB store (mysql2): the production store, in the database Dovecot's userdb reads. A small
 * pool for queries and transactions (InnoDB, REPEATABLE READ); the cluster lock is GET_LOCK on a dedicated
 * connection of its own, held for the life of the lock. What each method does is in ./aggregates; this class
 * holds the connections and runs them: `transaction` (a write checks the cluster lock before it commits),
 * `query` for one statement on the pool, `snapshot` for the scans.
 */
export class MysqlStore implements api.Store {
  readonly location: string
  private readonly pool: Pool
  private readonly settings: MysqlSettings
  private readonly locking: MysqlLocking
  /** Whether multi-row INSERTs get consecutive ids (asked once per store). */
  private consecutiveIds?: boolean
  private readonly guarded = <T>(work: () => Promise<T>): Promise<T> => this.guard(work)
  private readonly storeError = (error: unknown): unknown => mysqlStoreError(error, this.settings)

  private constructor(settings: MysqlSettings) {
    this.settings = settings
    this.location = settings.location
    const options = connectionOptions(settings)
    this.pool = mysql.createPool({...options, connectionLimit: 4, maxIdle: 4})
    // An idle pooled connection that breaks is replaced on next use; never crash on its 'error'.
    this.pool.on('connection', (connection) => connection.on('error', () => {}))
    this.locking = new MysqlLocking(this.pool, options, this.location, this.guarded, this.storeError)
  }

  /** Creates the schema (or finds it) in the database; `created` is false when it existed already. */
  static async init(
    settings: MysqlSettings,
    options: {copies?: number} = {},
  ): Promise<{store: MysqlStore; created: boolean}> {
    const store = new MysqlStore(settings)
    try {
      const created = await store.withMigrationLock((conn) =>
        mysqlMeta.create(conn, options.copies, store.location),
      )
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
      const version = await mysqlMeta.schemaVersion(store.pool, store.location)
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

  async meta(): Promise<api.StoreMeta> {
    return storeMetaOf(await this.query(mysqlMeta.map))
  }

  async close(): Promise<void> {
    await this.locking.release()
    await this.pool.end().catch(() => {})
  }

  // Topology

  async readTopology(): Promise<Topology> {
    return this.transaction(mysqlTopology.read, {write: false})
  }

  async writeTopology(topology: Topology): Promise<void> {
    await this.transaction((conn) => mysqlTopology.write(conn, topology))
  }

  async serverUsage(): Promise<api.ServerUsage[]> {
    return this.transaction(mysqlTopology.usage, {write: false})
  }

  // Users

  async insertUsers(
    batches: Iterable<api.UserBatch>,
    options: {skipExisting: boolean},
  ): Promise<api.InsertUsersResult> {
    return tallyInserts(options, (tally) =>
      this.transaction(async (conn) => {
        this.consecutiveIds ??= await mysqlUsers.consecutiveAutoIncrement(conn)
        await mysqlUsers.insert(conn, batches, tally, this.consecutiveIds)
      }),
    )
  }

  async replaceUsers(
    batches: Iterable<api.UserBatch>,
    remove: readonly string[],
  ): Promise<api.ReplaceUsersResult> {
    return this.transaction((conn) => mysqlUsers.replace(conn, batches, remove))
  }

  async removeUsers(users: readonly string[]): Promise<string[]> {
    return this.transaction((conn) => mysqlUsers.remove(conn, users))
  }

  async getUser(user: string): Promise<api.UserRecord | undefined> {
    return this.transaction((conn) => mysqlUsers.get(conn, user), {write: false})
  }

  async listUsers(options: api.UserListOptions): Promise<api.UserRecord[]> {
    return this.transaction((conn) => mysqlUsers.list(conn, options), {write: false})
  }

  async countUsers(): Promise<number> {
    return this.query(mysqlUsers.count)
  }

  async *scanUsers(chunkSize = 50_000): AsyncGenerator<string[]> {
    yield* mysqlUsers.scan(await this.snapshot(), chunkSize, this.guarded)
  }

  async scanPlacements(chunkSize = 50_000): Promise<api.PlacementScan> {
    return mysqlUsers.placements(await this.snapshot(), chunkSize, this.guarded)
  }

  async usersTable(spec: api.UsersTableSpec): Promise<api.UsersTable> {
    return mysqlUsersTable(spec, {
      pool: this.pool,
      database: this.settings.database,
      guard: this.guarded,
      storeError: this.storeError,
    })
  }

  // The move journal

  async journalMoves(plan: string, moves: readonly api.NewMove[]): Promise<number> {
    return this.transaction((conn) => mysqlMoves.journal(conn, plan, moves))
  }

  async openMoves(): Promise<api.MoveRecord[]> {
    return this.transaction(mysqlMoves.open, {write: false})
  }

  async setMoveState(
    id: number,
    expected: api.MoveState,
    next: api.MoveState,
    error?: string,
  ): Promise<boolean> {
    return this.transaction((conn) => mysqlMoves.setState(conn, id, expected, next, error))
  }

  /** READ COMMITTED (see mysqlMoves.switch); a deadlock left anyway is retried: it rolled the whole switch back. */
  async switchMove(id: number): Promise<void> {
    for (let attempt = 1; ; attempt++) {
      try {
        return await this.transaction((conn) => mysqlMoves.switch(conn, id), {isolation: 'READ COMMITTED'})
      } catch (error) {
        const cause = (error as {cause?: {code?: string}}).cause
        if (attempt >= 3 || cause?.code !== 'ER_LOCK_DEADLOCK') throw error
      }
    }
  }

  async retireMove(id: number, trash: string | null): Promise<boolean> {
    return this.transaction((conn) => mysqlMoves.retire(conn, id, trash))
  }

  async retiredMoves(before: string): Promise<api.MoveRecord[]> {
    return this.transaction((conn) => mysqlMoves.retired(conn, before), {write: false})
  }

  async cancelUnswitchedMoves(): Promise<number> {
    return this.transaction(mysqlMoves.cancelUnswitched)
  }

  // The replication queue and server health

  async enqueueReplication(
    requests: readonly api.ReplicationRequest[],
    options: api.EnqueueOptions,
  ): Promise<api.EnqueueResult> {
    return enqueueWith(requests, options, (plan) =>
      this.transaction((conn) => mysqlQueue.enqueue(conn, plan)),
    )
  }

  /** READ COMMITTED: see mysqlQueue.claim. */
  async claimReplication(options: api.ClaimOptions): Promise<api.ReplicationTask[]> {
    return claimWith(options, (plan) =>
      this.transaction((conn) => mysqlQueue.claim(conn, plan), {isolation: 'READ COMMITTED'}),
    )
  }

  async renewReplication(owner: string, users: readonly string[], leaseUntilMs: number): Promise<string[]> {
    return renewWith(users, leaseUntilMs, (until) =>
      this.transaction((conn) => mysqlQueue.renew(conn, owner, users, until)),
    )
  }

  async finishReplication(
    owner: string,
    task: api.ReplicationTask,
    outcome: api.ReplicationOutcome,
  ): Promise<boolean> {
    return this.transaction((conn) => mysqlQueue.finish(conn, owner, task, outcome))
  }

  async releaseReplication(owner: string): Promise<number> {
    return this.transaction((conn) => mysqlQueue.release(conn, owner))
  }

  async replicationStats(nowMs: number): Promise<api.ReplicationQueueStats> {
    return this.transaction((conn) => mysqlQueue.stats(conn, nowMs), {write: false})
  }

  async replicationMarker(key: string): Promise<string | undefined> {
    return this.query((pool) => mysqlQueue.marker(pool, key))
  }

  async setReplicationMarker(key: string, value: string): Promise<void> {
    await this.transaction((conn) => mysqlQueue.setMarker(conn, key, value))
  }

  async serverHealth(): Promise<api.ServerHealth[]> {
    return this.transaction(mysqlHealth.list, {write: false})
  }

  async setServerHealth(
    server: string,
    expected: api.ServerHealthState,
    next: api.ServerHealthState,
    detail: string,
  ): Promise<boolean> {
    return this.transaction((conn) => mysqlHealth.set(conn, server, expected, next, detail))
  }

  // Hosts

  async listHosts(): Promise<api.Host[]> {
    return this.query(mysqlHosts.list)
  }

  async putHost(host: api.Host): Promise<void> {
    await this.transaction((conn) => mysqlHosts.put(conn, host))
  }

  async removeHost(name: string): Promise<boolean> {
    return this.transaction((conn) => mysqlHosts.remove(conn, name))
  }

  // The cluster lock

  async acquireLock(command: string): Promise<api.ClusterLock> {
    return this.locking.acquire(command)
  }

  async lockHolder(): Promise<api.LockHolder | undefined> {
    return this.locking.holder()
  }

  async breakLock(expected: api.LockHolder): Promise<boolean> {
    return this.locking.break(expected)
  }

  // Connections and transactions

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
        if (write) await this.locking.verify(conn)
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

  /** One statement on the pool, outside a transaction. */
  private async query<T>(work: (pool: MysqlConn) => Promise<T>): Promise<T> {
    return this.guard(() => work(this.pool))
  }

  /** A connection of its own with a consistent snapshot until it ends (InnoDB MVCC), for a scan. */
  private async snapshot(): Promise<MysqlSnapshot> {
    const conn = await this.guard(() => this.pool.getConnection())
    const end = async (): Promise<void> => {
      await conn.query('COMMIT').catch(() => {})
      conn.release()
    }
    try {
      await this.guard(async () => {
        await conn.query('SET TRANSACTION ISOLATION LEVEL REPEATABLE READ')
        await conn.query('START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY')
      })
    } catch (error) {
      await end()
      throw error
    }
    return {conn, end}
  }

  /** Runs `work` on one connection holding the migration lock (schema changes one at a time). */
  private async withMigrationLock<T>(work: (conn: PoolConnection) => Promise<T>): Promise<T> {
    const conn = await this.guard(() => this.pool.getConnection())
    try {
      await this.guard(() => mysqlMeta.lockMigrations(conn, this.location))
      try {
        return await this.guard(() => work(conn))
      } finally {
        await mysqlMeta.unlockMigrations(conn)
      }
    } finally {
      conn.release()
    }
  }

  private async upgrade(): Promise<void> {
    await this.withMigrationLock(async (conn) =>
      mysqlMeta.migrate(conn, await mysqlMeta.schemaVersion(conn, this.location), this.location),
    )
  }

  private async guard<T>(work: () => Promise<T>): Promise<T> {
    try {
      return await work()
    } catch (error) {
      throw this.storeError(error)
    }
  }
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
