import mysql from 'mysql2/promise'
import type {ConnectionOptions, Pool, PoolConnection} from 'mysql2/promise'

import {ExitCode, MailringError} from '../core/errors.js'
import {MysqlLocking} from './aggregates/lock.js'
import {mysqlMeta} from './aggregates/meta.js'
import {mysqlHosts} from './aggregates/hosts.js'
import {mysqlSyncStates} from './aggregates/sync-states.js'
import {mysqlMissed} from './aggregates/missed.js'
import {mysqlMoves} from './aggregates/moves.js'
import {mysqlHealth, mysqlQueue} from './aggregates/replication.js'
import type {MysqlConn, MysqlSnapshot} from './aggregates/sql.js'
import {mysqlTopology} from './aggregates/topology.js'
import {mysqlUsers} from './aggregates/users.js'
import {DialectStore, type Aggregates, type Awaitable, type RunKind} from './dialect-store.js'
import {pendingMigrations} from './migrations/index.js'
import {mysqlMigrations} from './migrations/mysql.js'
import {mysqlStoreError} from './mysql-errors.js'
import {mysqlSslOptions, type MysqlSettings} from './mysql-settings.js'
import {mysqlUsersTable} from './mysql-users-table.js'
import type * as api from './store.js'

/**
 * The MySQL/MariaDB store (mysql2): the production store, in the database Dovecot's userdb reads. A small
 * pool for queries and transactions (InnoDB, REPEATABLE READ); the cluster lock is GET_LOCK on a dedicated
 * connection of its own, held for the life of the lock. What each method does is in ./aggregates, and
 * DialectStore calls it; this class holds the connections and runs them (`run`): `transaction` (a write checks the cluster lock before it commits),
 * `query` for one statement on the pool, `snapshot` for the scans.
 */
export class MysqlStore extends DialectStore<MysqlConn> implements api.Store {
  readonly location: string
  private readonly pool: Pool
  private readonly settings: MysqlSettings
  private readonly locking: MysqlLocking
  /** Whether multi-row INSERTs get consecutive ids (asked once per store, by its first insert). */
  private consecutiveIds?: boolean
  protected readonly aggregates: Aggregates<MysqlConn> = {
    meta: mysqlMeta,
    topology: mysqlTopology,
    users: {
      ...mysqlUsers,
      insert: async (conn, batches, tally) => {
        this.consecutiveIds ??= await mysqlUsers.consecutiveAutoIncrement(conn)
        await mysqlUsers.insert(conn, batches, tally, this.consecutiveIds)
      },
    },
    moves: mysqlMoves,
    queue: mysqlQueue,
    health: mysqlHealth,
    syncStates: mysqlSyncStates,
    missed: mysqlMissed,
    hosts: mysqlHosts,
  }
  private readonly guarded = <T>(work: () => Promise<T>): Promise<T> => this.guard(work)
  private readonly storeError = (error: unknown): unknown => mysqlStoreError(error, this.settings)

  private constructor(settings: MysqlSettings) {
    super()
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

  async close(): Promise<void> {
    await this.locking.release()
    await this.pool.end().catch(() => {})
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

  /** One statement on the pool; everything else in a transaction (REPEATABLE READ but for claims and switches). */
  protected override async run<T>(kind: RunKind, work: (conn: MysqlConn) => Awaitable<T>): Promise<T> {
    switch (kind) {
      case 'query':
        return this.query(work)
      case 'read':
      case 'readOne':
        return this.transaction(work, {write: false})
      case 'write':
      case 'writeOne':
        return this.transaction(work)
      case 'claim':
        return this.transaction(work, {isolation: 'READ COMMITTED'})
      case 'switch':
        return this.againAfterDeadlock(() => this.transaction(work, {isolation: 'READ COMMITTED'}))
    }
  }

  /** Runs `transaction` up to three times while it ends in a deadlock, which rolled all of it back. */
  private async againAfterDeadlock<T>(transaction: () => Promise<T>): Promise<T> {
    for (let attempt = 1; ; attempt++) {
      try {
        return await transaction()
      } catch (error) {
        const cause = (error as {cause?: {code?: string}}).cause
        if (attempt >= 3 || cause?.code !== 'ER_LOCK_DEADLOCK') throw error
      }
    }
  }

  // Connections and transactions

  private async transaction<T>(
    work: (conn: PoolConnection) => Awaitable<T>,
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
        result = await this.guard(async () => work(conn))
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
  private async query<T>(work: (pool: MysqlConn) => Awaitable<T>): Promise<T> {
    return this.guard(async () => work(this.pool))
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
