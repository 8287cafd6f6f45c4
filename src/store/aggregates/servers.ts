/**
 * The server list every aggregate resolves server names through (mailring_servers), in both dialects;
 * what writing a topology does to it is topology.ts.
 */
import type {ServerState} from '../../core/topology.js'
import type {MysqlConn, Row, SqliteDb} from './sql.js'

/** A row of mailring_servers. */
export interface ServerRow {
  id: number
  name: string
  address: string
  zone: string | null
  weight: number
  state: ServerState
}

function serverIdsByName(rows: readonly ServerRow[]): Map<string, number> {
  return new Map(rows.map((row) => [row.name, row.id]))
}

const SERVER_ROWS_SQL = 'SELECT id, name, address, zone, weight, state FROM mailring_servers ORDER BY id'
/** A server's id by name. */
const SERVER_ID_SQL = 'SELECT id FROM mailring_servers WHERE name = ?'

export const sqliteServers = {
  rows(db: SqliteDb): ServerRow[] {
    return db.prepare(SERVER_ROWS_SQL).all() as ServerRow[]
  },
  ids(db: SqliteDb): Map<string, number> {
    return serverIdsByName(sqliteServers.rows(db))
  },
  id(db: SqliteDb, name: string): number | undefined {
    return db.prepare(SERVER_ID_SQL).pluck().get(name) as number | undefined
  },
}

export const mysqlServers = {
  /** `forUpdate`: locked until the transaction ends (writing the topology). */
  async rows(conn: MysqlConn, forUpdate = false): Promise<ServerRow[]> {
    const [rows] = await conn.query<Row[]>(`${SERVER_ROWS_SQL}${forUpdate ? ' FOR UPDATE' : ''}`)
    return rows.map((row) => ({
      id: Number(row.id),
      name: String(row.name),
      address: String(row.address),
      zone: row.zone === null ? null : String(row.zone),
      weight: Number(row.weight),
      state: row.state as ServerState,
    }))
  },
  async ids(conn: MysqlConn): Promise<Map<string, number>> {
    return serverIdsByName(await mysqlServers.rows(conn))
  },
  /** `share`: the row stays as it is until the transaction ends (LOCK IN SHARE MODE). */
  async id(conn: MysqlConn, name: string, share = false): Promise<number | undefined> {
    const [[row]] = await conn.query<Row[]>(`${SERVER_ID_SQL}${share ? ' LOCK IN SHARE MODE' : ''}`, [name])
    return row === undefined ? undefined : Number(row.id)
  },
}
