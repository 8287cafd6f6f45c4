import {describe, expect, it} from 'vitest'

import {
  allFailProbability,
  binomial,
  forEachCombination,
  forEachSubsetKey,
  sampleWithoutReplacement,
  seededGenerator,
  tupleKey,
} from '../../src/core/combinatorics.js'
import {checkedSimulate, checkedSyntheticTopology} from '../../src/core/simulate/checked.js'
import {MailringError} from '../../src/core/errors.js'
import {Placement} from '../../src/core/placement.js'
import {
  capacityUnderFailures,
  expectedOfflineShare,
  failureBase,
  failureOutcome,
  layoutOf,
  liveCopyHistogram,
  OfflineIndex,
  pairGroups,
  pairLayout,
  ringLayout,
  simulate,
  simulationDomains,
  syntheticTopology,
  syntheticUsers,
  TransferIndex,
  uniformBase,
  worstOfflineSet,
  type FailureBase,
  type Layout,
} from '../../src/core/simulate/index.js'
import type {Server, Topology} from '../../src/core/topology.js'

// ---------------------------------------------------------------------------------------------------
// Independent reference computations (brute force), used to check the fast ones.

function bigBinomial(n: number, k: number): bigint {
  if (k < 0 || k > n) return 0n
  let value = 1n
  for (let i = 1; i <= k; i++) value = (value * BigInt(n - k + i)) / BigInt(i)
  return value
}

function allSets(items: readonly number[], k: number): number[][] {
  if (k === 0) return [[]]
  if (items.length < k) return []
  const [first, ...rest] = items as [number, ...number[]]
  return [...allSets(rest, k - 1).map((set) => [first, ...set]), ...allSets(rest, k)]
}

/** Users placed on a topology, both layouts, with the failure base. */
function placed(topology: Topology, users: number) {
  const placement = new Placement(topology)
  const userSet = syntheticUsers(users, simulationDomains(topology))
  return {
    placement,
    ring: ringLayout(placement, userSet),
    pairs: pairLayout(placement, userSet),
    base: failureBase(placement.servers),
  }
}

/** Users per sorted copy set, counted straight from the layout. */
function copySetCounts(layout: Layout): Map<string, number> {
  const counts = new Map<string, number>()
  for (let u = 0; u < layout.users; u++) {
    const set = Array.from(layout.copies.subarray(u * layout.stride, u * layout.stride + layout.sizes[u]!))
    const key = set.sort((a, b) => a - b).join(',')
    counts.set(key, (counts.get(key) ?? 0) + 1)
  }
  return counts
}

function bruteWorstRatio(layout: Layout, base: FailureBase, k: number): number {
  let worst = 0
  for (const set of allSets(Array.from(base.live), k)) {
    const {after} = failureOutcome(layout, base.down, set)
    for (const s of base.live) if (!set.includes(s)) worst = Math.max(worst, after[s]! / base.capacity[s]!)
  }
  return worst
}

function servers(count: number, extra: (i: number) => Partial<Server> = () => ({})): Server[] {
  return Array.from({length: count}, (_, i) => ({
    name: `mx${String(i + 1).padStart(2, '0')}`,
    address: '',
    weight: 1,
    state: 'active' as const,
    ...extra(i),
  }))
}

function expectOneLineErrors(cases: [() => unknown, RegExp][]): void {
  for (const [run, message] of cases) {
    let error: unknown
    try {
      run()
    } catch (caught) {
      error = caught
    }
    expect(error).toBeInstanceOf(MailringError)
    expect((error as Error).message).toMatch(message)
    expect((error as Error).message).not.toContain('\n')
  }
}

// ---------------------------------------------------------------------------------------------------

