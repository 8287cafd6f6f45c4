/**
 * Counting helpers for failure simulation: binomial ratios computed as products of ratios (no factorials,
 * so nothing overflows), lexicographic enumeration of k-subsets, keys for small sets of server indices,
 * and a seeded pseudo-random generator that gives the same sequence on every platform.
 */

/**
 * C(n - r, k - r) / C(n, k): the probability that a uniformly random k-subset of n servers contains r given
 * servers (all copies of a user with r copies). Computed as prod_{i<r} (k - i) / (n - i), which stays exact
 * to a few ulps for any size. 0 when r > k; 1 when r = 0.
 */
export function allFailProbability(n: number, k: number, r: number): number {
  if (r > k) return 0
  let p = 1
  for (let i = 0; i < r; i++) p *= (k - i) / (n - i)
  return p
}

/** C(n, k) as a float (exact up to 2^53); Infinity when it does not fit a double. */
export function binomial(n: number, k: number): number {
  if (k < 0 || k > n) return 0
  const m = Math.min(k, n - k)
  let value = 1
  for (let i = 1; i <= m; i++) value = (value * (n - m + i)) / i
  return Math.round(value)
}

/**
 * Calls `visit` with every k-subset of `items` (in the order given; lexicographic by position). The array
 * passed to `visit` is reused: copy it to keep it. Stops early when `visit` returns false.
 */
export function forEachCombination(
  items: ArrayLike<number>,
  k: number,
  visit: (combination: Int32Array) => boolean | void,
): void {
  const n = items.length
  if (k > n || k < 0) return
  const position = Int32Array.from({length: k}, (_, i) => i)
  const combination = new Int32Array(k)
  for (;;) {
    for (let i = 0; i < k; i++) combination[i] = items[position[i]!]!
    if (visit(combination) === false) return
    let i = k - 1
    while (i >= 0 && position[i] === n - k + i) i--
    if (i < 0) return
    position[i]! += 1
    for (let j = i + 1; j < k; j++) position[j] = position[j - 1]! + 1
  }
}

/**
 * Keys for sets of server indices in 0..base-1, given in increasing order: a number (base-`base` digits)
 * when the key of that size fits a double exactly, else the indices joined by commas.
 */
export type TupleKey = number | string

/** Whether keys of `size` digits in base `base` are exact doubles. */
export function numericKeyFits(base: number, size: number): boolean {
  let largest = 1
  for (let i = 0; i < size; i++) {
    largest *= Math.max(base, 2)
    if (largest > Number.MAX_SAFE_INTEGER) return false
  }
  return true
}

export function tupleKey(sorted: ArrayLike<number>, size: number, base: number): TupleKey {
  if (numericKeyFits(base, size)) {
    let key = 0
    for (let i = 0; i < size; i++) key = key * base + sorted[i]!
    return key
  }
  let text = ''
  for (let i = 0; i < size; i++) text += i === 0 ? `${sorted[i]}` : `,${sorted[i]}`
  return text
}

/**
 * Calls `visit` with the key (see tupleKey) of every `size`-subset of `sorted` (increasing indices).
 */
export function forEachSubsetKey(
  sorted: ArrayLike<number>,
  size: number,
  base: number,
  visit: (key: TupleKey) => void,
): void {
  const n = sorted.length
  if (size > n) return
  if (size === 0) {
    visit(numericKeyFits(base, 0) ? 0 : '')
    return
  }
  const numeric = numericKeyFits(base, size)
  const chosen = new Int32Array(size)
  const recurse = (start: number, depth: number, key: number): void => {
    for (let i = start; i <= n - (size - depth); i++) {
      chosen[depth] = sorted[i]!
      if (depth === size - 1) visit(numeric ? key * base + sorted[i]! : tupleKey(chosen, size, base))
      else recurse(i + 1, depth + 1, numeric ? key * base + sorted[i]! : 0)
    }
  }
  recurse(0, 0, 0)
}

/**
 * A seeded 32-bit generator (mulberry32): integer arithmetic only, so a seed gives the same failures on
 * every machine. Returns a function giving uniform integers in [0, 2^32).
 */
export function seededGenerator(seed: number): () => number {
  let state = seed >>> 0
  return () => {
    state = (state + 0x6d2b79f5) >>> 0
    let t = state
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return (t ^ (t >>> 14)) >>> 0
  }
}

/** A uniform integer in [0, bound) for bound <= 2^32 (multiply-shift; exact in doubles). */
export function uniformBelow(next: () => number, bound: number): number {
  return Math.floor((next() / 4294967296) * bound)
}

/** k distinct items chosen uniformly at random (partial Fisher-Yates), in the order drawn. */
export function sampleWithoutReplacement(items: ArrayLike<number>, k: number, next: () => number): number[] {
  const pool = Array.from(items)
  const count = Math.min(k, pool.length)
  for (let i = 0; i < count; i++) {
    const j = i + uniformBelow(next, pool.length - i)
    const swap = pool[i]!
    pool[i] = pool[j]!
    pool[j] = swap
  }
  return pool.slice(0, count)
}
