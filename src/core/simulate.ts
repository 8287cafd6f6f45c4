/**
 * Failure simulation: what happens to users when servers fail, for mailring's placement (the "ring":
 * weighted rendezvous hashing, every copy independent) and for a classic layout of mirrored pairs on the
 * same servers. Pure computation, no I/O; `simulate` is the whole command in one call.
 *
 * Conventions used throughout:
 * - Servers are indices into Placement.servers (sorted by name). Servers that hold copies are the
 *   non-draining ones; draining servers get nothing in the placement and take no part.
 * - Servers whose state is `down` have already failed: every figure is "down servers plus K more".
 *   Random failures are drawn from the live servers (holding copies and not down).
 * - A user is offline when none of its copies is on a live, non-failed server. Its load (logins and
 *   deliveries) goes to the first copy in order (primary first) that is live.
 */
import {
  allFailProbability,
  binomial,
  forEachCombination,
  forEachSubsetKey,
  numericKeyFits,
  sampleWithoutReplacement,
  seededGenerator,
  tupleKey,
  uniformBelow,
  type TupleKey,
} from './combinatorics.js'
import {negLog2Unit} from './detmath.js'
import {MailringError} from './errors.js'
import {pairScore, serverSeed, userHash} from './hash.js'
import {compareNames, Placement, type Pool} from './placement.js'
import {
  effectiveZone,
  isPlacementTarget,
  PLACEMENT_ALGORITHM_VERSION,
  type Server,
  type Topology,
} from './topology.js'
import {availabilityIssues} from './validate.js'

export const SIM_DOMAIN = 'sim.example'
export const DEFAULT_SIM_USERS = 100_000
export const DEFAULT_SIM_SEED = 1
export const MAX_SIM_USERS = 10_000_000
export const MAX_SIM_SERVERS = 10_000
const MAX_COPIES = 16
/** Worst failure sets are found by enumeration up to this many sets (and WORK_BUDGET), else by search. */
export const MAX_EXACT_SETS = 2_000_000
/** Rough count of elementary steps one enumeration may take (about a second). */
const WORK_BUDGET = 300_000_000
/** Random failure sets tried at most when capacity is estimated by sampling. */
const MAX_SAMPLES = 50_000

// ---------------------------------------------------------------------------------------------------
// Synthetic clusters and users

export interface SyntheticClusterOptions {
  servers: number
  /** Failure zones; servers are dealt to them in turn (s01 to z1, s02 to z2, ...). None when absent. */
  zones?: number
  replicas: number
}

