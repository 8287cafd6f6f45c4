import {inclusionProbabilities} from './inclusion.js'

/**
 * Capacity-true weights. Taking the top R of weighted rendezvous scores does not give each candidate a
 * share of copies proportional to its weight (the "multi-pick anomaly": heavy candidates get too little).
 * This finds effective weights whose top-R inclusion probabilities are R·w/W, and reports candidates
 * heavier than 1/R of the total: they can hold at most one copy of every user, so they are capped at
 * that and the others share the rest.
 */
export interface WeightCorrection {
  /** Weights to score with, one per candidate, same order as the input. */
  effective: number[]
  /** Candidates that get a copy of every user (their weight share exceeds 1/R). */
  capped: boolean[]
  /** Expected share of all copies per candidate (sums to 1). */
  expectedShare: number[]
  /** Whether any correction was needed. */
  corrected: boolean
}

const MAX_ITERATIONS = 60
const TOLERANCE = 1e-6
/** A capped candidate's effective weight, relative to the total: it always wins a place. */
const CAPPED_FACTOR = 2 ** 40

export function correctWeights(weights: readonly number[], picks: number): WeightCorrection {
  const n = weights.length
  const total = weights.reduce((sum, weight) => sum + weight, 0)
  if (picks >= n) {
    return {
      effective: [...weights],
      capped: weights.map(() => true),
      expectedShare: weights.map(() => 1 / n),
      corrected: false,
    }
  }

  const capped = capHeavy(weights, picks)
  const free = weights.map((_, i) => i).filter((i) => !capped[i])
  const freePicks = picks - (n - free.length)
  const freeTotal = free.reduce((sum, i) => sum + weights[i]!, 0)
  const target = free.map((i) => (freePicks * weights[i]!) / freeTotal)
  const expectedShare = weights.map((weight, i) => (capped[i] ? 1 : (freePicks * weight) / freeTotal) / picks)

  const freeWeights = free.map((i) => weights[i]!)
  const allEqual = freeWeights.every((weight) => weight === freeWeights[0])
  const anyCapped = free.length < n
  if (allEqual && !anyCapped) return {effective: [...weights], capped, expectedShare, corrected: false}

  let current = [...freeWeights]
  if (!allEqual && freePicks > 1) {
    for (let iteration = 0; iteration < MAX_ITERATIONS; iteration++) {
      const achieved = inclusionProbabilities(current, freePicks)
      let worst = 0
      const next = current.map((weight, k) => {
        const ratio = target[k]! / achieved[k]!
        worst = Math.max(worst, Math.abs(ratio - 1))
        return weight * ratio
      })
      if (worst < TOLERANCE) break
      current = normalise(next, freeTotal)
    }
  }
  const effective = [...weights]
  free.forEach((i, k) => (effective[i] = current[k]!))
  for (let i = 0; i < n; i++) if (capped[i]) effective[i] = total * CAPPED_FACTOR
  return {effective, capped, expectedShare, corrected: true}
}

/** Water-filling: cap every candidate whose target exceeds one copy per user, then re-share the rest. */
function capHeavy(weights: readonly number[], picks: number): boolean[] {
  const capped = weights.map(() => false)
  for (;;) {
    let freePicks = picks
    let freeTotal = 0
    weights.forEach((weight, i) => (capped[i] ? (freePicks -= 1) : (freeTotal += weight)))
    let changed = false
    weights.forEach((weight, i) => {
      if (!capped[i] && (freePicks * weight) / freeTotal > 1) {
        capped[i] = true
        changed = true
      }
    })
    if (!changed) return capped
  }
}

function normalise(values: number[], total: number): number[] {
  const sum = values.reduce((acc, value) => acc + value, 0)
  return values.map((value) => (value * total) / sum)
}
