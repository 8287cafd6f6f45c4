import {domainOf, normalizeDomain, normalizeUser} from '../../core/address.js'
import {ExitCode, MailringError} from '../../core/errors.js'
import {Placement} from '../../core/placement.js'
import {PlanBuilder, type PlanMove} from '../../core/plan.js'
import type {DomainPolicy, Server, Topology} from '../../core/topology.js'
import {serverView, type ServerView} from '../../core/server-view.js'
import type {Store, UserBatch} from '../../store/store.js'
import {checkAlgorithm, checkedTopology, placementTopology} from './topology-check.js'

/**
 * Node, domain and user operations. Each reads the topology, applies one change, validates the whole
 * result as a topology file would be, and writes it in one transaction. Callers hold the cluster lock.
 */

export type ServerChanges = Partial<Omit<Server, 'name'>>

function findServer(topology: Topology, name: string): Server {
  const server = topology.servers.find((s) => s.name === name)
  if (!server) {
    const known = topology.servers.map((s) => s.name).join(', ') || 'none yet'
    throw new MailringError(`Unknown server ${name} (servers: ${known}).`, {code: 'unknown_server'})
  }
  return server
}

async function changeTopology(store: Store, change: (topology: Topology) => Topology): Promise<Topology> {
  const current = await store.readTopology()
  checkAlgorithm(await store.meta(), current)
  const empty = (await store.countUsers()) === 0
  const next = checkedTopology(change(current), {allowTooFewServers: empty})
  await store.writeTopology(next)
  return next
}

export async function addServer(store: Store, server: Server): Promise<Topology> {
  return changeTopology(store, (topology) => {
    if (topology.servers.some((s) => s.name.toLowerCase() === server.name.toLowerCase())) {
      throw new MailringError(`Server ${server.name} exists already: change it with \`mailring node set\`.`, {
        code: 'duplicate_server',
      })
    }
    const sameAddress = topology.servers.find(
      (s) => server.address !== '' && s.address.toLowerCase() === server.address.toLowerCase(),
    )
    if (sameAddress) {
      throw new MailringError(`Address ${server.address} belongs to server ${sameAddress.name} already.`, {
        code: 'duplicate_server',
      })
    }
    return {...topology, servers: [...topology.servers, server]}
  })
}

export async function setServer(store: Store, name: string, changes: ServerChanges): Promise<Server> {
  const topology = await changeTopology(store, (current) => {
    findServer(current, name)
    return {
      ...current,
      servers: current.servers.map((s) => {
        if (s.name !== name) return s
        const changed = {...s, ...changes}
        if (changes.zone === '') delete changed.zone
        return changed
      }),
    }
  })
  return findServer(topology, name)
}

export interface RemoveServerResult {
  server: string
  /** True when the record is gone; false when it still holds copies and is draining now. */
  removed: boolean
  copiesLeft: number
}

/** Deletes an empty server; one that still holds copies is set draining so that a rebalance empties it. */
export async function removeServer(store: Store, name: string): Promise<RemoveServerResult> {
  const topology = await store.readTopology()
  findServer(topology, name)
  const pinnedBy = topology.domains.filter((policy) => policy.servers?.includes(name)).map((p) => p.domain)
  if (pinnedBy.length > 0) {
    throw new MailringError(
      `Server ${name} is pinned by ${pinnedBy.join(', ')}: change the pin first (mailring domain pin/unpin).`,
      {code: 'server_pinned'},
    )
  }
  const usage = (await store.serverUsage()).find((u) => u.server === name)
  const copiesLeft = usage?.copies ?? 0
  if (copiesLeft > 0) {
    await setServer(store, name, {state: 'draining'})
    return {server: name, removed: false, copiesLeft}
  }
  await changeTopology(store, (current) => ({
    ...current,
    servers: current.servers.filter((s) => s.name !== name),
  }))
  return {server: name, removed: true, copiesLeft: 0}
}

function changePolicy(
  topology: Topology,
  domain: string,
  change: (policy: DomainPolicy) => DomainPolicy,
): Topology {
  const existing = topology.domains.find((p) => p.domain === domain) ?? {domain}
  const changed = change({...existing})
  const others = topology.domains.filter((p) => p.domain !== domain)
  // A policy that sets nothing is no policy: the domain follows the defaults.
  const keep = changed.servers !== undefined || changed.copies !== undefined
  return {...topology, domains: keep ? [...others, changed] : others}
}

export async function pinDomain(
  store: Store,
  domainInput: string,
  servers: string[],
): Promise<DomainPolicy | undefined> {
  const domain = normalizeDomain(domainInput)
  const topology = await changeTopology(store, (current) => {
    for (const name of servers) findServer(current, name)
    if (new Set(servers).size !== servers.length) {
      throw new MailringError('A server is listed twice in the pin.', {code: 'invalid_input'})
    }
    return changePolicy(current, domain, (policy) => ({...policy, servers: [...servers]}))
  })
  return topology.domains.find((p) => p.domain === domain)
}

