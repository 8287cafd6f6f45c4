import {describe, expect, it} from 'vitest'

import {sampleAcrossServers} from '../../../src/engine/sync/selection.js'
import {seededGenerator} from '../../../src/core/combinatorics.js'

describe('sampleAcrossServers', () => {
  const users = Array.from({length: 300}, (_, i) => ({
    user: `u${i}@example.com`,
    copies: [`mx${i % 3}`, `mx${(i + 1) % 3}`],
  }))

  it('takes at most the size asked for, each user once, from every primary server', () => {
    const sample = sampleAcrossServers(users, 7, seededGenerator(1))
    expect(sample).toHaveLength(7)
    expect(new Set(sample.map((u) => u.user)).size).toBe(7)
    expect(new Set(sample.map((u) => u.copies[0])).size).toBe(3)
  })

  it('returns everyone when the sample is larger than the selection', () => {
    expect(sampleAcrossServers(users.slice(0, 5), 50)).toHaveLength(5)
  })
})
