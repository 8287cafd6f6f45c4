/**
 * What the two dialects of an aggregate work on. SQLite: the better-sqlite3 database, synchronously, inside
 * the transaction the store opened. MySQL: a connection of the pool inside the store's transaction (or the
 * pool itself, for one statement).
 */
import type Database from 'better-sqlite3'
import type {Connection, ResultSetHeader, RowDataPacket} from 'mysql2/promise'

export type SqliteDb = Database.Database
export type MysqlConn = Pick<Connection, 'query'>
/** A MySQL row as an object. */
export type Row = RowDataPacket & Record<string, unknown>

/** MySQL rows as arrays (no object per row). */
export async function arrayRows(conn: MysqlConn, sql: string, values: unknown[]): Promise<unknown[][]> {
  const [rows] = await conn.query<RowDataPacket[]>({sql, values, rowsAsArray: true})
  return rows as unknown as unknown[][]
}

/** Runs a MySQL statement that changes rows; how many it changed. */
export async function affected(conn: MysqlConn, sql: string, values: unknown[] = []): Promise<number> {
  const [result] = await conn.query<ResultSetHeader>(sql, values)
  return result.affectedRows
}

/** How a store turns a driver's errors into its one-line errors, for work that runs outside its methods (scans). */
export type SqliteGuard = <T>(work: () => T) => T
export type MysqlGuard = <T>(work: () => Promise<T>) => Promise<T>

/** A MySQL connection of its own in a consistent snapshot (a read-only transaction); end() gives it back. */
export interface MysqlSnapshot {
  conn: MysqlConn
  end(): Promise<void>
}
