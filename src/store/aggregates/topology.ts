/**
 * The topology as rows of mailring_servers, mailring_domains and mailring_domain_servers (and the default
 * copy count in mailring_meta), and back; then reading, writing and the usage per server in each dialect.
 */
import {MailringError} from '../../core/errors.js'
import {compareNames} from '../../core/placement.js'
import {
  DEFAULT_COPIES,
  PLACEMENT_ALGORITHM_VERSION,
  type ServerState,
  type Topology,
} from '../../core/topology.js'
import type {ServerUsage} from '../store.js'
import {mysqlHosts, sqliteHosts} from './hosts.js'
import {mysqlMeta, sqliteMeta} from './meta.js'
import {DELETE_MOVES_OF_SERVER_SQL, OPEN_MOVES_OF_SERVER_SQL, serverHasOpenMoves} from './moves.js'
import {mysqlServers, sqliteServers, type ServerRow} from './servers.js'
import type {MysqlConn, Row, SqliteDb} from './sql.js'

/**
 * A server's columns in the order both statements take them: UPDATE_SERVER_SQL and INSERT_SERVER_SQL.
 */
type ServerValues = [address: string, zone: string | null, weight: number, state: ServerState, name: string]

const UPDATE_SERVER_SQL =
  'UPDATE mailring_servers SET address = ?, zone = ?, weight = ?, state = ? WHERE name = ?'
const INSERT_SERVER_SQL =
  'INSERT INTO mailring_servers (address, zone, weight, state, name) VALUES (?, ?, ?, ?, ?)'
const DELETE_SERVER_SQL = 'DELETE FROM mailring_servers WHERE id = ?'
const SERVER_HOLDS_COPIES_SQL = 'SELECT 1 FROM mailring_copies WHERE server_id = ? LIMIT 1'
const INSERT_DOMAIN_SQL = 'INSERT INTO mailring_domains (domain, copies) VALUES (?, ?)'
const INSERT_PIN_SQL = 'INSERT INTO mailring_domain_servers (domain, server_id) VALUES (?, ?)'
const DOMAINS_SQL = 'SELECT domain, copies FROM mailring_domains'
const PINS_SQL =
  'SELECT d.domain, s.name FROM mailring_domain_servers d JOIN mailring_servers s ON s.id = d.server_id'
/** Writing a topology replaces every domain policy. */
const CLEAR_DOMAINS_SQL = ['DELETE FROM mailring_domain_servers', 'DELETE FROM mailring_domains']

/** What writing a topology changes in mailring_servers. */
interface ServerChanges {
  /** Servers the topology no longer has: deleted once the store has checked that they hold no copies. */
  removed: ServerRow[]
  /** Servers that exist, matched by name (their ids, and so their copies, stay). */
  updated: ServerValues[]
  /** New servers, in the topology's order (the order their ids are given in). */
  inserted: ServerValues[]
}

function serverChanges(existing: readonly ServerRow[], topology: Topology): ServerChanges {
  const known = new Set(existing.map((row) => row.name))
  const wanted = new Set(topology.servers.map((server) => server.name))
  const changes: ServerChanges = {
    removed: existing.filter((row) => !wanted.has(row.name)),
    updated: [],
    inserted: [],
  }
  for (const server of topology.servers) {
    const values: ServerValues = [
      server.address,
      server.zone ?? null,
      server.weight,
      server.state,
      server.name,
    ]
    if (known.has(server.name)) changes.updated.push(values)
    else changes.inserted.push(values)
  }
  return changes
}

/** The error writeTopology gives for a server it may not delete. */
function serverNotEmpty(name: string): MailringError {
  return new MailringError(
    `Server ${name} still holds copies: it cannot be deleted until a rebalance has moved them away.`,
    {code: 'server_not_empty'},
  )
}

function serverNameTaken(name: string): MailringError {
  return new MailringError(
    `Cannot add server ${name}: a proxy or director host has that name already (see mailring proxy list); give the server another name.`,
    {code: 'server_name_taken'},
  )
}

