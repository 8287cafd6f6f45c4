import {MailringError} from '../core/errors.js'
import {compareNames} from '../core/placement.js'
import {
  DEFAULT_COPIES,
  PLACEMENT_ALGORITHM_VERSION,
  type ServerState,
  type Topology,
} from '../core/topology.js'
import type {ServerUsage} from './store.js'

/*
 * The topology as rows of mailring_servers, mailring_domains and mailring_domain_servers, and back: what
 * writeTopology, readTopology and serverUsage compute alike in every store. The stores keep the SQL, the
 * locking and the transaction around it.
 */

/** A row of mailring_servers. */
export interface ServerRow {
  id: number
  name: string
  address: string
  zone: string | null
  weight: number
  state: ServerState
}

/**
 * A server's columns in the order both statements of the stores take them:
 * `UPDATE mailring_servers SET address = ?, zone = ?, weight = ?, state = ? WHERE name = ?` and
 * `INSERT INTO mailring_servers (address, zone, weight, state, name) VALUES (?, ?, ?, ?, ?)`.
 */
export type ServerValues = [
  address: string,
  zone: string | null,
  weight: number,
  state: ServerState,
  name: string,
]

/** What writing a topology changes in mailring_servers. */
export interface ServerChanges {
  /** Servers the topology no longer has: deleted once the store has checked that they hold no copies. */
  removed: ServerRow[]
  /** Servers that exist, matched by name (their ids, and so their copies, stay). */
  updated: ServerValues[]
  /** New servers, in the topology's order (the order their ids are given in). */
  inserted: ServerValues[]
}

export function serverChanges(existing: readonly ServerRow[], topology: Topology): ServerChanges {
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
export function serverNotEmpty(name: string): MailringError {
  return new MailringError(
    `Server ${name} still holds copies: it cannot be deleted until a rebalance has moved them away.`,
    {code: 'server_not_empty'},
  )
}

export function serverIdsByName(rows: readonly ServerRow[]): Map<string, number> {
  return new Map(rows.map((row) => [row.name, row.id]))
}

/** The domain policies as rows: mailring_domains (domain, copies) and mailring_domain_servers (domain, server_id). */
export function domainRows(
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
export function topologyOfRows(rows: {
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
export function usageOfServers(
  servers: readonly ServerRow[],
  counts: ReadonlyMap<number, {copies: number; primaries: number}>,
): ServerUsage[] {
  return servers
    .map((row) => ({server: row.name, copies: 0, primaries: 0, ...counts.get(row.id)}))
    .sort((a, b) => compareNames(a.server, b.server))
}
