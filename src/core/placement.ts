import {domainOf, type UserAddress} from './address.js'
import {correctWeights} from './correction.js'
import {negLog2Unit} from './detmath.js'
import {pairScore, serverSeed, userHash} from './hash.js'
import {effectiveZone, isPlacementTarget, type Server, type Topology} from './topology.js'

/**
 * Placement algorithm version 1: weighted rendezvous hashing with failure zones and capacity-true weights.
 *
 * For each user and candidate server: score = pairScore(userHash, serverSeed), a uniform 32-bit integer;
 * arrival = -log2((score + 1) / 2^32) / effectiveWeight. Copies are taken in order of arrival, the earliest
 * first, subject to the zone rule: the next copy goes to a zone holding the fewest copies of the user among
 * zones that still have an unused server (so no two copies share a zone while enough zones exist). The
 * chosen servers are then ordered by arrival with their configured weights; the first is the primary.
 * When every effective weight is equal, comparing raw scores (highest first) gives the same order exactly
 * and is what the code does.
 *
 * Effective weights come from correction.ts: per zone, so that each zone's share of copies follows its
 * weight, and inside a zone the servers share in proportion to their weights.
 */

export interface PlacementWarning {
  code: 'weight_capped' | 'zones_fewer_than_copies'
  message: string
}

/** One set of candidate servers with one copy count: the default pool, or a pinned domain's. */
export class Pool {
  readonly copies: number
  /** Indices into Placement.servers, sorted by name. */
  readonly members: Int32Array
  readonly warnings: PlacementWarning[] = []
  /** Expected share of this pool's copies per member (same order as members). */
  readonly expectedShare: Float64Array

  private readonly seeds: Int32Array
  private readonly selectInverseWeight: Float64Array
  private readonly orderInverseWeight: Float64Array
  private readonly zoneOf: Int32Array
  private readonly zoneCount: number
  private readonly uniform: boolean
  private readonly zonesTrivial: boolean
  // Scratch space, reused for every user (placement is synchronous).
  private readonly keys: Float64Array
  private readonly chosen: Uint8Array
  private readonly zoneCopies: Int32Array
  private readonly zoneFree: Int32Array
  private readonly zoneSize: Int32Array
  private readonly picked: Int32Array

  constructor(allServers: readonly Server[], members: readonly number[], copies: number) {
    this.copies = copies
    this.members = Int32Array.from(members)
    const servers = members.map((index) => allServers[index]!)
    const n = servers.length
    this.seeds = Int32Array.from(servers.map((server) => serverSeed(server.name)))

    const zoneNames = [...new Set(servers.map(effectiveZone))].sort()
    const zoneIndex = new Map(zoneNames.map((zone, i) => [zone, i]))
    this.zoneOf = Int32Array.from(servers.map((server) => zoneIndex.get(effectiveZone(server))!))
    this.zoneCount = zoneNames.length
    this.zonesTrivial = this.zoneCount === n

    const zoneWeight = new Array<number>(this.zoneCount).fill(0)
    servers.forEach((server, i) => (zoneWeight[this.zoneOf[i]!]! += server.weight))
    let zoneFactor = zoneWeight.map(() => 1)
    let zoneShare = zoneWeight.map((weight) => weight / zoneWeight.reduce((a, b) => a + b, 0))
    if (this.zoneCount > copies) {
      const correction = correctWeights(zoneWeight, copies)
      zoneFactor = correction.effective.map((effective, z) => effective / zoneWeight[z]!)
      zoneShare = correction.expectedShare
      correction.capped.forEach((isCapped, z) => {
        if (!isCapped) return
        const what = this.zonesTrivial
          ? `server ${servers[this.zoneOf.indexOf(z)]!.name}`
          : `zone ${zoneNames[z]!.slice(5)}`
        this.warnings.push({
          code: 'weight_capped',
          message: `${what} has more than 1/${copies} of the total weight; it holds a copy of every user and gets ${(100 / copies).toFixed(1)}% of copies, not its weight share`,
        })
      })
    } else if (!this.zonesTrivial && this.zoneCount < copies) {
      this.warnings.push({
        code: 'zones_fewer_than_copies',
        message: `${this.zoneCount} zones for ${copies} copies: some users have two copies in one zone, and shares follow weights only approximately`,
      })
    }
    const effective = servers.map((server, i) => server.weight * zoneFactor[this.zoneOf[i]!]!)
    this.selectInverseWeight = Float64Array.from(effective, (weight) => 1 / weight)
    this.orderInverseWeight = Float64Array.from(servers, (server) => 1 / server.weight)
    this.uniform =
      effective.every((weight) => weight === effective[0]) &&
      servers.every((s) => s.weight === servers[0]!.weight)
    this.expectedShare = Float64Array.from(servers, (server, i) => {
      const z = this.zoneOf[i]!
      return (zoneShare[z]! * server.weight) / zoneWeight[z]!
    })

    this.keys = new Float64Array(n)
    this.chosen = new Uint8Array(n)
    this.zoneCopies = new Int32Array(this.zoneCount)
    this.zoneFree = new Int32Array(this.zoneCount)
    this.zoneSize = new Int32Array(this.zoneCount)
    for (let i = 0; i < n; i++) this.zoneSize[this.zoneOf[i]!]! += 1
    this.picked = new Int32Array(copies)
  }

