import {describe, expect, it} from 'vitest'

import {ByteBudget} from '../../src/core/byte-budget.js'

describe('ByteBudget', () => {
  it('lets the first object start at once, and the next when the first is paid for, less the burst', () => {
    const budget = new ByteBudget(1000, 1000) // 1000 bytes/s
    expect(budget.reserve(5000, 0)).toBe(0) // paid until 5 s
    expect(budget.reserve(100, 0)).toBe(4000) // starts at 5 s - 1 s of burst
    expect(budget.reserve(100, 4000)).toBe(100) // paid until 5.1 s: starts at 4.1 s
  })

  it('keeps the bytes started over a long stretch within the rate plus the burst', () => {
    const rate = 2000
    const budget = new ByteBudget(rate, 1000)
    let now = 0
    let started = 0
    const sizes = [700, 3000, 10, 0, 4500, 1200, 800, 9000, 50, 2500]
    for (const size of sizes) {
      now += budget.reserve(size, now)
      // Everything started by now, except this object's own bytes, fits the rate with a second of burst.
      expect(started, `at ${now} ms`).toBeLessThanOrEqual((rate * (now + 1000)) / 1000)
      started += size
    }
    expect(now).toBeGreaterThanOrEqual(((started - 2500) / rate) * 1000 - 1000)
  })

  it('does not save up while idle beyond the burst', () => {
    const budget = new ByteBudget(1000, 500)
    expect(budget.reserve(1000, 0)).toBe(0)
    // Long idle: the next object starts at once, the one after waits for it as usual.
    expect(budget.reserve(3000, 60_000)).toBe(0)
    expect(budget.reserve(10, 60_000)).toBe(2500)
  })

  it('refuses a rate that is not positive', () => {
    expect(() => new ByteBudget(0)).toThrow(RangeError)
  })
})
