/** Load after many failure sets, without a pass over the users for each set. */
import {binomial, forEachSubsetKey, numericKeyFits} from '../combinatorics.js'
import type {Layout} from './layout.js'

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