describe('combinatorics', () => {
  it('computes C(n-r, k-r) / C(n, k) as a product of ratios', () => {
    for (const [n, k, r] of [
      [10, 2, 2],
      [10, 3, 2],
      [100, 7, 3],
      [50, 20, 5],
      [12, 4, 0],
      [12, 2, 3],
    ] as const) {
      const exact = Number(bigBinomial(n - r, k - r)) / Number(bigBinomial(n, k))
      expect(allFailProbability(n, k, r)).toBeCloseTo(exact, 14)
    }
    expect(allFailProbability(10, 2, 2)).toBeCloseTo(1 / 45, 15)
  })

  it('counts and enumerates k-subsets in order', () => {
    expect(binomial(100, 3)).toBe(161_700)
    expect(binomial(5, 7)).toBe(0)
    const seen: string[] = []
    forEachCombination([3, 5, 8, 9, 11], 3, (set) => void seen.push(Array.from(set).join(',')))
    expect(seen).toHaveLength(10)
    expect(new Set(seen).size).toBe(10)
    expect(seen[0]).toBe('3,5,8')
    expect(seen.at(-1)).toBe('8,9,11')
    expect([...seen].sort()).toEqual(
      allSets([3, 5, 8, 9, 11], 3)
        .map((s) => s.join(','))
        .sort(),
    )
  })

  it('keys subsets the same way whether built at once or while enumerating', () => {
    for (const base of [20, 2 ** 30]) {
      const keys: (number | string)[] = []
      forEachSubsetKey([1, 4, 6, 7], 2, base, (key) => void keys.push(key))
      expect(keys).toEqual(allSets([1, 4, 6, 7], 2).map((set) => tupleKey(set, 2, base)))
    }
    expect(typeof tupleKey([1, 2, 3], 3, 2 ** 30)).toBe('string')
    expect(tupleKey([1, 2, 3], 3, 10)).toBe(123)
  })

  it('draws the same distinct sample for the same seed', () => {
    const items = Array.from({length: 50}, (_, i) => i)
    const a = sampleWithoutReplacement(items, 10, seededGenerator(42))
    expect(new Set(a).size).toBe(10)
    expect(sampleWithoutReplacement(items, 10, seededGenerator(42))).toEqual(a)
    expect(sampleWithoutReplacement(items, 10, seededGenerator(43))).not.toEqual(a)
  })
})