/** Servers s01..sNN of weight 1, optionally dealt round-robin to zones z1..zZ. */
export function syntheticTopology(options: SyntheticClusterOptions): Topology {
  const {servers, zones, replicas} = options
  wholeNumber(servers, '--servers', 1, MAX_SIM_SERVERS)
  wholeNumber(replicas, '--replicas', 1, MAX_COPIES)
  if (zones !== undefined) {
    wholeNumber(zones, '--zones', 1, MAX_SIM_SERVERS)
    if (zones > servers)
      throw new MailringError(
        `--zones ${zones} is more than --servers ${servers}: every zone needs a server.`,
      )
  }
  if (replicas > servers)
    throw new MailringError(
      `--replicas ${replicas} is more than --servers ${servers}: each copy needs its own server.`,
    )
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

// ---------------------------------------------------------------------------------------------------
// Layouts: each user's servers, primary first

export interface Layout {
  /** Size of the server index space (Placement.servers.length). */
  serverCount: number
  users: number
  /** Slots per user in `copies`. */
  stride: number
  /** copies[u * stride + c]: server index of user u's c-th copy (c = 0 is the primary). */
  copies: Int32Array
  /** Number of copies of each user. */
  sizes: Uint8Array
}

/** A layout from explicit copy lists (primary first); for tests and small what-ifs. */
export function layoutOf(serverCount: number, lists: readonly (readonly number[])[]): Layout {
  const stride = Math.max(1, ...lists.map((list) => list.length))
  const copies = new Int32Array(lists.length * stride)
  const sizes = new Uint8Array(lists.length)
  lists.forEach((list, u) => {
    sizes[u] = list.length
    list.forEach((server, c) => (copies[u * stride + c] = server))
  })
  return {serverCount, users: lists.length, stride, copies, sizes}
}

/** mailring's placement of every user. */
export function ringLayout(placement: Placement, users: UserSet): Layout {
  const pools = users.domains.map((domain) => placement.poolFor(domain))
  const stride = Math.max(1, ...pools.map((pool) => pool.copies))
  const copies = new Int32Array(users.count * stride)
  const sizes = new Uint8Array(users.count)
  const scratch = new Int32Array(stride)
  for (let u = 0; u < users.count; u++) {
    const count = pools[users.domainIndex[u]!]!.placeHash(users.hashes[u]!, scratch)
    sizes[u] = count
    const offset = u * stride
    for (let c = 0; c < count; c++) copies[offset + c] = scratch[c]!
  }
  return {serverCount: placement.servers.length, users: users.count, stride, copies, sizes}
}

/**
 * The mirrored groups of a pair layout: `members` sorted by zone, then name, and dealt in turn to
 * floor(n / size) groups, so that a zone with no more servers than there are groups never has two servers
 * in one group (and larger zones are spread as evenly as they can be). When n is not a multiple of `size`,
 * the n mod size servers left over join the first groups (see pairLayout for how users use them).
 * Each group is returned sorted by index (= by name).
 */
export function pairGroups(servers: readonly Server[], members: ArrayLike<number>, size: number): number[][] {
  const sorted = Array.from(members).sort(
    (a, b) =>
      compareNames(effectiveZone(servers[a]!), effectiveZone(servers[b]!)) ||
      compareNames(servers[a]!.name, servers[b]!.name),
  )
  const count = Math.max(1, Math.floor(sorted.length / size))
  const groups = Array.from({length: count}, () => [] as number[])
  sorted.forEach((server, i) => groups[i % count]!.push(server))
  return groups.map((group) => group.sort((a, b) => a - b))
}

export interface PairPool {
  /** Domains placed in this pool. */
  domains: string[]
  copies: number
  groups: number[][]
}

/** Weighted rendezvous choice among candidates: equal weights compare raw scores, else arrivals. */
class Rendezvous {
  private readonly seeds: Int32Array
  private readonly inverseWeights: Float64Array
  private readonly uniform: boolean
  private readonly keys: Float64Array

  constructor(seeds: readonly number[], weights: readonly number[]) {
    this.seeds = Int32Array.from(seeds)
    this.inverseWeights = Float64Array.from(weights, (weight) => 1 / weight)
    this.uniform = weights.every((weight) => weight === weights[0])
    this.keys = new Float64Array(seeds.length)
  }

  private key(hash: number, i: number): number {
    const score = pairScore(hash, this.seeds[i]!)
    return this.uniform ? -score : negLog2Unit(score) * this.inverseWeights[i]!
  }

  first(hash: number): number {
    let best = 0
    let bestKey = this.key(hash, 0)
    for (let i = 1; i < this.seeds.length; i++) {
      const key = this.key(hash, i)
      if (key < bestKey) {
        best = i
        bestKey = key
      }
    }
    return best
  }

  /** All candidates in order, earliest first, into `out`. */
  order(hash: number, out: Int32Array): void {
    const keys = this.keys
    for (let i = 0; i < this.seeds.length; i++) {
      keys[i] = this.key(hash, i)
      let position = i
      while (position > 0 && keys[out[position - 1]!]! > keys[i]!) {
        out[position] = out[position - 1]!
        position--
      }
      out[position] = i
    }
  }
}

/**
 * The classic layout on the same servers: each pool's servers in mirrored groups (pairGroups, groups of
 * the pool's copy count R). A user goes to one group by weighted rendezvous hashing over the groups (a
 * group's weight is the sum of its members'); the members are ordered for the user by weighted rendezvous
 * hashing too (so primaries alternate) and the user's R copies are the first R. In a group of exactly R
 * servers every member mirrors every user; a group that took a left-over server (R + 1 members) spreads
 * its users' R copies over its members, so every user has R copies in both layouts.
 */
export function pairLayout(placement: Placement, users: UserSet): {layout: Layout; pools: PairPool[]} {
  const servers = placement.servers
  const byPool = new Map<Pool, PairPool>()
  const domainPool = users.domains.map((domain) => {
    const pool = placement.poolFor(domain)
    let pairs = byPool.get(pool)
    if (!pairs) {
      pairs = {domains: [], copies: pool.copies, groups: pairGroups(servers, pool.members, pool.copies)}
      byPool.set(pool, pairs)
    }
    pairs.domains.push(domain)
    return pairs
  })
  const choosers = new Map<PairPool, {groups: Rendezvous; members: Rendezvous[]}>()
  for (const pairs of byPool.values()) {
    choosers.set(pairs, {
      groups: new Rendezvous(
        pairs.groups.map((_, g) => serverSeed(`pair-group-${g}`)),
        pairs.groups.map((group) => group.reduce((sum, s) => sum + servers[s]!.weight, 0)),
      ),
      members: pairs.groups.map(
        (group) =>
          new Rendezvous(
            group.map((s) => serverSeed(servers[s]!.name)),
            group.map((s) => servers[s]!.weight),
          ),
      ),
    })
  }
  const pools = [...byPool.values()]
  const stride = Math.max(1, ...pools.map((pairs) => pairs.copies))
  const copies = new Int32Array(users.count * stride)
  const sizes = new Uint8Array(users.count)
  const order = new Int32Array(Math.max(1, ...pools.flatMap((pairs) => pairs.groups.map((g) => g.length))))
  const domainChooser = domainPool.map((pairs) => [pairs, choosers.get(pairs)!] as const)
  for (let u = 0; u < users.count; u++) {
    const [pairs, chooser] = domainChooser[users.domainIndex[u]!]!
    const hash = users.hashes[u]!
    const g = chooser.groups.first(hash)
    const group = pairs.groups[g]!
    chooser.members[g]!.order(hash, order)
    const count = Math.min(pairs.copies, group.length)
    sizes[u] = count
    const offset = u * stride
    for (let c = 0; c < count; c++) copies[offset + c] = group[order[c]!]!
  }
  return {
    layout: {serverCount: servers.length, users: users.count, stride, copies, sizes},
    pools,
  }
}

// ---------------------------------------------------------------------------------------------------
// The servers that can fail

export interface FailureBase {
  serverCount: number
  /** 1 for servers that have already failed (state down). */
  down: Uint8Array
  /** Servers that hold copies and are not down, increasing: the candidates for failure. */
  live: Int32Array
  /** Serving capacity relative to the mean (weight / mean weight of the servers holding copies). */
  capacity: Float64Array
  /** How many servers hold copies (down ones included). */
  holders: number
}

export function failureBase(servers: readonly Server[]): FailureBase {
  const holders = servers.map((server, i) => [server, i] as const).filter(([s]) => isPlacementTarget(s))
  const meanWeight = holders.reduce((sum, [s]) => sum + s.weight, 0) / Math.max(1, holders.length)
  const capacity = new Float64Array(servers.length)
  const down = new Uint8Array(servers.length)
  for (const [server, i] of holders) {
    capacity[i] = server.weight / meanWeight
    if (server.state === 'down') down[i] = 1
  }
  return {
    serverCount: servers.length,
    down,
    live: Int32Array.from(holders.filter(([s]) => s.state !== 'down').map(([, i]) => i)),
    capacity,
    holders: holders.length,
  }
}

/** Base for a layout built by hand: servers 0..n-1, all live, equal capacity unless given. */
export function uniformBase(
  serverCount: number,
  down: readonly number[] = [],
  weights?: number[],
): FailureBase {
  const servers: Server[] = Array.from({length: serverCount}, (_, i) => ({
    name: `s${String(i).padStart(6, '0')}`,
    address: '',
    weight: weights?.[i] ?? 1,
    state: down.includes(i) ? ('down' as const) : ('active' as const),
  }))
  return failureBase(servers)
}

function maskOf(serverCount: number, indices: ArrayLike<number>): Uint8Array {
  const mask = new Uint8Array(serverCount)
  for (let i = 0; i < indices.length; i++) mask[indices[i]!] = 1
  return mask
}

// ---------------------------------------------------------------------------------------------------
// One failure, user by user

export interface FailureOutcome {
  /** Users with no live copy after the failure (including those whose copies were all down before). */
  offline: number
  /** Load per server before the failure (down servers already failed): users whose first live copy it is. */
  before: Float64Array
  /** Load per server after the failure. */
  after: Float64Array
}

/** Where every user's load is before and after `failed` fail (a pass over all users). */
export function failureOutcome(layout: Layout, down: Uint8Array, failed: ArrayLike<number>): FailureOutcome {
  const failedMask = maskOf(layout.serverCount, failed)
  const before = new Float64Array(layout.serverCount)
  const after = new Float64Array(layout.serverCount)
  let offline = 0
  const {copies, sizes, stride} = layout
  for (let u = 0; u < layout.users; u++) {
    const offset = u * stride
    const size = sizes[u]!
    let first = -1
    let survivor = -1
    for (let c = 0; c < size; c++) {
      const s = copies[offset + c]!
      if (down[s]) continue
      if (first < 0) first = s
      if (!failedMask[s]) {
        survivor = s
        break
      }
    }
    if (first >= 0) before[first]! += 1
    if (survivor >= 0) after[survivor]! += 1
    else offline++
  }
  return {offline, before, after}
}

// ---------------------------------------------------------------------------------------------------
// Users with no live copy over all failure sets

/** Users by their number of live copies (index = count of copies on servers that are not down). */
export function liveCopyHistogram(layout: Layout, down: Uint8Array): Float64Array {
  const histogram = new Float64Array(layout.stride + 1)
  for (let u = 0; u < layout.users; u++) {
    let live = 0
    const offset = u * layout.stride
    for (let c = 0; c < layout.sizes[u]!; c++) if (!down[layout.copies[offset + c]!]) live++
    histogram[live]! += 1
  }
  return histogram
}

/**
 * Expected share of users with no live copy when k of `liveServers` servers fail, all k-sets equally
 * likely: per user with r live copies, C(n - r, k - r) / C(n, k), averaged. Exact (products of ratios).
 */
export function expectedOfflineShare(histogram: ArrayLike<number>, liveServers: number, k: number): number {
  let users = 0
  let expected = 0
  for (let r = 0; r < histogram.length; r++) {
    const count = histogram[r]!
    users += count
    if (count > 0) expected += count * allFailProbability(liveServers, k, r)
  }
  return users === 0 ? 0 : expected / users
}

/**
 * Counts of users by the set of their live copies, for the sets of at most k servers: a k-set of failures
 * takes offline exactly the users whose live set lies inside it (plus those with no live copy at all).
 */
export class OfflineIndex {
  /** Users whose copies are all on down servers. */
  readonly alwaysOffline: number
  readonly base: number
  private readonly bySize: Map<TupleKey, number>[]

  constructor(layout: Layout, down: Uint8Array, k: number) {
    this.base = layout.serverCount
    this.bySize = Array.from({length: k + 1}, () => new Map<TupleKey, number>())
    let alwaysOffline = 0
    const live = new Int32Array(layout.stride)
    for (let u = 0; u < layout.users; u++) {
      const offset = u * layout.stride
      let count = 0
      for (let c = 0; c < layout.sizes[u]!; c++) {
        const s = layout.copies[offset + c]!
        if (down[s]) continue
        let position = count++
        while (position > 0 && live[position - 1]! > s) {
          live[position] = live[position - 1]!
          position--
        }
        live[position] = s
      }
      if (count === 0) alwaysOffline++
      else if (count <= k) {
        const map = this.bySize[count]!
        const key = tupleKey(live, count, this.base)
        map.set(key, (map.get(key) ?? 0) + 1)
      }
    }
    this.alwaysOffline = alwaysOffline
  }

  /** Whether some set of at most k servers holds all live copies of a user. */
  get empty(): boolean {
    return this.bySize.every((map) => map.size === 0)
  }

  /** Users offline when the servers in `failed` (increasing indices) fail. */
  count(failed: ArrayLike<number>): number {
    let total = this.alwaysOffline
    for (let r = 1; r < this.bySize.length && r <= failed.length; r++) {
      const map = this.bySize[r]!
      if (map.size === 0) continue
      forEachSubsetKey(failed, r, this.base, (key) => (total += map.get(key) ?? 0))
    }
    return total
  }

  /** Lookups one count(k-set) makes. */
  lookups(k: number): number {
    let total = 0
    for (let r = 1; r < this.bySize.length; r++) if (this.bySize[r]!.size > 0) total += binomial(k, r)
    return total
  }

  /** The distinct live sets (size <= k) with their users, most users first. */
  entries(): {servers: number[]; users: number}[] {
    const list: {servers: number[]; users: number}[] = []
    this.bySize.forEach((map, size) => {
      for (const [key, users] of map) list.push({servers: decodeKey(key, size, this.base), users})
    })
    return list.sort((a, b) => b.users - a.users || compareIndexLists(a.servers, b.servers))
  }
}

/** The servers of a tupleKey, increasing. */
function decodeKey(key: TupleKey, size: number, base: number): number[] {
  if (typeof key === 'string') return key.split(',').map(Number)
  const servers = new Array<number>(size)
  let rest = key
  for (let i = size - 1; i >= 0; i--) {
    const digit = rest % base
    servers[i] = digit
    rest = (rest - digit) / base
  }
  return servers
}

function compareIndexLists(a: readonly number[], b: readonly number[]): number {
  for (let i = 0; i < Math.min(a.length, b.length); i++) if (a[i] !== b[i]) return a[i]! - b[i]!
  return a.length - b.length
}

export interface WorstSet {
  /** Server indices, increasing. */
  servers: number[]
  users: number
  method: 'exact' | 'heuristic'
  setsEvaluated: number
}

/**
 * The k-set of live servers whose failure leaves the most users without a live copy. Exact by enumeration
 * when there are at most `maxSets` sets (and the work fits); ties go to the first set in index order.
 * Otherwise a search: start from the most common live sets, fill up greedily, improve by swaps.
 */
export function worstOfflineSet(
  index: OfflineIndex,
  live: ArrayLike<number>,
  k: number,
  options: {maxSets?: number; budget?: number} = {},
): WorstSet {
  const candidates = Array.from(live)
  if (index.empty) {
    // Every k-set takes offline the same users (those already without a live copy).
    return {servers: candidates.slice(0, k), users: index.alwaysOffline, method: 'exact', setsEvaluated: 1}
  }
  const sets = binomial(candidates.length, k)
  const maxSets = options.maxSets ?? MAX_EXACT_SETS
  const budget = options.budget ?? WORK_BUDGET
  if (sets <= maxSets && sets * (index.lookups(k) + k) <= budget) {
    let best: number[] = []
    let bestUsers = -1
    forEachCombination(candidates, k, (set) => {
      const users = index.count(set)
      if (users > bestUsers) {
        bestUsers = users
        best = Array.from(set)
      }
    })
    return {servers: best, users: bestUsers, method: 'exact', setsEvaluated: sets}
  }
  return searchWorstSet((set) => index.count(set), index.lookups(k), index.entries(), candidates, k, budget)
}

function searchWorstSet(
  evaluate: (sortedSet: number[]) => number,
  lookups: number,
  entries: {servers: number[]; users: number}[],
  candidates: number[],
  k: number,
  budget: number,
): WorstSet {
  const degree = new Map<number, number>()
  for (const entry of entries)
    for (const s of entry.servers) degree.set(s, (degree.get(s) ?? 0) + entry.users)
  const maxEvaluations = Math.max(200, Math.floor(budget / 10 / Math.max(1, lookups)))
  let evaluations = 0
  const score = (set: number[]): number => {
    evaluations++
    return evaluate([...set].sort((a, b) => a - b))
  }
  let best = candidates.slice(0, k)
  let bestUsers = score(best)
  for (const start of entries.slice(0, 8)) {
    const set = [...start.servers]
    while (set.length < k) {
      let pick = -1
      let pickUsers = -1
      for (const v of candidates) {
        if (set.includes(v)) continue
        // Out of evaluations: take the server in the most users' live sets.
        const users = evaluations < maxEvaluations ? score([...set, v]) : 0
        if (users > pickUsers || (users === pickUsers && (degree.get(v) ?? 0) > (degree.get(pick) ?? 0))) {
          pick = v
          pickUsers = users
        }
      }
      set.push(pick)
    }
    let current = score(set)
    for (let round = 0; round < 50 && evaluations < maxEvaluations; round++) {
      let improved = false
      for (let i = 0; i < k && !improved; i++) {
        for (const v of candidates) {
          if (set.includes(v)) continue
          const trial = [...set]
          trial[i] = v
          const users = score(trial)
          if (users > current) {
            set[i] = v
            current = users
            improved = true
            break
          }
        }
      }
      if (!improved) break
    }
    if (current > bestUsers) {
      bestUsers = current
      best = [...set]
    }
    if (evaluations >= maxEvaluations) break
  }
  return {
    servers: best.sort((a, b) => a - b),
    users: bestUsers,
    method: 'heuristic',
    setsEvaluated: evaluations,
  }
}

// ---------------------------------------------------------------------------------------------------
// Load after many failure sets

interface TransferLevel {
  /** Key of a set Q of |Q| = size servers -> group number. */
  groups: Map<number, number>
  /** Group g spans entries starts[g] .. starts[g + 1] - 1. */
  starts: Int32Array
  targets: Int32Array
  counts: Float64Array
  size: number
}

/**
 * Where load goes for any failure set of up to k servers, without a pass over the users per set. For
 * j = 2..k+1: users whose first j-1 live copies form the set Q and whose j-th live copy is s. When the set
 * F fails, such a user's load lands on s exactly when Q lies inside F and s does not.
 */
export class TransferIndex {
  readonly before: Float64Array
  private readonly levels: TransferLevel[]
  private readonly base: number

  private constructor(before: Float64Array, levels: TransferLevel[], base: number) {
    this.before = before
    this.levels = levels
    this.base = base
  }

  /** undefined when the keys for k + 1 servers would not be exact doubles (huge clusters and k). */
  static build(layout: Layout, down: Uint8Array, k: number): TransferIndex | undefined {
    const n = layout.serverCount
    const maxLevel = Math.min(k + 1, layout.stride)
    if (!numericKeyFits(n, maxLevel)) return undefined
    const before = new Float64Array(n)
    const live = new Int32Array(layout.stride)
    const sorted = new Int32Array(layout.stride)
    for (let u = 0; u < layout.users; u++) {
      const offset = u * layout.stride
      for (let c = 0; c < layout.sizes[u]!; c++) {
        const s = layout.copies[offset + c]!
        if (!down[s]) {
          before[s]! += 1
          break
        }
      }
    }
    const levels: TransferLevel[] = []
    for (let j = 2; j <= maxLevel; j++) {
      // One pass per level keeps one array of codes in memory at a time.
      const codes = new Float64Array(layout.users)
      let fill = 0
      for (let u = 0; u < layout.users; u++) {
        const offset = u * layout.stride
        let count = 0
        for (let c = 0; c < layout.sizes[u]! && count < j; c++) {
          const s = layout.copies[offset + c]!
          if (!down[s]) live[count++] = s
        }
        if (count < j) continue
        for (let i = 0; i < j - 1; i++) {
          let position = i
          while (position > 0 && sorted[position - 1]! > live[i]!) {
            sorted[position] = sorted[position - 1]!
            position--
          }
          sorted[position] = live[i]!
        }
        let key = 0
        for (let i = 0; i < j - 1; i++) key = key * n + sorted[i]!
        codes[fill++] = key * n + live[j - 1]!
      }
      levels.push(groupCodes(codes.subarray(0, fill).sort(), n, j - 1))
    }
    return new TransferIndex(before, levels, n)
  }

  /**
   * Load per server after the servers in `failed` (increasing) fail, into `out`; failed servers get 0.
   * `failedMask` marks the same servers.
   */
  loadsAfter(failed: ArrayLike<number>, failedMask: Uint8Array, out: Float64Array): void {
    out.set(this.before)
    for (let i = 0; i < failed.length; i++) out[failed[i]!] = 0
    for (const level of this.levels) {
      if (level.size > failed.length) break
      forEachSubsetKey(failed, level.size, this.base, (key) => {
        const g = level.groups.get(key as number)
        if (g === undefined) return
        for (let e = level.starts[g]!; e < level.starts[g + 1]!; e++) {
          const target = level.targets[e]!
          if (!failedMask[target]) out[target]! += level.counts[e]!
        }
      })
    }
  }

  /** Rough steps loadsAfter takes for a set of k servers. */
  costPerSet(k: number): number {
    let cost = 2 * this.base
    for (const level of this.levels) {
      const groups = Math.max(1, level.groups.size)
      cost += binomial(k, level.size) * (1 + level.targets.length / groups)
    }
    return cost
  }
}

function groupCodes(codes: Float64Array, n: number, size: number): TransferLevel {
  const groups = new Map<number, number>()
  const starts: number[] = []
  const targets: number[] = []
  const counts: number[] = []
  let previousQ = -1
  for (let i = 0; i < codes.length;) {
    const code = codes[i]!
    let run = 1
    while (i + run < codes.length && codes[i + run] === code) run++
    const target = code % n // exact for integers below 2^53, unlike flooring code / n
    const q = (code - target) / n
    if (q !== previousQ) {
      groups.set(q, starts.length)
      starts.push(targets.length)
      previousQ = q
    }
    targets.push(target)
    counts.push(run)
    i += run
  }
  starts.push(targets.length)
  return {
    groups,
    starts: Int32Array.from(starts),
    targets: Int32Array.from(targets),
    counts: Float64Array.from(counts),
    size,
  }
}

// ---------------------------------------------------------------------------------------------------
// Capacity: how many users fit while tolerating failures

export interface CapacityOutcome {
  /**
   * The worst over the failure sets evaluated of max over survivors of load / relative capacity. The
   * cluster holds users × C / ratio users when one server of mean weight serves C. 0 when no load remains.
   */
  ratio: number
  /** The failure set that gave the ratio, and the survivor that limits it. */
  worstSet: number[]
  busiest: number
  method: 'exact' | 'sampled' | 'zones'
  setsEvaluated: number
}

/** Max over live survivors of load / relative capacity. */
function ratioOf(loads: Float64Array, failedMask: Uint8Array, base: FailureBase): number {
  let ratio = 0
  for (let i = 0; i < base.live.length; i++) {
    const s = base.live[i]!
    if (!failedMask[s]) ratio = Math.max(ratio, loads[s]! / base.capacity[s]!)
  }
  return ratio
}

class RatioTracker {
  ratio = 0
  worstSet: number[] = []
  busiest = -1
  evaluated = 0

  consider(set: ArrayLike<number>, loads: Float64Array, failedMask: Uint8Array, base: FailureBase): number {
    this.evaluated++
    let ratio = 0
    let busiest = -1
    for (let i = 0; i < base.live.length; i++) {
      const s = base.live[i]!
      if (failedMask[s]) continue
      const value = loads[s]! / base.capacity[s]!
      if (value > ratio) {
        ratio = value
        busiest = s
      }
    }
    if (ratio > this.ratio) {
      this.ratio = ratio
      this.worstSet = Array.from(set)
      this.busiest = busiest
    }
    return ratio
  }
}

/**
 * Capacity while tolerating any k failures among the live servers: every k-set when k = 1 or when the sets
 * are few enough, else the given candidate sets, a greedy set and a seeded random sample.
 */
export function capacityUnderFailures(
  layout: Layout,
  base: FailureBase,
  k: number,
  options: {seed?: number; candidates?: number[][]; maxSets?: number; budget?: number} = {},
): CapacityOutcome {
  const budget = options.budget ?? WORK_BUDGET
  const maxSets = options.maxSets ?? MAX_EXACT_SETS
  const live = base.live
  const index = TransferIndex.build(layout, base.down, k)
  const loads = new Float64Array(layout.serverCount)
  const mask = new Uint8Array(layout.serverCount)
  const tracker = new RatioTracker()
  /** The ratio for a failure set; only sets of exactly k servers count towards the outcome. */
  const evaluate = (set: ArrayLike<number>): number => {
    for (let i = 0; i < set.length; i++) mask[set[i]!] = 1
    let after: Float64Array = loads
    if (index) index.loadsAfter(set, mask, loads)
    else after = failureOutcome(layout, base.down, set).after
    const ratio = set.length === k ? tracker.consider(set, after, mask, base) : ratioOf(after, mask, base)
    for (let i = 0; i < set.length; i++) mask[set[i]!] = 0
    return ratio
  }
  const cost = index ? index.costPerSet(k) : layout.users * layout.stride + layout.serverCount
  const sets = binomial(live.length, k)
  if (k === 1 || (sets <= maxSets && sets * cost <= budget)) {
    forEachCombination(live, k, (set) => void evaluate(set))
    return {...outcomeOf(tracker), method: 'exact'}
  }
  const sortedSet = (set: readonly number[]): number[] => [...set].sort((a, b) => a - b)
  for (const candidate of options.candidates ?? []) if (candidate.length === k) evaluate(sortedSet(candidate))
  // Greedy: fail the server that makes the busiest survivor busiest, one at a time.
  if (k * live.length * cost <= budget / 2) {
    const set: number[] = []
    while (set.length < k) {
      let pick = -1
      let pickRatio = -1
      for (const v of live) {
        if (set.includes(v)) continue
        const ratio = evaluate(sortedSet([...set, v]))
        if (ratio > pickRatio) {
          pick = v
          pickRatio = ratio
        }
      }
      set.push(pick)
    }
  }
  const next = seededGenerator((options.seed ?? DEFAULT_SIM_SEED) ^ 0x5eed5eed)
  const samples = Math.min(MAX_SAMPLES, Math.max(500, Math.floor(budget / 4 / cost)))
  const pool = Int32Array.from(live)
  const set = new Int32Array(k)
  for (let i = 0; i < samples; i++) {
    // Partial Fisher-Yates on a pool kept from sample to sample: each draw is a uniform k-set.
    for (let j = 0; j < k; j++) {
      const pick = j + uniformBelow(next, pool.length - j)
      const swap = pool[j]!
      pool[j] = pool[pick]!
      pool[pick] = swap
      set[j] = pool[j]!
    }
    evaluate(set.sort())
  }
  return {...outcomeOf(tracker), method: 'sampled'}
}

/** Capacity while tolerating the loss of any one of `zones` (each a set of live servers). */
export function capacityUnderZoneFailures(
  layout: Layout,
  base: FailureBase,
  zones: readonly number[][],
): CapacityOutcome {
  const tracker = new RatioTracker()
  for (const zone of zones) {
    const mask = maskOf(layout.serverCount, zone)
    tracker.consider(zone, failureOutcome(layout, base.down, zone).after, mask, base)
  }
  return {...outcomeOf(tracker), method: 'zones'}
}

function outcomeOf(tracker: RatioTracker): Omit<CapacityOutcome, 'method'> {
  return {
    ratio: tracker.ratio,
    worstSet: [...tracker.worstSet].sort((a, b) => a - b),
    busiest: tracker.busiest,
    setsEvaluated: tracker.evaluated,
  }
}

// ---------------------------------------------------------------------------------------------------
// The whole simulation

export type FailureSpec =
  | {kind: 'random'; count: number; seed?: number}
  | {kind: 'servers'; names: string[]}
  | {kind: 'zone'; zone: string}

export interface SimulationInput {
  topology: Topology
  source?: 'synthetic' | 'topology'
  users?: number
  failure: FailureSpec
  /** Active users one server of mean weight can serve; capacity figures in users when given. */
  capacityPerServer?: number
  /** Seed for random failures and for sampling failure sets. */
  seed?: number
  perServer?: boolean
}

export interface ServerLoad {
  name: string
  zone: string | null
  /** active, down (failed before), failed (by this simulation) */
  state: 'active' | 'down' | 'failed'
  before: number
  after: number
  increase: number
}

export interface LayoutReport {
  offline: {
    /** Users with no live copy after the chosen failure. */
    chosen: {users: number; share: number}
    /** Expected share with no live copy over all k-sets of live servers, equally likely. */
    expected: number
    worst: {servers: string[]; users: number; share: number}
    worstMethod: 'exact' | 'heuristic'
    worstSetsEvaluated: number
  }
  load: {
    /** Over live servers before the failure. */
    before: {max: number; mean: number}
    /** Over the survivors. */
    after: {max: number; mean: number}
    /** after - before, over the survivors; `server` takes the largest. */
    increase: {max: number; mean: number; server: string | null}
    perServer: ServerLoad[] | null
  }
}

export interface CapacityFigures {
  /** Users the cluster holds (null without --capacity). */
  users: number | null
  /** Those users as a share of servers × capacity per server. */
  utilisation: number | null
  method: 'exact' | 'sampled' | 'zones'
  setsEvaluated: number
  /** The failure set that limits capacity, and its busiest survivor. */
  worstSet: string[]
  /** With --fail-zone: the zone whose loss limits capacity. */
  worstZone: string | null
  busiest: string | null
}

export interface SimulationResult {
  cluster: {
    source: 'synthetic' | 'topology'
    /** Servers holding copies (not draining), down ones included. */
    servers: number
    down: string[]
    draining: string[]
    zones: string[]
    copies: number
    users: number
    domains: string[]
  }
  failure: {
    mode: 'random' | 'servers' | 'zone'
    /** Servers failed on top of the down ones. */
    k: number
    seed: number | null
    zone: string | null
    servers: string[]
  }
  ring: LayoutReport
  pairs: LayoutReport & {pools: {domains: string[]; copies: number; groups: string[][]}[]}
  capacity: {
    perServer: number | null
    tolerates: string
    ring: CapacityFigures
    pairs: CapacityFigures
    /** ring users / pairs users. */
    ratio: number | null
  }
  notes: string[]
  warnings: string[]
}

/** Runs the whole simulation; throws MailringError (one line) on bad input. */
export function simulate(input: SimulationInput): SimulationResult {
  const userCount = input.users ?? DEFAULT_SIM_USERS
  wholeNumber(userCount, '--users', 1, MAX_SIM_USERS)
  if (input.capacityPerServer !== undefined) positiveNumber(input.capacityPerServer, '--capacity')
  const seed = input.seed ?? DEFAULT_SIM_SEED
  wholeNumber(seed, '--seed', 0, 0xffffffff)
  const problems = availabilityIssues(input.topology)
  if (problems.length > 0) throw new MailringError(`The topology cannot be placed: ${problems[0]!.message}.`)

  const placement = new Placement(input.topology)
  const servers = placement.servers
  const base = failureBase(servers)
  if (base.live.length === 0)
    throw new MailringError('Every server is down or draining: there is nothing left to fail.')
  const warnings = placement.warnings().map((w) => w.message)
  const notes: string[] = []
  const failed = resolveFailure(input.failure, servers, base, seed, warnings)
  const k = failed.length
  const failedNames = failed.map((i) => servers[i]!.name)

  const domains = simulationDomains(input.topology)
  if (domains.length > 1)
    notes.push(
      `Users are spread evenly over ${domains.length} domains: ${domains.join(', ')} (the default pool and each domain policy).`,
    )
  const downNames = servers.filter((s, i) => base.down[i]).map((s) => s.name)
  if (downNames.length > 0)
    notes.push(
      `${downNames.length} server(s) already down (${downNames.join(', ')}) count as failed in every figure; ${k} more fail${k === 1 ? 's' : ''}.`,
    )
  const users = syntheticUsers(userCount, domains)
  const ring = ringLayout(placement, users)
  const pairs = pairLayout(placement, users)

  const zones = zoneSets(servers, base)
  const tolerates = input.failure.kind === 'zone' ? 'any one zone' : `any ${k} server${k === 1 ? '' : 's'}`
  const analyse = (layout: Layout) => {
    const report = layoutReport(layout, base, servers, failed, userCount, input.perServer ?? false)
    const worstSet = report.worstIndices
    const capacity =
      input.failure.kind === 'zone'
        ? capacityUnderZoneFailures(layout, base, [...zones.values()])
        : capacityUnderFailures(layout, base, k, {seed, candidates: [failed, worstSet]})
    return {report: report.report, capacity}
  }
  const ringAnalysis = analyse(ring)
  const pairAnalysis = analyse(pairs.layout)
  for (const [name, analysis] of [
    ['ring', ringAnalysis],
    ['pairs', pairAnalysis],
  ] as const) {
    if (analysis.report.offline.worstMethod === 'heuristic')
      notes.push(
        `The worst ${k}-server failure for ${name} was found by search, not enumeration: there are ${binomial(base.live.length, k).toExponential(2)} sets.`,
      )
  }

  const capacityFigures = (outcome: CapacityOutcome): CapacityFigures => {
    const utilisation = outcome.ratio > 0 ? userCount / (outcome.ratio * base.holders) : null
    return {
      users:
        input.capacityPerServer === undefined || outcome.ratio === 0
          ? null
          : Math.floor((userCount * input.capacityPerServer) / outcome.ratio + 1e-9),
      utilisation,
      method: outcome.method,
      setsEvaluated: outcome.setsEvaluated,
      worstSet: outcome.worstSet.map((i) => servers[i]!.name),
      worstZone:
        outcome.method === 'zones' && outcome.worstSet.length > 0
          ? (servers[outcome.worstSet[0]!]!.zone ?? null)
          : null,
      busiest: outcome.busiest >= 0 ? servers[outcome.busiest]!.name : null,
    }
  }
  const ringCapacity = capacityFigures(ringAnalysis.capacity)
  const pairCapacity = capacityFigures(pairAnalysis.capacity)

  return {
    cluster: {
      source: input.source ?? 'topology',
      servers: base.holders,
      down: downNames,
      draining: servers.filter((s) => !isPlacementTarget(s)).map((s) => s.name),
      zones: [...new Set(servers.filter(isPlacementTarget).flatMap((s) => (s.zone ? [s.zone] : [])))].sort(
        compareNames,
      ),
      copies: input.topology.copies,
      users: userCount,
      domains,
    },
    failure: {
      mode: input.failure.kind,
      k,
      seed: input.failure.kind === 'random' ? seed : null,
      zone: input.failure.kind === 'zone' ? input.failure.zone : null,
      servers: failedNames,
    },
    ring: ringAnalysis.report,
    pairs: {
      ...pairAnalysis.report,
      pools: pairs.pools.map((pool) => ({
        domains: pool.domains,
        copies: pool.copies,
        groups: pool.groups.map((group) => group.map((i) => servers[i]!.name)),
      })),
    },
    capacity: {
      perServer: input.capacityPerServer ?? null,
      tolerates,
      ring: ringCapacity,
      pairs: pairCapacity,
      ratio:
        ringCapacity.utilisation !== null && pairCapacity.utilisation !== null
          ? ringCapacity.utilisation / pairCapacity.utilisation
          : null,
    },
    notes,
    warnings,
  }
}

function layoutReport(
  layout: Layout,
  base: FailureBase,
  servers: readonly Server[],
  failed: number[],
  userCount: number,
  perServer: boolean,
): {report: LayoutReport; worstIndices: number[]} {
  const k = failed.length
  const outcome = failureOutcome(layout, base.down, failed)
  const failedMask = maskOf(layout.serverCount, failed)
  const index = new OfflineIndex(layout, base.down, k)
  const worst = worstOfflineSet(index, base.live, k)
  const expected = expectedOfflineShare(liveCopyHistogram(layout, base.down), base.live.length, k)

  const survivors = Array.from(base.live).filter((s) => !failedMask[s])
  const stats = (values: number[]) => ({
    max: values.length === 0 ? 0 : Math.max(...values),
    mean: values.length === 0 ? 0 : values.reduce((a, b) => a + b, 0) / values.length,
  })
  const increases = survivors.map((s) => outcome.after[s]! - outcome.before[s]!)
  let increaseServer: string | null = null
  let increaseMax = -Infinity
  for (let i = 0; i < survivors.length; i++) {
    if (increases[i]! > increaseMax) {
      increaseMax = increases[i]!
      increaseServer = servers[survivors[i]!]!.name
    }
  }
  const rows: ServerLoad[] | null = perServer
    ? servers.flatMap((server, s) =>
        isPlacementTarget(server)
          ? [
              {
                name: server.name,
                zone: server.zone ?? null,
                state: base.down[s] ? 'down' : failedMask[s] ? 'failed' : 'active',
                before: outcome.before[s]!,
                after: outcome.after[s]!,
                increase: outcome.after[s]! - outcome.before[s]!,
              } satisfies ServerLoad,
            ]
          : [],
      )
    : null
  return {
    report: {
      offline: {
        chosen: {users: outcome.offline, share: outcome.offline / userCount},
        expected,
        worst: {
          servers: worst.servers.map((i) => servers[i]!.name),
          users: worst.users,
          share: worst.users / userCount,
        },
        worstMethod: worst.method,
        worstSetsEvaluated: worst.setsEvaluated,
      },
      load: {
        before: stats(Array.from(base.live, (s) => outcome.before[s]!)),
        after: stats(survivors.map((s) => outcome.after[s]!)),
        increase: {...stats(increases), server: increaseServer},
        perServer: rows,
      },
    },
    worstIndices: worst.servers,
  }
}

/** The live servers of each explicit zone. */
function zoneSets(servers: readonly Server[], base: FailureBase): Map<string, number[]> {
  const zones = new Map<string, number[]>()
  for (const s of base.live) {
    const zone = servers[s]!.zone
    if (!zone) continue
    const list = zones.get(zone) ?? []
    list.push(s)
    zones.set(zone, list)
  }
  return new Map([...zones].sort(([a], [b]) => compareNames(a, b)))
}

/** The failure set (increasing server indices), or a MailringError naming what is wrong. */
export function resolveFailure(
  spec: FailureSpec,
  servers: readonly Server[],
  base: FailureBase,
  seed: number,
  warnings: string[] = [],
): number[] {
  const live = Array.from(base.live)
  const sorted = (list: number[]) => [...new Set(list)].sort((a, b) => a - b)
  const tooMany = (count: number) =>
    new MailringError(
      `Cannot fail ${count} of ${live.length} live server${live.length === 1 ? '' : 's'}: at least one must survive (down and draining servers do not count).`,
    )
  switch (spec.kind) {
    case 'random': {
      wholeNumber(spec.count, '--fail', 1, Number.MAX_SAFE_INTEGER)
      if (spec.count >= live.length) throw tooMany(spec.count)
      return sorted(sampleWithoutReplacement(live, spec.count, seededGenerator(spec.seed ?? seed)))
    }
    case 'servers': {
      const byName = new Map(servers.map((server, i) => [server.name, i]))
      const names = spec.names.map((name) => name.trim()).filter((name) => name !== '')
      if (names.length === 0)
        throw new MailringError('--fail needs a number or server names, e.g. --fail mx01,mx02.')
      const unknown = names.filter((name) => !byName.has(name))
      if (unknown.length > 0)
        throw new MailringError(
          `Unknown server${unknown.length === 1 ? '' : 's'} in --fail: ${unknown.join(', ')} (servers: ${listSome(servers.map((s) => s.name))}).`,
        )
      const draining = names.filter((name) => !isPlacementTarget(servers[byName.get(name)!]!))
      if (draining.length > 0)
        throw new MailringError(
          `--fail ${draining.join(', ')}: draining servers hold no copies in the placement; fail other servers.`,
        )
      const down = names.filter((name) => base.down[byName.get(name)!])
      if (down.length > 0)
        warnings.push(`${down.join(', ')} already down: counted as failed anyway, not again in --fail.`)
      const set = sorted(names.filter((name) => !down.includes(name)).map((name) => byName.get(name)!))
      if (set.length === 0) throw new MailringError('--fail names only servers that are already down.')
      if (set.length >= live.length) throw tooMany(set.length)
      return set
    }
    case 'zone': {
      const zones = new Set(servers.filter(isPlacementTarget).flatMap((s) => (s.zone ? [s.zone] : [])))
      if (zones.size === 0)
        throw new MailringError(
          `--fail-zone ${spec.zone}: the cluster has no zones (give --zones, or zone: in the topology file).`,
        )
      if (!zones.has(spec.zone))
        throw new MailringError(
          `Unknown zone "${spec.zone}" in --fail-zone (zones: ${listSome([...zones].sort(compareNames))}).`,
        )
      const set = live.filter((s) => servers[s]!.zone === spec.zone)
      if (set.length === 0) throw new MailringError(`Every server of zone ${spec.zone} is already down.`)
      if (set.length >= live.length)
        throw new MailringError(
          `Zone ${spec.zone} holds every live server: nothing would survive its failure.`,
        )
      return set
    }
  }
}

function listSome(names: readonly string[], limit = 8): string {
  return names.length <= limit ? names.join(', ') : `${names.slice(0, limit).join(', ')}, ...`
}

function wholeNumber(value: number, flag: string, min: number, max: number): void {
  if (Number.isInteger(value) && value >= min && value <= max) return
  const range =
    max >= Number.MAX_SAFE_INTEGER ? `at least ${min}` : `from ${groupDigits(min)} to ${groupDigits(max)}`
  throw new MailringError(`${flag} must be a whole number ${range} (got ${value}).`)
}

/** 1234567 -> "1,234,567", the same on every locale. */
export function groupDigits(value: number): string {
  const [whole, fraction] = String(value).split('.') as [string, string | undefined]
  const grouped = whole.replace(/\B(?=(\d{3})+(?!\d))/g, ',')
  return fraction === undefined ? grouped : `${grouped}.${fraction}`
}

function positiveNumber(value: number, flag: string): void {
  if (!Number.isFinite(value) || value <= 0)
    throw new MailringError(`${flag} must be a positive number (got ${value}).`)
}
