/**
 * mailring_meta and the schema: what `mailring init` records, the schema version and the migrations that
 * bring a store to the latest one (the statements are in ../migrations, one list per dialect).
 */
import {randomUUID} from 'node:crypto'

import {ExitCode, MailringError} from '../../core/errors.js'
import {DEFAULT_COPIES, PLACEMENT_ALGORITHM_VERSION} from '../../core/topology.js'
import {pendingMigrations} from '../migrations/index.js'
import {mysqlMigrations} from '../migrations/mysql.js'
import {sqliteMigrations} from '../migrations/sqlite.js'
import type {StoreMeta} from '../store.js'
import type {MysqlConn, Row, SqliteDb} from './sql.js'

/** What `mailring init` records besides the schema version, as [key, value] rows. */
function initialMetaRows(copies: number = DEFAULT_COPIES): [string, string][] {
  return [
    ['algorithm', String(PLACEMENT_ALGORITHM_VERSION)],
    ['cluster_id', randomUUID()],
    ['created_at', new Date().toISOString()],
    ['copies', String(copies)],
  ]
}

export function storeMetaOf(meta: ReadonlyMap<string, string>): StoreMeta {
  return {
    schemaVersion: Number(meta.get('schema_version')),
    algorithm: Number(meta.get('algorithm')),
    clusterId: meta.get('cluster_id') ?? '',
    createdAt: meta.get('created_at') ?? '',
  }
}

const INSERT_META_SQL = 'INSERT INTO mailring_meta (`key`, value) VALUES (?, ?)'

/** The lock that lets one mailring at a time change a MySQL schema (DDL cannot be in a transaction). */
const MIGRATION_LOCK_NAME = 'mailring_migrate'
/** mailring's tables, those that refer to others first (dropped in this order). */
const MAILRING_TABLES = [
  'mailring_replication_missed',
  'mailring_sync_states',
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

export const sqliteMeta = {
  map(db: SqliteDb): Map<string, string> {
    const rows = db.prepare('SELECT key, value FROM mailring_meta').raw().all() as [string, string][]
    return new Map(rows)
  },
  set(db: SqliteDb, key: string, value: string): void {
    db.prepare(
      'INSERT INTO mailring_meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value',
    ).run(key, value)
  },
  /** 0 for a database without mailring's tables. */
  schemaVersion(db: SqliteDb): number {
    const hasMeta = db
      .prepare("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'mailring_meta'")
      .get()
    if (!hasMeta) return 0
    const value = db.prepare("SELECT value FROM mailring_meta WHERE key = 'schema_version'").pluck().get()
    return value === undefined ? 0 : Number(value)
  },
  /** Applies pending migrations (inside the caller's transaction). */
  migrate(db: SqliteDb, location: string): void {
    for (const migration of pendingMigrations(sqliteMigrations, sqliteMeta.schemaVersion(db), location)) {
      for (const statement of migration.statements) db.prepare(statement).run()
      sqliteMeta.set(db, 'schema_version', String(migration.version))
    }
  },
  /** Creates the schema and the initial meta rows, inside the caller's transaction; false when it exists. */
  create(db: SqliteDb, copies: number | undefined, location: string): boolean {
    if (sqliteMeta.schemaVersion(db) > 0) return false
    sqliteMeta.migrate(db, location)
    const insert = db.prepare(INSERT_META_SQL)
    for (const [key, value] of initialMetaRows(copies)) insert.run(key, value)
    return true
  },
}

export const mysqlMeta = {
  async map(conn: MysqlConn): Promise<Map<string, string>> {
    const [rows] = await conn.query<Row[]>('SELECT `key`, value FROM mailring_meta')
    return new Map(rows.map((row) => [String(row.key), String(row.value)]))
  },
  async set(conn: MysqlConn, key: string, value: string): Promise<void> {
    await conn.query(
      'INSERT INTO mailring_meta (`key`, value) VALUES (?, ?) ON DUPLICATE KEY UPDATE value = VALUES(value)',
      [key, value],
    )
  },
  /** 0 for a database without mailring's tables; refuses a connection without a database. */
  async schemaVersion(conn: MysqlConn, location: string): Promise<number> {
    const [tables] = await conn.query<Row[]>(
      "SELECT 1 FROM information_schema.TABLES WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = 'mailring_meta'",
    )
    if (tables.length === 0) {
      const [[db]] = await conn.query<Row[]>('SELECT DATABASE() AS db')
      if (db!.db === null)
        throw new MailringError(`Store ${location}: no database selected.`, {
          code: 'store',
          exitCode: ExitCode.store,
        })
      return 0
    }
    const [rows] = await conn.query<Row[]>("SELECT value FROM mailring_meta WHERE `key` = 'schema_version'")
    return rows.length === 0 ? 0 : Number(rows[0]!.value)
  },
  /** Applies the migrations after `current` (under the migration lock: DDL commits as it goes). */
  async migrate(conn: MysqlConn, current: number, location: string): Promise<void> {
    for (const migration of pendingMigrations(mysqlMigrations, current, location)) {
      for (const statement of migration.statements) await conn.query(statement)
      await mysqlMeta.set(conn, 'schema_version', String(migration.version))
    }
  },
  /**
   * Creates the schema and the initial meta rows (under the migration lock); false when it exists. DDL
   * commits as it goes: on failure the tables this call created are dropped, so that nothing is half-written.
   */
  async create(conn: MysqlConn, copies: number | undefined, location: string): Promise<boolean> {
    if ((await mysqlMeta.schemaVersion(conn, location)) > 0) return false
    const [rows] = await conn.query<Row[]>(
      "SELECT TABLE_NAME AS name FROM information_schema.TABLES WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME LIKE 'mailring\\_%'",
    )
    const existing = new Set(rows.map((row) => String(row.name)))
    try {
      await mysqlMeta.migrate(conn, 0, location)
      await conn.query('INSERT INTO mailring_meta (`key`, value) VALUES ?', [initialMetaRows(copies)])
    } catch (error) {
      for (const table of MAILRING_TABLES) {
        if (existing.has(table)) continue
        await conn.query(`DROP TABLE IF EXISTS ${table}`).catch(() => {})
      }
      throw error
    }
    return true
  },
  /** Takes the migration lock on this connection, waiting up to a minute for another mailring's change. */
  async lockMigrations(conn: MysqlConn, location: string): Promise<void> {
    const [[row]] = await conn.query<Row[]>(`SELECT GET_LOCK('${MIGRATION_LOCK_NAME}', 60) AS got`)
    if (Number(row!.got) !== 1)
      throw new MailringError(`Store ${location}: another mailring is changing the schema; try again.`, {
        code: 'locked',
        exitCode: ExitCode.locked,
      })
  },
  async unlockMigrations(conn: MysqlConn): Promise<void> {
    await conn.query(`DO RELEASE_LOCK('${MIGRATION_LOCK_NAME}')`).catch(() => {})
  },
}