describe('users with no live copy', () => {
  const cluster = placed(syntheticTopology({servers: 9, replicas: 3}), 3000)

  it('expects exactly C(N-R, K-R) / C(N, K) for R copies everywhere', () => {
    const {ring, base} = cluster
    const histogram = liveCopyHistogram(ring, base.down)
    for (let k = 1; k <= 6; k++) {
      const formula = Number(bigBinomial(9 - 3, k - 3)) / Number(bigBinomial(9, k))
      expect(expectedOfflineShare(histogram, 9, k)).toBeCloseTo(formula, 14)
    }
  })

  it('matches the average over every failure set, user by user', () => {
    for (const layout of [cluster.ring, cluster.pairs.layout]) {
      const {base} = cluster
      for (const k of [3, 4]) {
        const sets = allSets(Array.from(base.live), k)
        const mean =
          sets.reduce((sum, set) => sum + failureOutcome(layout, base.down, set).offline, 0) /
          sets.length /
          layout.users
        expect(expectedOfflineShare(liveCopyHistogram(layout, base.down), 9, k)).toBeCloseTo(mean, 12)
      }
    }
  })

  it('gives 2.2% for 2 failures of 10 servers with 2 copies (the seed arithmetic)', () => {
    const {ring, base} = placed(syntheticTopology({servers: 10, replicas: 2}), 1000)
    expect(expectedOfflineShare(liveCopyHistogram(ring, base.down), 10, 2)).toBeCloseTo(2 / 10 / 9, 15)
  })

  it('counts offline users per failure set like a pass over the users', () => {
    const {base, ring, pairs} = cluster
    for (const layout of [ring, pairs.layout]) {
      const index = new OfflineIndex(layout, base.down, 4)
      for (const set of allSets(Array.from(base.live), 4))
        expect(index.count(set)).toBe(failureOutcome(layout, base.down, set).offline)
    }
  })

  it('finds as worst K=R set the most common copy set', () => {
    const {ring, base} = placed(syntheticTopology({servers: 12, replicas: 2}), 20_000)
    const counts = copySetCounts(ring)
    const most = Math.max(...counts.values())
    const worst = worstOfflineSet(new OfflineIndex(ring, base.down, 2), base.live, 2)
    expect(worst.method).toBe('exact')
    expect(worst.users).toBe(most)
    expect(counts.get(worst.servers.join(','))).toBe(most)
    expect(worst.setsEvaluated).toBe(66)
  })

  it('finds the worst set for K > R by enumeration, equal to brute force', () => {
    const {ring, base} = cluster
    const sets = allSets(Array.from(base.live), 4)
    const brute = Math.max(...sets.map((set) => failureOutcome(ring, base.down, set).offline))
    const worst = worstOfflineSet(new OfflineIndex(ring, base.down, 4), base.live, 4)
    expect(worst.users).toBe(brute)
    expect(failureOutcome(ring, base.down, worst.servers).offline).toBe(brute)
  })

  it('searches when enumeration is too large, and finds a planted worst set', () => {
    // 30 servers, 2 copies; users spread over pairs, except many on {3,17} and {3,22} and {17,22}.
    const lists: number[][] = []
    for (let i = 0; i < 30; i++) for (let j = i + 1; j < 30; j++) lists.push([i, j], [j, i])
    for (let n = 0; n < 40; n++) lists.push([3, 17], [22, 3], [17, 22])
    const layout = layoutOf(30, lists)
    const base = uniformBase(30)
    const index = new OfflineIndex(layout, base.down, 3)
    const exact = worstOfflineSet(index, base.live, 3)
    const search = worstOfflineSet(index, base.live, 3, {maxSets: 10})
    expect(exact.method).toBe('exact')
    expect(search.method).toBe('heuristic')
    expect(exact.servers).toEqual([3, 17, 22])
    expect(search.servers).toEqual([3, 17, 22])
    expect(search.users).toBe(exact.users)
    expect(exact.users).toBe(6 + 120)
  })

  it('loses a whole group, about 1/(N/2) of users, in the worst pair failure', () => {
    const {pairs, ring, base} = placed(syntheticTopology({servers: 10, replicas: 2}), 50_000)
    const groupUsers = pairs.pools[0]!.groups.map((group) =>
      copySetCounts(pairs.layout).get(group.join(','))!,
    )
    const worst = worstOfflineSet(new OfflineIndex(pairs.layout, base.down, 2), base.live, 2)
    expect(worst.users).toBe(Math.max(...groupUsers))
    expect(worst.users / 50_000).toBeGreaterThan(0.19)
    expect(worst.users / 50_000).toBeLessThan(0.21)
    // The ring's worst pair of failures takes about 1/45 of the users, not 1/5.
    const ringWorst = worstOfflineSet(new OfflineIndex(ring, base.down, 2), base.live, 2)
    expect(ringWorst.users / 50_000).toBeLessThan(0.03)
  })

  it('counts down servers as failed: live copies only, and the expectation over the others', () => {
    const topology: Topology = {
      algorithm: 1,
      copies: 2,
      servers: servers(8, (i) => (i === 2 ? {state: 'down'} : {})),
      domains: [],
    }
    const {ring, base} = placed(topology, 4000)
    expect(Array.from(base.live)).toEqual([0, 1, 3, 4, 5, 6, 7])
    const histogram = liveCopyHistogram(ring, base.down)
    expect(histogram[0]).toBe(0)
    expect(histogram[1]! + histogram[2]!).toBe(4000)
    const sets = allSets(Array.from(base.live), 2)
    const mean =
      sets.reduce((sum, set) => sum + failureOutcome(ring, base.down, set).offline, 0) / sets.length / 4000
    expect(expectedOfflineShare(histogram, 7, 2)).toBeCloseTo(mean, 12)
    // Users with a copy on the down server lose it to a single further failure.
    const single = failureOutcome(ring, base.down, [0]).offline
    expect(single).toBe(copySetCounts(ring).get('0,2'))
  })
})