/** The domain policies as rows: mailring_domains (domain, copies) and mailring_domain_servers (domain, server_id). */
function domainRows(
  topology: Topology,
  serverIds: ReadonlyMap<string, number>,
): {domains: [string, number | null][]; pins: [string, number][]} {
  const domains: [string, number | null][] = []
  const pins: [string, number][] = []
  for (const policy of topology.domains) {
    domains.push([policy.domain, policy.copies ?? null])
    for (const name of policy.servers ?? []) {
      const id = serverIds.get(name)
      if (id === undefined) throw new MailringError(`Unknown server ${name} pinned by ${policy.domain}.`)
      pins.push([policy.domain, id])
    }
  }
  return {domains, pins}
}

/** The topology the rows hold: servers, domains and pinned servers sorted by name. */
function topologyOfRows(rows: {
  meta: ReadonlyMap<string, string>
  servers: readonly ServerRow[]
  /** mailring_domains as [domain, copies]. */
  domains: readonly (readonly [string, number | null])[]
  /** mailring_domain_servers as [domain, server name]. */
  pins: readonly (readonly [string, string])[]
}): Topology {
  const servers = [...rows.servers]
    .sort((a, b) => compareNames(a.name, b.name))
    .map((row) => ({
      name: row.name,
      address: row.address,
      ...(row.zone === null ? {} : {zone: row.zone}),
      weight: row.weight,
      state: row.state,
    }))
  const domains = [...rows.domains]
    .sort((a, b) => compareNames(a[0], b[0]))
    .map(([domain, copies]) => {
      const pinned = rows.pins.filter((pin) => pin[0] === domain).map((pin) => pin[1])
      return {
        domain,
        ...(pinned.length > 0 ? {servers: pinned.sort(compareNames)} : {}),
        ...(copies === null ? {} : {copies}),
      }
    })
  return {
    algorithm: Number(rows.meta.get('algorithm') ?? PLACEMENT_ALGORITHM_VERSION),
    copies: Number(rows.meta.get('copies') ?? DEFAULT_COPIES),
    servers,
    domains,
  }
}

/** Usage of every server, sorted by name: `counts` by server id, where a server missing holds nothing. */
function usageOfServers(
  servers: readonly ServerRow[],
  counts: ReadonlyMap<number, {copies: number; primaries: number}>,
): ServerUsage[] {
  return servers
    .map((row) => ({server: row.name, copies: 0, primaries: 0, ...counts.get(row.id)}))
    .sort((a, b) => compareNames(a.server, b.server))
}

export const sqliteTopology = {
  read(db: SqliteDb): Topology {
    const meta = sqliteMeta.map(db)
    const servers = sqliteServers.rows(db)
    const pins = db.prepare(PINS_SQL).raw().all() as [string, string][]
    const domains = db.prepare(DOMAINS_SQL).raw().all() as [string, number | null][]
    return topologyOfRows({meta, servers, domains, pins})
  },
  write(db: SqliteDb, topology: Topology): void {
    const changes = serverChanges(sqliteServers.rows(db), topology)
    for (const sql of CLEAR_DOMAINS_SQL) db.prepare(sql).run()
    const holdsCopies = db.prepare(SERVER_HOLDS_COPIES_SQL).pluck()
    const deleteServer = db.prepare(DELETE_SERVER_SQL)
    const moving = db.prepare(OPEN_MOVES_OF_SERVER_SQL).pluck()
    const deleteMoves = db.prepare(DELETE_MOVES_OF_SERVER_SQL)
    for (const row of changes.removed) {
      if (holdsCopies.get(row.id) !== undefined) throw serverNotEmpty(row.name)
      if (moving.get(row.id, row.id) !== undefined) throw serverHasOpenMoves(row.name)
      deleteMoves.run(row.id, row.id)
      deleteServer.run(row.id)
    }
    const update = db.prepare(UPDATE_SERVER_SQL)
    for (const values of changes.updated) update.run(...values)
    const insert = db.prepare(INSERT_SERVER_SQL)
    for (const values of changes.inserted) {
      if (sqliteHosts.exists(db, values[4])) throw serverNameTaken(values[4])
      insert.run(...values)
    }
    const {domains, pins} = domainRows(topology, sqliteServers.ids(db))
    const insertDomain = db.prepare(INSERT_DOMAIN_SQL)
    for (const row of domains) insertDomain.run(...row)
    const insertPin = db.prepare(INSERT_PIN_SQL)
    for (const row of pins) insertPin.run(...row)
    sqliteMeta.set(db, 'copies', String(topology.copies))
  },
  usage(db: SqliteDb): ServerUsage[] {
    const counts = new Map<number, {copies: number; primaries: number}>()
    const rows = db
      .prepare('SELECT server_id, count(*), sum(position = 0) FROM mailring_copies GROUP BY server_id')
      .raw()
      .all() as [number, number, number][]
    for (const [id, copies, primaries] of rows) counts.set(id, {copies, primaries})
    return usageOfServers(sqliteServers.rows(db), counts)
  },
}