  /**
   * Writes the user's servers (indices into Placement.servers), primary first, into `out`; returns the count.
   */
  placeHash(hash: number, out: Int32Array): number {
    if (this.uniform && this.zonesTrivial) this.pickTopScores(hash, out)
    else this.placeGeneral(hash, out)
    return this.copies
  }

  /**
   * Every case but the hot path. Kept as its own method so that V8 inlines the two paths separately: one
   * shared body made the weighted path run 2.5x slower after the equal path had run in the same caller.
   */
  private placeGeneral(hash: number, out: Int32Array): void {
    const n = this.members.length
    const copies = this.copies
    const keys = this.keys
    if (this.uniform) {
      // Higher raw score first: the same order as equal-weight arrivals, without the logarithm.
      for (let i = 0; i < n; i++) keys[i] = -pairScore(hash, this.seeds[i]!)
    } else {
      for (let i = 0; i < n; i++)
        keys[i] = negLog2Unit(pairScore(hash, this.seeds[i]!)) * this.selectInverseWeight[i]!
    }
    const picked = this.picked
    if (this.zonesTrivial) this.pickTopK(picked)
    else if (copies <= this.zoneCount) this.pickZoneBests(picked)
    else this.pickByZone(picked)
    if (!this.uniform) this.orderByConfiguredWeight(hash, picked)
    for (let k = 0; k < copies; k++) out[k] = this.members[picked[k]!]!
  }

  /**
   * The hot path (equal weights, no zones): the highest raw scores, by insertion into a short sorted list.
   * Same result as pickTopK over negated scores; kept apart because it is most of the time spent.
   */
  private pickTopScores(hash: number, out: Int32Array): void {
    const seeds = this.seeds
    const best = this.keys // best[k]: k-th highest score so far
    const picked = this.picked
    const copies = this.copies
    let size = 0
    for (let i = 0; i < seeds.length; i++) {
      const score = pairScore(hash, seeds[i]!)
      if (size === copies && score <= best[size - 1]!) continue
      let position = size < copies ? size++ : size - 1
      while (position > 0 && best[position - 1]! < score) {
        best[position] = best[position - 1]!
        picked[position] = picked[position - 1]!
        position--
      }
      best[position] = score
      picked[position] = i
    }
    for (let k = 0; k < copies; k++) out[k] = this.members[picked[k]!]!
  }

  /** The `copies` smallest keys, by insertion; ties go to the server that sorts first by name. */
  private pickTopK(picked: Int32Array): void {
    const keys = this.keys
    const copies = this.copies
    let size = 0
    for (let i = 0; i < keys.length; i++) {
      const key = keys[i]!
      if (size === copies && key >= keys[picked[size - 1]!]!) continue
      let position = size < copies ? size++ : size - 1
      while (position > 0 && keys[picked[position - 1]!]! > key) {
        picked[position] = picked[position - 1]!
        position--
      }
      picked[position] = i
    }
  }

  /**
   * With at least as many zones as copies, every pick goes to a zone without a copy yet: the result is
   * each zone's best server, best zones first. Same result as pickByZone, in one pass.
   */
  private pickZoneBests(picked: Int32Array): void {
    const keys = this.keys
    const zoneBest = this.zoneFree.fill(-1) // reused: index of each zone's smallest key
    for (let i = 0; i < keys.length; i++) {
      const z = this.zoneOf[i]!
      const best = zoneBest[z]!
      if (best < 0 || keys[i]! < keys[best]!) zoneBest[z] = i
    }
    let size = 0
    for (let z = 0; z < this.zoneCount; z++) {
      const candidate = zoneBest[z]!
      const key = keys[candidate]!
      const last = size === this.copies ? picked[size - 1]! : -1
      if (last >= 0 && (key > keys[last]! || (key === keys[last]! && candidate > last))) continue
      let position = size < this.copies ? size++ : size - 1
      while (position > 0) {
        const before = picked[position - 1]!
        if (keys[before]! < key || (keys[before]! === key && before < candidate)) break
        picked[position] = before
        position--
      }
      picked[position] = candidate
    }
  }

  /** Each pick: the smallest key among servers in zones holding the fewest copies (of zones with room). */
  private pickByZone(picked: Int32Array): void {
    const keys = this.keys
    const chosen = this.chosen.fill(0)
    const zoneCopies = this.zoneCopies.fill(0)
    const zoneFree = this.zoneFree
    zoneFree.set(this.zoneSize)
    for (let k = 0; k < this.copies; k++) {
      let fewest = Infinity
      for (let z = 0; z < this.zoneCount; z++)
        if (zoneFree[z]! > 0 && zoneCopies[z]! < fewest) fewest = zoneCopies[z]!
      let best = -1
      for (let i = 0; i < keys.length; i++) {
        if (chosen[i] || zoneCopies[this.zoneOf[i]!] !== fewest) continue
        if (best < 0 || keys[i]! < keys[best]!) best = i
      }
      chosen[best] = 1
      zoneCopies[this.zoneOf[best]!]! += 1
      zoneFree[this.zoneOf[best]!]! -= 1
      picked[k] = best
    }
  }