export async function unpinDomain(store: Store, domainInput: string): Promise<DomainPolicy | undefined> {
  const domain = normalizeDomain(domainInput)
  const topology = await changeTopology(store, (current) => {
    if (!current.domains.some((p) => p.domain === domain && p.servers)) {
      throw new MailringError(`Domain ${domain} is not pinned.`, {code: 'not_pinned'})
    }
    return changePolicy(current, domain, (policy) => {
      delete policy.servers
      return policy
    })
  })
  return topology.domains.find((p) => p.domain === domain)
}

/** Sets a domain's copy count; `undefined` returns it to the cluster's default. */
export async function setDomainCopies(
  store: Store,
  domainInput: string,
  copies: number | undefined,
): Promise<DomainPolicy | undefined> {
  const domain = normalizeDomain(domainInput)
  const topology = await changeTopology(store, (current) =>
    changePolicy(current, domain, (policy) => {
      if (copies === undefined) delete policy.copies
      else policy.copies = copies
      return policy
    }),
  )
  return topology.domains.find((p) => p.domain === domain)
}

/** Users placed by `placement` as a store batch: current = target, since a new user has no mail yet. */
export function placedBatch(placement: Placement, users: string[]): UserBatch {
  const copyStart = new Int32Array(users.length + 1)
  const out = new Int32Array(64)
  const copyServers: number[] = []
  users.forEach((user, i) => {
    copyStart[i] = copyServers.length
    const count = placement.placeInto(user, out)
    for (let k = 0; k < count; k++) copyServers.push(out[k]!)
  })
  copyStart[users.length] = copyServers.length
  return {
    users,
    domains: users.map(domainOf),
    copyStart,
    copyServers: Int32Array.from(copyServers),
    servers: placement.servers.map((s) => s.name),
  }
}

export interface AddedUser {
  user: string
  copies: string[]
}

/** Adds users (all or none), each placed at once on its target servers. */
export async function addUsers(store: Store, inputs: string[]): Promise<AddedUser[]> {
  const users = inputs.map(normalizeUser)
  const seen = new Set<string>()
  for (const user of users) {
    if (seen.has(user)) throw new MailringError(`${user} is given twice.`, {code: 'duplicate_user'})
    seen.add(user)
  }
  const topology = await placementTopology(store)
  checkAlgorithm(await store.meta(), topology)
  const placement = new Placement(topology)
  const batch = placedBatch(placement, users)
  const result = await store.insertUsers([batch], {skipExisting: false})
  if (result.existing.length > 0) {
    const names = result.existing.map(([, i]) => users[i]!)
    throw new MailringError(
      `${names.join(', ')} ${names.length === 1 ? 'exists' : 'exist'} already; nothing added.`,
      {
        code: 'duplicate_user',
      },
    )
  }
  return users.map((user) => ({user, copies: placement.serversFor(user)}))
}

/** Removes users (all or none): every one must exist. */
export async function removeUsers(store: Store, inputs: string[]): Promise<string[]> {
  const users = [...new Set(inputs.map(normalizeUser))]
  const missing: string[] = []
  for (const user of users) if (!(await store.getUser(user))) missing.push(user)
  if (missing.length > 0) {
    throw new MailringError(
      `Unknown user${missing.length === 1 ? '' : 's'}: ${missing.join(', ')}; nothing removed.`,
      {
        code: 'unknown_user',
      },
    )
  }
  return store.removeUsers(users)
}

export interface UserDetails {
  user: string
  domain: string
  /** Where the ring puts the copies, primary first. */
  target: string[]
  /** Where the copies are now, primary first. */
  current: string[]
  pendingMoves: PlanMove[]
}

export async function showUser(store: Store, input: string): Promise<UserDetails> {
  const user = normalizeUser(input)
  const record = await store.getUser(user)
  if (!record)
    throw new MailringError(`Unknown user ${user}.`, {code: 'unknown_user', exitCode: ExitCode.error})
  const topology = await placementTopology(store)
  const meta = await store.meta()
  const placement = new Placement(topology)
  const names = [...new Set([...topology.servers.map((s) => s.name), ...record.copies])]
  const builder = new PlanBuilder(names, placement, {
    clusterId: meta.clusterId,
    algorithm: meta.algorithm,
    current: topology,
    target: topology,
  })
  builder.add({
    users: [user],
    copyStart: Int32Array.of(0, record.copies.length),
    copyServers: Int32Array.from(record.copies, (name) => names.indexOf(name)),
  })
  const plan = builder.finish()
  return {
    user,
    domain: record.domain,
    target: placement.serversFor(user),
    current: record.copies,
    pendingMoves: [...plan.moves],
  }
}

/** A server with the copies it holds now, and how many of them are primaries. */
export interface ServerListing extends ServerView {
  copies: number
  primaries: number
}

/** Every server of the topology, in its order, with its copies now (`mailring node list`). */
export async function listServers(store: Store): Promise<ServerListing[]> {
  const topology = await store.readTopology()
  const usage = new Map((await store.serverUsage()).map((u) => [u.server, u]))
  return topology.servers.map((server) => ({
    ...serverView(server),
    copies: usage.get(server.name)?.copies ?? 0,
    primaries: usage.get(server.name)?.primaries ?? 0,
  }))
}