describe('where the load goes', () => {
  it('spreads a failed server over all survivors with the ring, and onto the partner with pairs', () => {
    const {ring, pairs, base} = placed(syntheticTopology({servers: 10, replicas: 2}), 50_000)
    const failed = 4
    const ringOutcome = failureOutcome(ring, base.down, [failed])
    const ringIncrease = Array.from(base.live)
      .filter((s) => s !== failed)
      .map((s) => ringOutcome.after[s]! - ringOutcome.before[s]!)
    expect(ringIncrease.every((inc) => inc > 0)).toBe(true)
    const mean = ringIncrease.reduce((a, b) => a + b, 0) / ringIncrease.length
    expect(mean).toBeCloseTo(ringOutcome.before[failed]! / 9, 6)
    expect(Math.max(...ringIncrease)).toBeLessThan(1.3 * mean)

    const pairOutcome = failureOutcome(pairs.layout, base.down, [failed])
    const group = pairs.pools[0]!.groups.find((g) => g.includes(failed))!
    const partner = group.find((s) => s !== failed)!
    for (const s of base.live) {
      if (s === failed) continue
      const increase = pairOutcome.after[s]! - pairOutcome.before[s]!
      expect(increase).toBe(s === partner ? pairOutcome.before[failed]! : 0)
    }
  })

  it('computes loads for any failure set from the index exactly as a pass over the users does', () => {
    // Weights, zones, a down server and domain policies with other copy counts and pinned servers.
    const topology: Topology = {
      algorithm: 1,
      copies: 2,
      servers: servers(9, (i) => ({
        zone: `z${i % 3}`,
        weight: i % 4 === 0 ? 2 : 1,
        state: i === 5 ? 'down' : 'active',
      })),
      domains: [
        {domain: 'three.example', copies: 3},
        {domain: 'pinned.example', servers: ['mx01', 'mx02', 'mx03', 'mx04']},
      ],
    }
    const {ring, pairs, base} = placed(topology, 6000)
    for (const layout of [ring, pairs.layout]) {
      const index = TransferIndex.build(layout, base.down, 3)!
      const out = new Float64Array(layout.serverCount)
      for (const k of [1, 2, 3]) {
        for (const set of allSets(Array.from(base.live), k)) {
          const mask = new Uint8Array(layout.serverCount)
          for (const s of set) mask[s] = 1
          index.loadsAfter(set, mask, out)
          const expected = failureOutcome(layout, base.down, set).after
          expect(Array.from(out)).toEqual(Array.from(expected))
        }
      }
    }
  })
})

