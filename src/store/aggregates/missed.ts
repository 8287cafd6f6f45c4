/**
 * The changes a down server missed (mailring_replication_missed, schema 8): when the replicator syncs a user
 * without the copy on a server that is down, it records (server, user); when the server returns, only those
 * users are caught up before it takes logins again, not every user it holds (a short outage used to queue a
 * catch-up of all of them, issue 20 C). A catch-up sync that reached the copy clears the row. Rows of a copy
 * that has moved away since are not listed (only current copies count), and go with the user or server.
 */
import type {MysqlConn, Row, SqliteDb} from './sql.js'

/** One row per copy of the user on a named server (not a copy: no row); the earliest time is kept. */
const RECORD_SELECT = `SELECT s.id, u.id, ?
  FROM mailring_users u
  JOIN mailring_copies c ON c.user_id = u.id
  JOIN mailring_servers s ON s.id = c.server_id
  WHERE u.address = ? AND s.name = ?`
const SQLITE_RECORD_SQL = `INSERT INTO mailring_replication_missed (server_id, user_id, since_ms) ${RECORD_SELECT}
  ON CONFLICT (server_id, user_id) DO NOTHING`
const MYSQL_RECORD_SQL = `INSERT IGNORE INTO mailring_replication_missed (server_id, user_id, since_ms) ${RECORD_SELECT}`

const LIST_SQL = `SELECT u.address FROM mailring_replication_missed m
  JOIN mailring_servers s ON s.id = m.server_id
  JOIN mailring_users u ON u.id = m.user_id
  WHERE s.name = ?
    AND EXISTS (SELECT 1 FROM mailring_copies c WHERE c.user_id = m.user_id AND c.server_id = m.server_id)
  ORDER BY u.address`

const CLEAR_SQL = `DELETE FROM mailring_replication_missed
  WHERE user_id = (SELECT id FROM mailring_users WHERE address = ?)
    AND server_id = (SELECT id FROM mailring_servers WHERE name = ?)`

export const sqliteMissed = {
  record(db: SqliteDb, user: string, servers: readonly string[], nowMs: number): number {
    const statement = db.prepare(SQLITE_RECORD_SQL)
    return servers.reduce((n, server) => n + statement.run(nowMs, user, server).changes, 0)
  },
  users(db: SqliteDb, server: string): string[] {
    return (db.prepare(LIST_SQL).all(server) as Row[]).map((row) => String(row.address))
  },
  clear(db: SqliteDb, user: string, servers: readonly string[]): number {
    const statement = db.prepare(CLEAR_SQL)
    return servers.reduce((n, server) => n + statement.run(user, server).changes, 0)
  },
}

export const mysqlMissed = {
  async record(conn: MysqlConn, user: string, servers: readonly string[], nowMs: number): Promise<number> {
    let recorded = 0
    for (const server of servers) {
      const [result] = await conn.query(MYSQL_RECORD_SQL, [nowMs, user, server])
      recorded += (result as {affectedRows: number}).affectedRows
    }
    return recorded
  },
  async users(conn: MysqlConn, server: string): Promise<string[]> {
    const [rows] = await conn.query<Row[]>(LIST_SQL, [server])
    return rows.map((row) => String(row.address))
  },
  async clear(conn: MysqlConn, user: string, servers: readonly string[]): Promise<number> {
    let cleared = 0
    for (const server of servers) {
      const [result] = await conn.query(CLEAR_SQL, [user, server])
      cleared += (result as {affectedRows: number}).affectedRows
    }
    return cleared
  },
}
