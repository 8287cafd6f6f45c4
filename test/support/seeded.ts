/**
 * Seeded randomness for tests that draw their cases (faults, changes): a seed from an environment
 * variable replays a run, `random` draws a new one, and unset gives the file's default seed, so that the
 * suite runs the same cases every time.
 */
import {seededGenerator} from '../../src/core/combinatorics.js'

/** The seed set in `variable` (an integer, or `random`), else `defaultSeed`. */
export function seedFrom(variable: string, defaultSeed: number): number {
  const setting = process.env[variable]
  if (setting === undefined || setting === '') return defaultSeed
  if (setting === 'random') return Math.floor(Math.random() * 2 ** 31)
  const seed = Number(setting)
  if (!Number.isInteger(seed)) throw new Error(`${variable} must be an integer or "random", not "${setting}"`)
  return seed
}

/** Uniform draws from a seed: the same seed gives the same draws on every machine. */
export function randomness(seed: number) {
  const next = seededGenerator(seed)
  const rnd = () => next() / 2 ** 32
  return {
    rnd,
    pick: <T>(list: readonly T[]): T => list[Math.floor(rnd() * list.length)]!,
    between: (low: number, high: number) => low + rnd() * (high - low),
    /** An integer in [low, high]. */
    int: (low: number, high: number) => low + Math.floor(rnd() * (high - low + 1)),
  }
}
export type Randomness = ReturnType<typeof randomness>
