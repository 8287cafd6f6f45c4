import {exactExp} from './detmath.js'

/**
 * Weighted sampling without replacement (what weighted rendezvous hashing does when it takes the top
 * `picks` scores) includes item i with probability
 *
 *   P_i = ∫ v_i e^(-v_i t) · P(fewer than `picks` other items arrived by t) dt,
 *
 * where item j arrives at an exponential time with rate v_j. The count of other arrivals is a sum of
 * independent Bernoulli variables, computed per grid point with prefix and suffix distributions, and the
 * integral with Simpson's rule. Only exactly specified arithmetic is used (see detmath.ts), so the
 * weight correction built on this is identical on every platform.
 */
const INTERVALS = 512 // even, for Simpson's rule

export function inclusionProbabilities(weights: readonly number[], picks: number): Float64Array {
  const n = weights.length
  const result = new Float64Array(n)
  if (picks <= 0) return result
  if (picks >= n) return result.fill(1)
  let total = 0
  for (const weight of weights) total += weight
  const v = weights.map((weight) => weight / total)
  if (picks === 1) {
    v.forEach((share, i) => (result[i] = share))
    return result
  }

  // The integrand decays at least as fast as exp(-(1 - sum of the picks-1 largest shares) t).
  const largestFirst = [...v].sort((a, b) => b - a)
  let largest = 0
  for (let i = 0; i < picks - 1; i++) largest += largestFirst[i]!
  const slowestRate = Math.max(1 - largest, largestFirst[n - 1]!)
  const step = 36 / slowestRate / INTERVALS

  const stepDecay = v.map((share) => exactExp(-share * step))
  const survive = new Float64Array(n).fill(1) // e^(-v_j t) at the current grid point
  const prefix = new Float64Array((n + 1) * picks)
  const suffix = new Float64Array((n + 2) * picks)

  for (let point = 0; point <= INTERVALS; point++) {
    const simpson = point === 0 || point === INTERVALS ? 1 : point % 2 === 1 ? 4 : 2
    // prefix[k][c]: probability that exactly c of items 0..k-1 arrived (c < picks); suffix likewise.
    prefix.fill(0)
    suffix.fill(0)
    prefix[0] = 1
    suffix[n * picks] = 1
    for (let k = 0; k < n; k++) {
      const arrived = 1 - survive[k]!
      const from = k * picks
      const to = from + picks
      prefix[to] = prefix[from]! * (1 - arrived)
      for (let c = 1; c < picks; c++)
        prefix[to + c] = prefix[from + c]! * (1 - arrived) + prefix[from + c - 1]! * arrived
    }
    for (let k = n - 1; k >= 0; k--) {
      const arrived = 1 - survive[k]!
      const from = (k + 1) * picks
      const to = k * picks
      suffix[to] = suffix[from]! * (1 - arrived)
      for (let c = 1; c < picks; c++)
        suffix[to + c] = suffix[from + c]! * (1 - arrived) + suffix[from + c - 1]! * arrived
    }
    for (let i = 0; i < n; i++) {
      let fewer = 0
      const before = i * picks
      const after = (i + 1) * picks
      for (let a = 0; a < picks; a++) {
        const pa = prefix[before + a]!
        if (pa === 0) continue
        for (let b = 0; a + b < picks; b++) fewer += pa * suffix[after + b]!
      }
      result[i] = result[i]! + simpson * v[i]! * survive[i]! * fewer
    }
    for (let k = 0; k < n; k++) survive[k] = survive[k]! * stepDecay[k]!
  }
  for (let i = 0; i < n; i++) result[i] = (result[i]! * step) / 3
  return result
}