  /** Orders the chosen servers by arrival with their configured weights: the primary follows weights. */
  private orderByConfiguredWeight(hash: number, picked: Int32Array): void {
    const order = this.keys // reused: selection is done
    for (let k = 0; k < this.copies; k++) {
      const i = picked[k]!
      order[i] = negLog2Unit(pairScore(hash, this.seeds[i]!)) * this.orderInverseWeight[i]!
    }
    for (let k = 1; k < this.copies; k++) {
      const current = picked[k]!
      let position = k
      while (position > 0 && order[picked[position - 1]!]! > order[current]!) {
        picked[position] = picked[position - 1]!
        position--
      }
      picked[position] = current
    }
  }
}

/**
 * The placement of a validated topology. Pools are built lazily (weight correction takes milliseconds)
 * and shared by every user of the same domain policy.
 */
export class Placement {
  readonly topology: Topology
  /** All servers, sorted by name: indices everywhere refer to this order. */
  readonly servers: readonly Server[]
  private readonly indexByName: Map<string, number>
  private readonly pools = new Map<string, Pool>()
  private readonly poolByDomain = new Map<string, string>()
  /** Domains with a policy, resolved once: placing a user looks its pool up in one step. */
  private readonly poolOfDomain = new Map<string, Pool>()
  private readonly defaultPoolKey: string
  private defaultPool: Pool | undefined
  private readonly scratch: Int32Array

  constructor(topology: Topology) {
    this.topology = topology
    this.servers = [...topology.servers].sort((a, b) => compareNames(a.name, b.name))
    this.indexByName = new Map(this.servers.map((server, i) => [server.name, i]))
    for (const policy of topology.domains) {
      const members = this.membersFor(policy.servers)
      this.poolByDomain.set(policy.domain, poolKey(members, policy.copies ?? topology.copies))
    }
    this.defaultPoolKey = poolKey(this.membersFor(undefined), topology.copies)
    const maxCopies = Math.max(topology.copies, ...topology.domains.map((d) => d.copies ?? 0))
    this.scratch = new Int32Array(maxCopies)
  }

  serverIndex(name: string): number | undefined {
    return this.indexByName.get(name)
  }

  /** The pool a domain's users are placed in. */
  poolFor(domain: string): Pool {
    const cached = this.poolOfDomain.get(domain)
    if (cached) return cached
    const key = this.poolByDomain.get(domain)
    if (key === undefined) return (this.defaultPool ??= this.poolWithKey(this.defaultPoolKey))
    const pool = this.poolWithKey(key)
    this.poolOfDomain.set(domain, pool)
    return pool
  }

  private poolWithKey(key: string): Pool {
    let pool = this.pools.get(key)
    if (!pool) {
      const [members, copies] = parsePoolKey(key)
      pool = new Pool(this.servers, members, copies)
      this.pools.set(key, pool)
    }
    return pool
  }

  /** Every distinct pool of this topology (the default one and one per distinct domain policy). */
  allPools(): Pool[] {
    this.defaultPool ??= this.poolWithKey(this.defaultPoolKey)
    for (const domain of this.poolByDomain.keys()) this.poolFor(domain)
    return [...this.pools.values()]
  }

  /** A canonical user's servers, primary first. */
  serversFor(user: UserAddress): string[] {
    const pool = this.poolFor(domainOf(user))
    const count = pool.placeHash(userHash(user), this.scratch)
    const names: string[] = []
    for (let k = 0; k < count; k++) names.push(this.servers[this.scratch[k]!]!.name)
    return names
  }

  /** Same as serversFor, as indices into `servers`, written into `out` (for bulk work). */
  placeInto(user: UserAddress, out: Int32Array): number {
    return this.poolFor(domainOf(user)).placeHash(userHash(user), out)
  }

  warnings(): PlacementWarning[] {
    return this.allPools().flatMap((pool) => pool.warnings)
  }

  private membersFor(pinned: readonly string[] | undefined): number[] {
    const members: number[] = []
    this.servers.forEach((server, i) => {
      if (!isPlacementTarget(server)) return
      if (pinned && !pinned.includes(server.name)) return
      members.push(i)
    })
    return members
  }
}

/** Byte-wise comparison, so that the order never depends on a locale. */
export function compareNames(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0
}

function poolKey(members: readonly number[], copies: number): string {
  return `${copies}|${members.join(',')}`
}

function parsePoolKey(key: string): [number[], number] {
  const [copies, members] = key.split('|') as [string, string]
  return [members === '' ? [] : members.split(',').map(Number), Number(copies)]
}
