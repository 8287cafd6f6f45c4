import {existsSync, mkdirSync} from 'node:fs'
import {dirname} from 'node:path'

import Database from 'better-sqlite3'

import {ExitCode, MailringError} from '../core/errors.js'
import {SqliteLocking} from './aggregates/lock.js'
import {sqliteMeta} from './aggregates/meta.js'
import {sqliteHosts} from './aggregates/hosts.js'
import {sqliteSyncStates} from './aggregates/sync-states.js'
import {sqliteMissed} from './aggregates/missed.js'
import {sqliteMoves} from './aggregates/moves.js'
import {sqliteHealth, sqliteQueue} from './aggregates/replication.js'
import {sqliteTopology} from './aggregates/topology.js'
import {sqliteUsers} from './aggregates/users.js'
import {DialectStore, type Aggregates, type RunKind} from './dialect-store.js'
import {pendingMigrations} from './migrations/index.js'
import {sqliteMigrations} from './migrations/sqlite.js'
import {sqliteGuard} from './sqlite-errors.js'
import {mayWrite, nearestFolder, openReadOnly, userName, type ReadOnlyAccess} from './sqlite-read-only.js'
import type * as api from './store.js'

/** How long a write waits for another process's transaction before giving up. */
const BUSY_TIMEOUT_MS = 15_000

type Db = Database.Database

/**
 * The embedded store: one SQLite file in WAL mode (readers never block the writer), a busy timeout so
 * that two processes take turns instead of failing, and a transaction around every change. What each method
 * does is in ./aggregates, and DialectStore calls it; this class opens the file and runs them (`run`): `write`
 * in an immediate transaction that checks the cluster lock before it commits, `read` in a read transaction,
 * `query` as one statement.
 */
export class SqliteStore extends DialectStore<Db> implements api.Store {
  readonly location: string
  protected readonly aggregates: Aggregates<Db> = {
    meta: sqliteMeta,
    topology: sqliteTopology,
    users: sqliteUsers,
    moves: sqliteMoves,
    queue: sqliteQueue,
    health: sqliteHealth,
    syncStates: sqliteSyncStates,
    missed: sqliteMissed,
    hosts: sqliteHosts,
  }
  private readonly db: Db
  private readonly locking: SqliteLocking
  private readonly guarded = <T>(work: () => T): T => this.guard(work)

  private constructor(
    db: Db,
    path: string,
    /** Set when this user may read the store but not write it. */
    private readonly readOnly?: ReadOnlyAccess,
  ) {
    super()
    this.db = db
    this.location = `sqlite:${path}`
    this.locking = new SqliteLocking(db, this.guarded)
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
    const db = sqliteGuard(path, () => {
      mkdirSync(dirname(path), {recursive: true})
      return new Database(path)
    })
    const store = new SqliteStore(db, path)
    try {
      store.configure()
      const created = sqliteGuard(path, () =>
        db.transaction(() => sqliteMeta.create(db, options.copies, store.location)).immediate(),
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
   * change is refused in one line (see sqlite-read-only.ts).
   */
  static async open(path: string, options: {readOnly?: boolean} = {}): Promise<SqliteStore> {
    if (!existsSync(path)) {
      throw new MailringError(`No mailring store at ${path}: run \`mailring init\` first (or pass --db).`, {
        code: 'no_store',
        exitCode: ExitCode.store,
      })
    }
    const readOnly = options.readOnly || !mayWrite(path) ? openReadOnly(path) : undefined
    const db = readOnly?.db ?? sqliteGuard(path, () => new Database(path, {fileMustExist: true}))
    const store = new SqliteStore(db, path, readOnly?.access)
    try {
      store.configure()
      if (store.guard(() => sqliteMeta.schemaVersion(db)) === 0) {
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

  async close(): Promise<void> {
    if (this.db.open) this.db.close()
  }

  scanUsers(chunkSize = 50_000): AsyncGenerator<string[]> {
    return sqliteUsers.scan(this.db, chunkSize, this.guarded)
  }

  async scanPlacements(chunkSize = 20_000): Promise<api.PlacementScan> {
    return sqliteUsers.placements(this.db, chunkSize, this.guarded)
  }

  async usersTable(spec: api.UsersTableSpec): Promise<api.UsersTable> {
    throw new MailringError(
      `${spec.source}: an operator's users table needs the MySQL/MariaDB store (db: mysql://...); ${this.location} is the embedded store.`,
      {code: 'users_table_unsupported'},
    )
  }

  // The cluster lock

  async acquireLock(command: string): Promise<api.ClusterLock> {
    return this.locking.acquire(command)
  }

  async lockHolder(): Promise<api.LockHolder | undefined> {
    return this.guard(() => this.locking.holder())
  }

  async breakLock(expected: api.LockHolder): Promise<boolean> {
    return this.guard(() => this.locking.break(expected))
  }

  // Connection and transactions

  /** One statement alone (atomic by itself), reads in a read transaction, and every other change in a write. */
  protected override run<T>(kind: RunKind, work: (db: Db) => T): T {
    switch (kind) {
      case 'query':
      case 'readOne':
      case 'writeOne':
        return this.query(work)
      case 'read':
        return this.read(work)
      case 'write':
      case 'claim':
      case 'switch':
        return this.write(work)
    }
  }

  // Connection and transactions

  /** A change in one immediate transaction, which checks before it commits that a lock this store holds is still its own. */
  private write<T>(work: (db: Db) => T): T {
    return this.guard(() =>
      this.db
        .transaction(() => {
          const result = work(this.db)
          this.locking.check()
          return result
        })
        .immediate(),
    )
  }

  /** Reads in one transaction: a consistent snapshot. */
  private read<T>(work: (db: Db) => T): T {
    return this.guard(() => this.db.transaction(() => work(this.db))())
  }

  /** One statement (a transaction of its own). */
  private query<T>(work: (db: Db) => T): T {
    return this.guard(() => work(this.db))
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

  /** Brings an existing store to the latest schema; refuses one from a newer mailring. */
  private upgrade(): void {
    const current = this.guard(() => sqliteMeta.schemaVersion(this.db))
    const pending = pendingMigrations(sqliteMigrations, current, this.location)
    if (pending.length === 0) return
    if (this.readOnly) throw this.readOnly.upgradeRefused(current, pending[pending.length - 1]!.version)
    this.guard(() => this.db.transaction(() => sqliteMeta.migrate(this.db, this.location)).immediate())
  }

  /** Turns SQLite's errors into one-line store errors (sqlite-errors.ts, and sqlite-read-only.ts for a store this user may only read). */
  private guard<T>(work: () => T): T {
    return this.readOnly ? this.readOnly.guard(work) : sqliteGuard(this.location, work)
  }
}