describe('capacity', () => {
  it('holds about 90k users on 10 servers of 10k with the ring, 50k with pairs, tolerating 1 failure', () => {
    const {ring, pairs, base} = placed(syntheticTopology({servers: 10, replicas: 2}), 100_000)
    const ringRatio = capacityUnderFailures(ring, base, 1).ratio
    const pairRatio = capacityUnderFailures(pairs.layout, base, 1).ratio
    const ringUsers = (100_000 * 10_000) / ringRatio
    const pairUsers = (100_000 * 10_000) / pairRatio
    // Perfect balance gives exactly 90,000 and 50,000; hashing costs a few per cent, never gains.
    expect(ringUsers).toBeLessThanOrEqual(90_000)
    expect(ringUsers).toBeGreaterThan(85_000)
    expect(pairUsers).toBeLessThanOrEqual(50_000)
    expect(pairUsers).toBeGreaterThan(47_500)
  })

  it('finds the worst set like brute force when it enumerates', () => {
    const {ring, pairs, base} = placed(syntheticTopology({servers: 8, zones: 2, replicas: 2}), 8000)
    for (const layout of [ring, pairs.layout]) {
      for (const k of [1, 2, 3]) {
        const outcome = capacityUnderFailures(layout, base, k)
        expect(outcome.method).toBe('exact')
        expect(outcome.setsEvaluated).toBe(binomial(8, k))
        expect(outcome.ratio).toBe(bruteWorstRatio(layout, base, k))
        const {after} = failureOutcome(layout, base.down, outcome.worstSet)
        expect(after[outcome.busiest]! / base.capacity[outcome.busiest]!).toBe(outcome.ratio)
      }
    }
  })

  it('is exact over all single failures however many servers there are', () => {
    const {ring, base} = placed(syntheticTopology({servers: 12, replicas: 2}), 6000)
    const outcome = capacityUnderFailures(ring, base, 1, {maxSets: 1, budget: 1})
    expect(outcome.method).toBe('exact')
    expect(outcome.setsEvaluated).toBe(12)
    expect(outcome.ratio).toBe(bruteWorstRatio(ring, base, 1))
  })

  it('samples when told to, never worse than the truth, and checks the candidates it is given', () => {
    const {ring, base} = placed(syntheticTopology({servers: 12, replicas: 3}), 12_000)
    const exact = capacityUnderFailures(ring, base, 2)
    const sampled = capacityUnderFailures(ring, base, 2, {maxSets: 1})
    expect(sampled.method).toBe('sampled')
    expect(sampled.ratio).toBeLessThanOrEqual(exact.ratio)
    const guided = capacityUnderFailures(ring, base, 2, {maxSets: 1, candidates: [exact.worstSet]})
    expect(guided.ratio).toBe(exact.ratio)
  })

  it('gives heavier servers capacity in proportion to weight', () => {
    // Server 0 weighs 2: capacity 2 / mean weight 4/3 = 1.5; the others 0.75.
    const layout = layoutOf(3, [
      ...Array.from({length: 60}, () => [0, 1]),
      ...Array.from({length: 30}, () => [1, 0]),
      ...Array.from({length: 10}, () => [2, 0]),
    ])
    const base = uniformBase(3, [], [2, 1, 1])
    expect(base.capacity[0]).toBeCloseTo(1.5, 12)
    expect(base.capacity[1]).toBeCloseTo(0.75, 12)
    // Fail 1: server 0 serves 60 + 30 = 90 (90 / 1.5 = 60); fail 2: server 0 serves 70 (46.7);
    // fail 0: server 1 serves 30 + 60 = 90 (90 / 0.75 = 120), the worst.
    const outcome = capacityUnderFailures(layout, base, 1)
    expect(outcome.ratio).toBeCloseTo(120, 12)
    expect(outcome.worstSet).toEqual([0])
    expect(outcome.busiest).toBe(1)
  })
})

describe('pair groups', () => {
  it('puts members of a group in different zones when zones allow', () => {
    const list = servers(12, (i) => ({zone: `z${i % 3}`}))
    const groups = pairGroups(
      list,
      list.map((_, i) => i),
      2,
    )
    expect(groups).toHaveLength(6)
    expect(groups.flat().sort((a, b) => a - b)).toEqual(list.map((_, i) => i))
    for (const group of groups) expect(new Set(group.map((s) => list[s]!.zone)).size).toBe(2)
  })

  it('gives the left-over servers to the first groups and still R copies to every user', () => {
    const {pairs} = placed(syntheticTopology({servers: 11, replicas: 2}), 5000)
    const sizes = pairs.pools[0]!.groups.map((g) => g.length)
    expect(sizes).toEqual([3, 2, 2, 2, 2])
    expect(Array.from(pairs.layout.sizes).every((size) => size === 2)).toBe(true)
    // The group of three spreads copies over its members: all three pairs of members occur.
    const big = pairs.pools[0]!.groups[0]!
    const counts = copySetCounts(pairs.layout)
    for (const set of allSets(big, 2)) expect(counts.get(set.join(','))).toBeGreaterThan(0)
  })

  it('alternates the primary within a pair', () => {
    const {pairs, base} = placed(syntheticTopology({servers: 4, replicas: 2}), 20_000)
    const {before} = failureOutcome(pairs.layout, base.down, [])
    for (const s of base.live) expect(before[s]! / 5000).toBeCloseTo(1, 1)
  })
})

