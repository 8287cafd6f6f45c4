/** Users with no live copy, over all failure sets: the expected share and the worst set. */
import {
  allFailProbability,
  binomial,
  forEachCombination,
  forEachSubsetKey,
  tupleKey,
  type TupleKey,
} from '../combinatorics.js'
import {MAX_EXACT_SETS, WORK_BUDGET} from './failures.js'
import type {Layout} from './layout.js'

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
