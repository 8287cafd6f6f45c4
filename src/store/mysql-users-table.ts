/**
 * The operator's own users table (config section users_table) beside mailring's tables in a MySQL/MariaDB
 * store, read only: mailring never alters it. Its rows stream from a consistent snapshot; its differences
 * against mailring's users are computed by the database where indexes allow.
 */
import type {Readable} from 'node:stream'

import type {Pool} from 'mysql2/promise'

import {MailringError} from '../core/errors.js'
import {arrayRows, type MysqlGuard, type Row} from './aggregates/sql.js'
import type {UsersTable, UsersTableChunk, UsersTableSpec} from './store.js'

/** What reading the users table needs of the store. */
export interface UsersTableAccess {
  pool: Pool
  /** The store's database, for messages. */
  database: string
  guard: MysqlGuard
  storeError(error: unknown): unknown
}

export async function mysqlUsersTable(spec: UsersTableSpec, access: UsersTableAccess): Promise<UsersTable> {
  const {pool, guard} = access
  const columns = spec.userColumn !== undefined ? [spec.userColumn] : [spec.localColumn!, spec.domainColumn!]
  const known = await tableColumns(access, spec.table, spec.source)
  const missing = columns.find((column) => !known.has(column.toLowerCase()))
  if (missing !== undefined) throw missingColumn(spec, missing, known, spec.source)
  const addressSql =
    spec.userColumn !== undefined
      ? quoteIdentifier(spec.userColumn)
      : `CONCAT(${quoteIdentifier(spec.localColumn!)}, '@', ${quoteIdentifier(spec.domainColumn!)})`
  return {
    name: spec.table,
    checkColumns: async (extra, source) => {
      const known = await tableColumns(access, spec.table, spec.source)
      const absent = extra.find((column) => !known.has(column.toLowerCase()))
      if (absent !== undefined) throw missingColumn(spec, absent, known, source)
    },
    differences: async () => {
      // Only when the operator's column(s) are indexed strings: otherwise each lookup would scan.
      const first = spec.userColumn ?? spec.localColumn!
      const [info] = await guard(() =>
        pool.query<Row[]>(
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
        if (!/^\w+$/.test(charset) || !/^\w+$/.test(collation)) throw new Error(`odd collation ${collation}`)
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
          throw access.storeError(error)
        } finally {
          conn.release()
        }
      }
      return chunks()
    },
  }
}

/** The columns (lower-case) of a table in the store's database; a missing table is one clear line. */
async function tableColumns(access: UsersTableAccess, table: string, source: string): Promise<Set<string>> {
  checkIdentifier(table, source)
  const [rows] = await access.guard(() =>
    access.pool.query<Row[]>(
      'SELECT COLUMN_NAME AS name FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = ?',
      [table],
    ),
  )
  if (rows.length === 0) {
    throw new MailringError(
      `${source}: the users table \`${table}\` does not exist in database ${access.database} (or this user may not see it).`,
      {code: 'users_table'},
    )
  }
  return new Set(rows.map((row) => String(row.name).toLowerCase()))
}

/** A MySQL identifier mailring may read: letters, digits, _ and $, at most 64 characters. */
function checkIdentifier(name: string, source: string): void {
  if (!/^[A-Za-z0-9_$]{1,64}$/.test(name)) {
    throw new MailringError(
      `${source}: "${name}" is not a table or column name mailring accepts (letters, digits, _ and $, at most 64).`,
      {code: 'users_table'},
    )
  }
}

function quoteIdentifier(name: string): string {
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

function text(value: unknown): string {
  if (value === null || value === undefined) return ''
  if (Buffer.isBuffer(value)) return value.toString('utf8')
  return String(value)
}