export const mysqlTopology = {
  async read(conn: MysqlConn): Promise<Topology> {
    const meta = await mysqlMeta.map(conn)
    const servers = await mysqlServers.rows(conn)
    const [pins] = await conn.query<Row[]>(PINS_SQL)
    const [domains] = await conn.query<Row[]>(DOMAINS_SQL)
    return topologyOfRows({
      meta,
      servers,
      domains: domains.map((row) => [String(row.domain), row.copies === null ? null : Number(row.copies)]),
      pins: pins.map((row) => [String(row.domain), String(row.name)]),
    })
  },
  /** The server rows are locked first (FOR UPDATE): two writers of the topology take turns. */
  async write(conn: MysqlConn, topology: Topology): Promise<void> {
    const changes = serverChanges(await mysqlServers.rows(conn, true), topology)
    for (const sql of CLEAR_DOMAINS_SQL) await conn.query(sql)
    for (const row of changes.removed) {
      const [holds] = await conn.query<Row[]>(SERVER_HOLDS_COPIES_SQL, [row.id])
      if (holds.length > 0) throw serverNotEmpty(row.name)
      const [moving] = await conn.query<Row[]>(OPEN_MOVES_OF_SERVER_SQL, [row.id, row.id])
      if (moving.length > 0) throw serverHasOpenMoves(row.name)
      await conn.query(DELETE_MOVES_OF_SERVER_SQL, [row.id, row.id])
      await conn.query(DELETE_SERVER_SQL, [row.id])
    }
    for (const values of changes.updated) await conn.query(UPDATE_SERVER_SQL, values)
    for (const values of changes.inserted) {
      if (await mysqlHosts.exists(conn, values[4])) throw serverNameTaken(values[4])
      await conn.query(INSERT_SERVER_SQL, values)
    }
    const {domains, pins} = domainRows(topology, await mysqlServers.ids(conn))
    for (const row of domains) await conn.query(INSERT_DOMAIN_SQL, row)
    for (const row of pins) await conn.query(INSERT_PIN_SQL, row)
    await mysqlMeta.set(conn, 'copies', String(topology.copies))
  },
  async usage(conn: MysqlConn): Promise<ServerUsage[]> {
    const [rows] = await conn.query<Row[]>(
      'SELECT server_id, COUNT(*) AS copies, CAST(SUM(position = 0) AS SIGNED) AS primaries FROM mailring_copies GROUP BY server_id',
    )
    const counts = new Map(
      rows.map((row) => [
        Number(row.server_id),
        {copies: Number(row.copies), primaries: Number(row.primaries)},
      ]),
    )
    return usageOfServers(await mysqlServers.rows(conn), counts)
  },
}
