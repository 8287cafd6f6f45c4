/** Synthetic clusters and users: what the simulation places when the operator gives sizes, not names. */
import {MailringError} from '../errors.js'
import {userHash} from '../hash.js'
import {compareNames} from '../placement.js'
import {PLACEMENT_ALGORITHM_VERSION, type Topology} from '../topology.js'
import {MAX_COPIES} from '../validate.js'

export const SIM_DOMAIN = 'sim.example'
export const DEFAULT_SIM_USERS = 100_000
export const MAX_SIM_USERS = 10_000_000
export const MAX_SIM_SERVERS = 10_000
/** As many copies as a topology file allows. */
export {MAX_COPIES as MAX_SIM_COPIES} from '../validate.js'

export interface SyntheticClusterOptions {
  servers: number
  /** Failure zones; servers are dealt to them in turn (s01 to z1, s02 to z2, ...). None when absent. */
  zones?: number
  replicas: number
}

/** Servers s01..sNN of weight 1, optionally dealt round-robin to zones z1..zZ. */
export function syntheticTopology(options: SyntheticClusterOptions): Topology {
  const {servers, zones, replicas} = options
  checkWholeNumber(servers, 'The number of servers', 1, MAX_SIM_SERVERS)
  checkWholeNumber(replicas, 'The number of copies', 1, Math.min(MAX_COPIES, servers))
  if (zones !== undefined) checkWholeNumber(zones, 'The number of zones', 1, servers)
  const width = String(servers).length
  const zoneWidth = String(zones ?? 1).length
  return {
    algorithm: PLACEMENT_ALGORITHM_VERSION,
    copies: replicas,
    servers: Array.from({length: servers}, (_, i) => ({
      name: `s${String(i + 1).padStart(Math.max(2, width), '0')}`,
      address: '',
      weight: 1,
      state: 'active' as const,
      ...(zones ? {zone: `z${String((i % zones) + 1).padStart(zoneWidth, '0')}`} : {}),
    })),
    domains: [],
  }
}

/** The domains synthetic users are spread over: sim.example, then every domain with a policy. */
export function simulationDomains(topology: Topology): string[] {
  const policy = topology.domains.map((d) => d.domain).sort(compareNames)
  return [SIM_DOMAIN, ...policy.filter((domain) => domain !== SIM_DOMAIN)]
}

/** Users by their placement hash and domain; addresses are not kept (a million strings cost memory). */
export interface UserSet {
  count: number
  domains: string[]
  hashes: Uint32Array
  /** Index into `domains`, per user. */
  domainIndex: Uint32Array
}

/** user1@D1, user2@D2, ...: users dealt to the domains in turn. */
export function syntheticUsers(count: number, domains: readonly string[]): UserSet {
  const hashes = new Uint32Array(count)
  const domainIndex = new Uint32Array(count)
  for (let i = 0; i < count; i++) {
    const d = i % domains.length
    domainIndex[i] = d
    hashes[i] = userHash(`user${i + 1}@${domains[d]!}`)
  }
  return {count, domains: [...domains], hashes, domainIndex}
}

/** A user set from canonical addresses (user@domain, lower case). */
export function userSetOf(addresses: readonly string[]): UserSet {
  const domains: string[] = []
  const index = new Map<string, number>()
  const domainIndex = new Uint32Array(addresses.length)
  const hashes = new Uint32Array(addresses.length)
  addresses.forEach((address, i) => {
    const domain = address.slice(address.lastIndexOf('@') + 1)
    let d = index.get(domain)
    if (d === undefined) {
      d = domains.length
      domains.push(domain)
      index.set(domain, d)
    }
    domainIndex[i] = d
    hashes[i] = userHash(address)
  })
  return {count: addresses.length, domains, hashes, domainIndex}
}

/** Sizes and seeds are whole numbers in range; the command checks its flags first, in their own words. */
export function checkWholeNumber(value: number, what: string, min: number, max: number): void {
  if (!Number.isInteger(value) || value < min || value > max)
    throw new MailringError(`${what} must be a whole number from ${min} to ${max} (got ${value}).`)
}
