/** Capacity: how many users fit while tolerating failures, no survivor over its share. */
import {binomial, forEachCombination, seededGenerator, uniformBelow} from '../combinatorics.js'
import {
  DEFAULT_SIM_SEED,
  failureOutcome,
  maskOf,
  MAX_EXACT_SETS,
  WORK_BUDGET,
  type FailureBase,
} from './failures.js'
import type {Layout} from './layout.js'
import {TransferIndex} from './transfer.js'

/** Random failure sets tried at most when capacity is estimated by sampling. */
const MAX_SAMPLES = 50_000

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
