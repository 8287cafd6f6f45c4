import {describe, expect, it} from 'vitest'

import {exactExp, log2Mantissa, negLog2Unit} from '../../src/core/detmath.js'
import {correctWeights} from '../../src/core/correction.js'
import {inclusionProbabilities} from '../../src/core/inclusion.js'

/** Weighted sampling without replacement, simulated with a seeded generator (mulberry32). */
function simulateInclusion(weights: number[], picks: number, trials: number): number[] {
  let state = 42
  const random = () => {
    state = (state + 0x6d2b79f5) | 0
    let t = Math.imul(state ^ (state >>> 15), 1 | state)
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
  const counts = weights.map(() => 0)
  for (let trial = 0; trial < trials; trial++) {
    const arrivals = weights
      .map((w, i) => [-Math.log(1 - random()) / w, i] as const)
      .sort((a, b) => a[0] - b[0])
    for (let k = 0; k < picks; k++) counts[arrivals[k]![1]]! += 1
  }
  return counts.map((c) => c / trials)
}

describe('exactly specified arithmetic', () => {
  it('matches the platform logarithm and exponential closely', () => {
    for (const score of [0, 1, 1000, 123456789, 0x80000000, 0xfffffff0]) {
      expect(negLog2Unit(score)).toBeCloseTo(-Math.log2((score + 1) / 2 ** 32), 7)
    }
    expect(log2Mantissa(1.5)).toBeCloseTo(Math.log2(1.5), 15)
    for (const x of [-30, -1, -0.5, 0, 0.3]) expect(exactExp(x) / Math.exp(x)).toBeCloseTo(1, 13)
  })
})

describe('inclusion probabilities of weighted top-R', () => {
  it('agree with a simulation', () => {
    const weights = [5, 1, 1, 1, 1, 2, 3]
    const exact = inclusionProbabilities(weights, 3)
    const simulated = simulateInclusion(weights, 3, 200_000)
    exact.forEach((p, i) => expect(p).toBeCloseTo(simulated[i]!, 2))
    expect(exact.reduce((a, b) => a + b, 0)).toBeCloseTo(3, 5)
  })

  it('show the multi-pick anomaly: a heavy item gets less than its weight share', () => {
    const exact = inclusionProbabilities([4, 1, 1, 1, 1], 2)
    expect(exact[0]! / 2).toBeLessThan(4 / 8 - 0.05)
  })
})

describe('weight correction', () => {
  it('finds effective weights whose inclusion follows the configured weights', () => {
    const weights = [1, 2, 4, 1, 2, 4, 1, 2, 4, 3]
    const {effective, corrected} = correctWeights(weights, 3)
    expect(corrected).toBe(true)
    const total = weights.reduce((a, b) => a + b, 0)
    inclusionProbabilities(effective, 3).forEach((p, i) =>
      expect(p).toBeCloseTo((3 * weights[i]!) / total, 5),
    )
  })

  it('leaves equal weights alone', () => {
    expect(correctWeights([3, 3, 3, 3], 2)).toMatchObject({effective: [3, 3, 3, 3], corrected: false})
  })

  it('caps weights above 1/R of the total and shares the rest', () => {
    const {capped, expectedShare} = correctWeights([10, 1, 1, 1, 1], 3)
    expect(capped).toEqual([true, false, false, false, false])
    expect(expectedShare[0]).toBeCloseTo(1 / 3, 10)
    expect(expectedShare[1]).toBeCloseTo(1 / 6, 10)
  })
})