describe('simulate', () => {
  const topology = syntheticTopology({servers: 10, zones: 2, replicas: 2})

  it('reports ring and pairs side by side for one failure set', () => {
    const result = simulate({topology, users: 20_000, failure: {kind: 'servers', names: ['s01', 's02']}})
    expect(result.failure).toEqual({mode: 'servers', k: 2, seed: null, zone: null, servers: ['s01', 's02']})
    // With two zones the pair s01+s02 spans the zones, so this failure takes it down entirely.
    expect(result.pairs.pools[0]!.groups).toContainEqual(['s01', 's02'])
    expect(result.pairs.offline.chosen.share).toBeGreaterThan(0.15)
    expect(result.ring.offline.chosen.share).toBeLessThan(0.05)
    expect(result.ring.offline.expected).toBeCloseTo(result.pairs.offline.expected, 12)
    expect(result.ring.offline.worstMethod).toBe('exact')
    expect(result.pairs.offline.worst.share).toBeGreaterThan(3 * result.ring.offline.worst.share)
    // Every survivor's increase is counted; the mean is the displaced load over the survivors.
    const lost = result.ring.offline.chosen.users
    expect(result.ring.load.after.mean * 8).toBeCloseTo(20_000 - lost, 6)
    expect(result.capacity.ratio).toBeGreaterThan(1.2)
    expect(result.capacity.ring.users).toBeNull()
  })

  it('chooses random failures reproducibly from the seed', () => {
    const run = (seed: number) =>
      simulate({topology, users: 1000, seed, failure: {kind: 'random', count: 3}}).failure.servers
    expect(run(5)).toEqual(run(5))
    expect(new Set([5, 6, 7, 8].map((seed) => run(seed).join())).size).toBeGreaterThan(1)
  })

  it('fails a whole zone, and then sizes capacity for the loss of any zone', () => {
    const result = simulate({
      topology,
      users: 10_000,
      failure: {kind: 'zone', zone: 'z1'},
      capacityPerServer: 1000,
    })
    expect(result.failure.servers).toEqual(['s01', 's03', 's05', 's07', 's09'])
    expect(result.ring.offline.chosen.users).toBe(0)
    expect(result.pairs.offline.chosen.users).toBe(0)
    expect(result.capacity.tolerates).toBe('any one zone')
    expect(result.capacity.ring.method).toBe('zones')
    expect(result.capacity.ring.setsEvaluated).toBe(2)
    expect(['z1', 'z2']).toContain(result.capacity.ring.worstZone)
    expect(result.capacity.ring.worstSet).toEqual(
      result.capacity.ring.worstZone === 'z1' ? result.failure.servers : ['s02', 's04', 's06', 's08', 's10'],
    )
    // Half the servers carry everything: at most 5 x 1000 users.
    expect(result.capacity.ring.users!).toBeLessThanOrEqual(5000)
    expect(result.capacity.ring.users!).toBeGreaterThan(4500)
  })

  it('rejects bad input with one line', () => {
    expectOneLineErrors([
      [
        () => simulate({topology, failure: {kind: 'servers', names: ['s01', 'nope']}}),
        /Unknown server: nope/,
      ],
      [() => simulate({topology, failure: {kind: 'random', count: 10}}), /Cannot fail 10 of 10/],
      [() => simulate({topology, failure: {kind: 'random', count: 0}}), /at least 1 \(got 0\)/],
      [() => simulate({topology, failure: {kind: 'zone', zone: 'z9'}}), /Unknown zone "z9"/],
      [() => simulate({topology, users: 0, failure: {kind: 'random', count: 1}}), /number of users/],
      [
        () => simulate({topology, capacityPerServer: -5, failure: {kind: 'random', count: 1}}),
        /Capacity per server must be a positive number/,
      ],
      [() => syntheticTopology({servers: 4, zones: 5, replicas: 2}), /number of zones .* from 1 to 4/],
      [() => syntheticTopology({servers: 2, replicas: 3}), /number of copies .* from 1 to 2/],
      [() => syntheticTopology({servers: 0, replicas: 1}), /number of servers/],
      [
        () =>
          simulate({
            topology: syntheticTopology({servers: 4, replicas: 2}),
            failure: {kind: 'zone', zone: 'z1'},
          }),
        /no zones/,
      ],
    ])
  })

  it('names the flags in the command, where the values come from flags', () => {
    expectOneLineErrors([
      [
        () => checkedSimulate({topology, failure: {kind: 'servers', names: ['s01', 'nope']}}),
        /Unknown server in --fail: nope/,
      ],
      [() => checkedSimulate({topology, failure: {kind: 'random', count: 10}}), /Cannot fail 10 of 10/],
      [
        () => checkedSimulate({topology, failure: {kind: 'random', count: 0}}),
        /--fail must be a whole number/,
      ],
      [
        () => checkedSimulate({topology, failure: {kind: 'zone', zone: 'z9'}}),
        /Unknown zone "z9" in --fail-zone \(zones: z1, z2\)/,
      ],
      [() => checkedSimulate({topology, users: 0, failure: {kind: 'random', count: 1}}), /--users/],
      [
        () => checkedSimulate({topology, capacityPerServer: -5, failure: {kind: 'random', count: 1}}),
        /--capacity must be a positive number/,
      ],
      [
        () => checkedSyntheticTopology({servers: 4, zones: 5, replicas: 2}),
        /--zones 5 is more than --servers 4/,
      ],
      [() => checkedSyntheticTopology({servers: 2, replicas: 3}), /--replicas 3 is more than --servers 2/],
      [() => checkedSyntheticTopology({servers: 0, replicas: 1}), /--servers must be/],
      [
        () =>
          checkedSimulate({
            topology: syntheticTopology({servers: 4, replicas: 2}),
            failure: {kind: 'zone', zone: 'z1'},
          }),
        /--fail-zone z1: the cluster has no zones/,
      ],
    ])
  })

  it('warns, in the command, about named servers that are already down', () => {
    const withDown: Topology = {
      ...topology,
      servers: topology.servers.map((s) => (s.name === 's03' ? {...s, state: 'down' as const} : s)),
    }
    const failure = {kind: 'servers' as const, names: ['s01', 's03']}
    expect(simulate({topology: withDown, users: 1000, failure}).warnings).toEqual([])
    const result = checkedSimulate({topology: withDown, users: 1000, failure})
    expect(result.failure.servers).toEqual(['s01'])
    expect(result.warnings).toEqual(['s03 already down: counted as failed anyway, not again in --fail.'])
  })

  it('spreads users over the policy domains and says so', () => {
    const withPolicy: Topology = {...topology, domains: [{domain: 'big.example', copies: 3}]}
    const result = simulate({topology: withPolicy, users: 3000, failure: {kind: 'random', count: 1}})
    expect(result.cluster.domains).toEqual(['sim.example', 'big.example'])
    expect(result.notes.join(' ')).toMatch(/2 domains/)
    expect(result.pairs.pools.map((pool) => pool.copies).sort()).toEqual([2, 3])
  })
})
