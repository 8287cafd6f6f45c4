/**
 * Golden vectors for placement algorithm version 1. These values must never change: a change here moves
 * mailboxes on every running cluster. A deliberate change needs a new algorithm version (docs/decisions).
 */
import {describe, expect, it} from 'vitest'

import {negLog2Unit} from '../../src/core/detmath.js'
import {murmur3, pairScore, serverSeed, userHash} from '../../src/core/hash.js'
import {Placement} from '../../src/core/placement.js'
import {makeServers, makeTopology, syntheticUsers} from '../support/topologies.js'

const USERS = [
  'alice@example.com',
  'bob@example.org',
  'carol@example.net',
  'dave@xn--mller-kva.de',
  'erin@mail.example.co.uk',
  'jürgen@xn--mller-kva.de',
  'x@archive.example.net',
  'postmaster@example.com',
]

const TOPOLOGIES = {
  equal: makeTopology(makeServers(8), 2),
  weighted: makeTopology(
    makeServers(9, (i) => [1, 2, 4][i % 3]!),
    3,
  ),
  zoned: makeTopology(
    makeServers(
      12,
      (i) => (i % 4 === 3 ? 2 : 1),
      (i) => `rack-${'abc'[Math.floor(i / 4)]}`,
    ),
    3,
    [
      {domain: 'example.com', copies: 2},
      {domain: 'archive.example.net', servers: ['mx04', 'mx08', 'mx12']},
    ],
  ),
}

describe('frozen hash (algorithm 1)', () => {
  it('is MurmurHash3 x86_32 over UTF-8 (published test vectors)', () => {
    expect(murmur3('', 0)).toBe(0)
    expect(murmur3('', 1)).toBe(0x514e28b7)
    expect(murmur3('hello', 0)).toBe(0x248bfa47)
    expect(murmur3('Hello, world!', 1234)).toBe(0xfaf6cdb3)
    expect(murmur3('The quick brown fox jumps over the lazy dog', 0)).toBe(0x2e4ff723)
    expect(murmur3('müller😀', 0)).toBe(0xf7e971d2)
  })

  it('gives the recorded user hashes, server seeds and pair scores', () => {
    expect(USERS.map(userHash)).toEqual([
      2402746552, 2978616871, 116784410, 1790979726, 3822386673, 419526154, 1154524662, 4075031576,
    ])
    expect(['mx01', 'mx02', 'server-17'].map(serverSeed)).toEqual([518981381, 1272441901, 2432637347])
    expect(pairScore(1, 2)).toBe(1828163012)
    expect(pairScore(0xdeadbeef | 0, 12345)).toBe(4247132314)
    expect(pairScore(-1, 0)).toBe(3689333187)
  })

  it('computes the arrival logarithm bit for bit', () => {
    expect([0, 1, 12345678, 0x7fffffff, 0x80000000, 0xfffffffe, 0xffffffff].map(negLog2Unit)).toEqual([
      32, 31, 8.442497153056776, 1, 0.9999999993282748, 3.359240663414198e-10, 0,
    ])
  })
})

describe('frozen placement (algorithm 1)', () => {
  it('places the recorded users on the recorded servers', () => {
    const placed = Object.fromEntries(
      Object.entries(TOPOLOGIES).map(([name, topology]) => {
        const placement = new Placement(topology)
        return [name, USERS.map((user) => placement.serversFor(user).join(' '))]
      }),
    )
    expect(placed).toEqual({
      equal: [
        'mx02 mx01',
        'mx06 mx01',
        'mx07 mx01',
        'mx08 mx01',
        'mx04 mx07',
        'mx03 mx05',
        'mx05 mx03',
        'mx06 mx02',
      ],
      weighted: [
        'mx09 mx02 mx03',
        'mx06 mx08 mx09',
        'mx09 mx03 mx06',
        'mx08 mx06 mx03',
        'mx04 mx09 mx06',
        'mx03 mx09 mx06',
        'mx05 mx03 mx09',
        'mx06 mx09 mx02',
      ],
      zoned: [
        'mx09 mx02',
        'mx12 mx08 mx04',
        'mx10 mx04 mx08',
        'mx08 mx01 mx12',
        'mx04 mx11 mx07',
        'mx03 mx12 mx08',
        'mx04 mx08 mx12',
        'mx06 mx09',
      ],
    })
  })

  it('gives the recorded digest over 20,000 users per topology', () => {
    const digests = Object.fromEntries(
      Object.entries(TOPOLOGIES).map(([name, topology]) => {
        const placement = new Placement(topology)
        const users = [...syntheticUsers(10_000), ...syntheticUsers(10_000, 'archive.example.net')]
        return [name, murmur3(users.map((user) => placement.serversFor(user).join(',')).join(';'), 0)]
      }),
    )
    expect(digests).toEqual(DIGESTS)
  })
})

const DIGESTS = {equal: 413172759, weighted: 391678895, zoned: 2177867551}
