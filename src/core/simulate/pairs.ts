/** The classic layout on the same servers: mirrored groups, users spread over the groups by hashing. */
import {negLog2Unit} from '../detmath.js'
import {pairScore, serverSeed} from '../hash.js'
import {compareNames, type Placement, type Pool} from '../placement.js'
import {effectiveZone, type Server} from '../topology.js'
import type {Layout} from './layout.js'
import type {UserSet} from './synthetic.js'

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
