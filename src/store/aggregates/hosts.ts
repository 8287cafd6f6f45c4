/**
 * Proxy and director hosts (mailring_hosts, schema 5): hosts that are not mail servers and get the proxy
 * passdb from `config push`. A host and a server never share a name.
 */
import {MailringError} from '../../core/errors.js'
import type {Host, HostRole} from '../store.js'
import {mysqlServers, sqliteServers} from './servers.js'
import {affected, type MysqlConn, type Row, type SqliteDb} from './sql.js'

interface HostRow {
  name: string
  address: string
  role: string
  dovecot_version: string | null
}

const LIST_HOSTS_SQL = 'SELECT name, address, role, dovecot_version FROM mailring_hosts ORDER BY name'
const UPDATE_HOST_SQL = 'UPDATE mailring_hosts SET address = ?, role = ?, dovecot_version = ? WHERE name = ?'
const INSERT_HOST_SQL =
  'INSERT INTO mailring_hosts (address, role, dovecot_version, name) VALUES (?, ?, ?, ?)'
const DELETE_HOST_SQL = 'DELETE FROM mailring_hosts WHERE name = ?'
/** A host by name (a new server may not take its name). */
const HOST_NAMED_SQL = 'SELECT 1 FROM mailring_hosts WHERE name = ?'

function hostOf(row: HostRow): Host {
  return {
    name: String(row.name),
    address: String(row.address),
    role: row.role as HostRole,
    dovecotVersion: row.dovecot_version === null ? null : String(row.dovecot_version),
  }
}

/** A host's values in the order UPDATE_HOST_SQL and INSERT_HOST_SQL take them, after checking its role. */
function hostValues(host: Host): [string, HostRole, string | null, string] {
  if (host.role !== 'proxy' && host.role !== 'director')
    throw new MailringError(`Host ${host.name}: role must be proxy or director, not ${String(host.role)}.`, {
      code: 'host_refused',
    })
  return [host.address, host.role, host.dovecotVersion, host.name]
}

function hostNameTaken(name: string): MailringError {
  return new MailringError(
    `Cannot add host ${name}: a mail server has that name already (see mailring node list); give the proxy or director another name.`,
    {code: 'host_name_taken'},
  )
}

export const sqliteHosts = {
  list(db: SqliteDb): Host[] {
    return (db.prepare(LIST_HOSTS_SQL).all() as HostRow[]).map(hostOf)
  },
  put(db: SqliteDb, host: Host): void {
    const values = hostValues(host)
    if (sqliteServers.id(db, host.name) !== undefined) throw hostNameTaken(host.name)
    if (db.prepare(UPDATE_HOST_SQL).run(...values).changes === 0) db.prepare(INSERT_HOST_SQL).run(...values)
  },
  remove(db: SqliteDb, name: string): boolean {
    return db.prepare(DELETE_HOST_SQL).run(name).changes > 0
  },
  exists(db: SqliteDb, name: string): boolean {
    return db.prepare(HOST_NAMED_SQL).get(name) !== undefined
  },
}

export const mysqlHosts = {
  async list(conn: MysqlConn): Promise<Host[]> {
    const [rows] = await conn.query<Row[]>(LIST_HOSTS_SQL)
    return rows.map((row) => hostOf(row as unknown as HostRow))
  },
  async put(conn: MysqlConn, host: Host): Promise<void> {
    const values = hostValues(host)
    // Shared lock on the server's row: a server of that name cannot come meanwhile.
    if ((await mysqlServers.id(conn, host.name, true)) !== undefined) throw hostNameTaken(host.name)
    if ((await affected(conn, UPDATE_HOST_SQL, values)) === 0) await conn.query(INSERT_HOST_SQL, values)
  },
  async remove(conn: MysqlConn, name: string): Promise<boolean> {
    return (await affected(conn, DELETE_HOST_SQL, [name])) > 0
  },
  async exists(conn: MysqlConn, name: string): Promise<boolean> {
    const [rows] = await conn.query<Row[]>(HOST_NAMED_SQL, [name])
    return rows.length > 0
  },
}
