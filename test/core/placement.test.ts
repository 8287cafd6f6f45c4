import {describe, expect, it} from 'vitest'

import {pairScore, serverSeed, userHash} from '../../src/core/hash.js'
import {Placement} from '../../src/core/placement.js'
import type {Server, Topology} from '../../src/core/topology.js'
import {makeServers, makeTopology, syntheticUsers} from '../support/topologies.js'

const USERS = syntheticUsers(20_000)

function placeAll(topology: Topology, users = USERS): Map<string, string[]> {
  const placement = new Placement(topology)
  return new Map(users.map((user) => [user, placement.serversFor(user)]))
}

/** Copies that left a server or arrived on one, comparing each user's set of servers. */
function movement(before: Map<string, string[]>, after: Map<string, string[]>) {
  const arrived = new Map<string, number>()
  const left = new Map<string, number>()
  for (const [user, old] of before) {
    const now = after.get(user)!
    for (const server of now) if (!old.includes(server)) arrived.set(server, (arrived.get(server) ?? 0) + 1)
    for (const server of old) if (!now.includes(server)) left.set(server, (left.get(server) ?? 0) + 1)
  }
  return {arrived, left, moved: [...arrived.values()].reduce((a, b) => a + b, 0)}
}

function copiesPerServer(placed: Map<string, string[]>): Map<string, number> {
  const counts = new Map<string, number>()
  for (const servers of placed.values())
    for (const server of servers) counts.set(server, (counts.get(server) ?? 0) + 1)
  return counts
}

describe('weighted rendezvous placement', () => {
  it('gives each user R distinct servers', () => {
    const placed = placeAll(makeTopology(makeServers(10), 3))
    for (const servers of placed.values()) {
      expect(servers).toHaveLength(3)
      expect(new Set(servers).size).toBe(3)
    }
  })

  it('moves only copies onto an added server (equal weights)', () => {
    const servers = makeServers(20)
    const before = placeAll(makeTopology(servers, 3))
    const added = {...makeServers(21)[20]!}
    const after = placeAll(makeTopology([...servers, added], 3))
    const {arrived, left, moved} = movement(before, after)
    expect([...arrived.keys()]).toEqual([added.name])
    // Each copy that arrived displaced exactly one; the new server's fair share is 1/21 of all copies.
    expect(moved).toBe([...left.values()].reduce((a, b) => a + b, 0))
    expect(moved / ((USERS.length * 3) / 21)).toBeGreaterThan(0.95)
    expect(moved / ((USERS.length * 3) / 21)).toBeLessThan(1.05)
  })

  it('moves only copies off a removed server, and spreads them over all the others', () => {
    const servers = makeServers(20)
    const before = placeAll(makeTopology(servers, 3))
    const after = placeAll(makeTopology(servers.slice(1), 3))
    const {arrived, left} = movement(before, after)
    expect([...left.keys()]).toEqual(['mx01'])
    expect(arrived.size).toBe(19)
    const counts = [...arrived.values()]
    const mean = counts.reduce((a, b) => a + b, 0) / counts.length
    expect(Math.max(...counts) / mean).toBeLessThan(1.25)
  })

  it('moves copies only to or from a re-weighted server when the others stay equal', () => {
    const servers = makeServers(12)
    const before = placeAll(makeTopology(servers, 2))
    const after = placeAll(makeTopology([{...servers[0]!, weight: 1.5}, ...servers.slice(1)], 2))
    const {arrived, left} = movement(before, after)
    expect([...arrived.keys()]).toEqual(['mx01'])
    expect(left.has('mx01')).toBe(false)
  })

  it('keeps movement close to the minimum when weights are corrected', () => {
    const servers = makeServers(20, (i) => [1, 2, 4][i % 3]!)
    const before = placeAll(makeTopology(servers, 3))
    const added = {...makeServers(21)[20]!, weight: 2}
    const after = placeAll(makeTopology([...servers, added], 3))
    const {arrived, moved} = movement(before, after)
    const landedOnNew = arrived.get(added.name)!
    expect(moved / landedOnNew).toBeLessThan(1.03)
  })

  it('does not depend on the order in which servers and domains are listed', () => {
    const servers = makeServers(
      9,
      (i) => 1 + (i % 3),
      (i) => `z${i % 4}`,
    )
    const domains = [
      {domain: 'example.com', copies: 3},
      {domain: 'example.org', servers: ['mx01', 'mx02', 'mx05']},
    ]
    const users = [...syntheticUsers(2000), ...syntheticUsers(500, 'example.org')]
    const forward = placeAll(makeTopology(servers, 2, domains), users)
    const reversed = placeAll(makeTopology([...servers].reverse(), 2, [...domains].reverse()), users)
    expect(reversed).toEqual(forward)
  })

  it('gives a server its weight share of copies (the multi-pick anomaly corrected)', () => {
    const weights = [1, 2, 4]
    const servers = makeServers(21, (i) => weights[i % 3]!)
    const counts = copiesPerServer(placeAll(makeTopology(servers, 3), syntheticUsers(60_000)))
    const totalWeight = servers.reduce((sum, s) => sum + s.weight, 0)
    for (const weight of weights) {
      const members = servers.filter((s) => s.weight === weight)
      const copies = members.reduce((sum, s) => sum + counts.get(s.name)!, 0)
      const target = (60_000 * 3 * weight * members.length) / totalWeight
      expect(Math.abs(copies / target - 1)).toBeLessThan(0.02)
    }
  })

  it('caps and reports a server heavier than 1/R of the total', () => {
    const servers = makeServers(5, (i) => (i === 0 ? 5 : 1))
    const placement = new Placement(makeTopology(servers, 2))
    expect(placement.warnings().map((w) => w.code)).toEqual(['weight_capped'])
    expect(placement.warnings()[0]!.message).toContain('mx01')
    const counts = copiesPerServer(placeAll(makeTopology(servers, 2), syntheticUsers(5000)))
    expect(counts.get('mx01')).toBe(5000) // a copy of every user, and no more
    for (const name of ['mx02', 'mx03', 'mx04', 'mx05'])
      expect(Math.abs(counts.get(name)! / 1250 - 1)).toBeLessThan(0.08)
  })
})

describe('failure zones', () => {
  const zoned = (zones: number, count = 12): Server[] =>
    makeServers(
      count,
      () => 1,
      (i) => `rack-${i % zones}`,
    )
  const zoneOf = (servers: Server[]) => new Map(servers.map((s) => [s.name, s.zone]))

  it('never puts two copies of a user in one zone while there are enough zones', () => {
    const servers = zoned(3)
    const zones = zoneOf(servers)
    for (const placed of placeAll(makeTopology(servers, 3)).values()) {
      expect(new Set(placed.map((name) => zones.get(name))).size).toBe(3)
    }
  })

  it('spreads copies over zones as evenly as it can when zones are fewer than copies', () => {
    const servers = zoned(2)
    const zones = zoneOf(servers)
    const placement = new Placement(makeTopology(servers, 3))
    expect(placement.warnings().map((w) => w.code)).toContain('zones_fewer_than_copies')
    for (const placed of placeAll(makeTopology(servers, 3)).values()) {
      expect(new Set(placed.map((name) => zones.get(name))).size).toBe(2)
    }
  })

  it('gives unequal zones copies in proportion to their weight', () => {
    // rack-0 has 2 servers, rack-1 and rack-2 have 5 each: without correction rack-0 would be over-used.
    const servers = makeServers(
      12,
      () => 1,
      (i) => (i < 2 ? 'rack-0' : i < 7 ? 'rack-1' : 'rack-2'),
    )
    const counts = copiesPerServer(placeAll(makeTopology(servers, 2), syntheticUsers(40_000)))
    const perServerTarget = (40_000 * 2) / 12
    for (const s of servers) expect(Math.abs(counts.get(s.name)! / perServerTarget - 1)).toBeLessThan(0.05)
  })
})

describe('server states and domain policies', () => {
  it('gives a draining server nothing and keeps a down server in place', () => {
    const servers = makeServers(8)
    const base = placeAll(makeTopology(servers, 2))
    const down = placeAll(
      makeTopology(
        servers.map((s) => (s.name === 'mx03' ? {...s, state: 'down' as const} : s)),
        2,
      ),
    )
    expect(down).toEqual(base) // a failure alone never moves data
    const draining = placeAll(
      makeTopology(
        servers.map((s) => (s.name === 'mx03' ? {...s, state: 'draining' as const} : s)),
        2,
      ),
    )
    for (const placed of draining.values()) expect(placed).not.toContain('mx03')
  })

  it('keeps a pinned domain on its servers with its own copy count', () => {
    const topology = makeTopology(makeServers(10), 2, [
      {domain: 'example.org', servers: ['mx02', 'mx04', 'mx06', 'mx08'], copies: 3},
    ])
    const placement = new Placement(topology)
    for (const user of syntheticUsers(500, 'example.org')) {
      const placed = placement.serversFor(user)
      expect(placed).toHaveLength(3)
      for (const name of placed) expect(['mx02', 'mx04', 'mx06', 'mx08']).toContain(name)
    }
    expect(placement.serversFor('someone@example.com')).toHaveLength(2)
  })

  it('chooses the second copy independently of the first', () => {
    // For the users of one primary, every other server is second about equally often (no fixed partner).
    const placed = placeAll(makeTopology(makeServers(10), 2), syntheticUsers(50_000))
    const seconds = new Map<string, number>()
    for (const [primary, second] of placed.values())
      if (primary === 'mx01') seconds.set(second!, (seconds.get(second!) ?? 0) + 1)
    expect(seconds.size).toBe(9)
    const counts = [...seconds.values()]
    expect(Math.max(...counts) / Math.min(...counts)).toBeLessThan(1.2)
  })
})

describe('the zone rule, against a plain reference walk', () => {
  // The definition, written as simply as possible: servers by score, highest first; each pick goes to
  // the best unused server in a zone holding the fewest copies among zones with an unused server.
  function referenceWalk(servers: Server[], copies: number, user: string): string[] {
    const byName = [...servers].sort((a, b) => (a.name < b.name ? -1 : 1))
    const hash = userHash(user)
    const ranked = byName
      .map((server, index) => ({server, index, score: pairScore(hash, serverSeed(server.name))}))
      .sort((a, b) => b.score - a.score || a.index - b.index)
    const zoneOf = (s: Server) => s.zone ?? `own:${s.name}`
    const taken: Server[] = []
    while (taken.length < copies) {
      const count = (zone: string) => taken.filter((s) => zoneOf(s) === zone).length
      const open = ranked.filter((r) => !taken.includes(r.server))
      const fewest = Math.min(...open.map((r) => count(zoneOf(r.server))))
      taken.push(open.find((r) => count(zoneOf(r.server)) === fewest)!.server)
    }
    return taken.map((s) => s.name)
  }

  it.each([
    ['3 zones, 3 copies', 12, 3, 3],
    ['4 equal zones, 2 copies', 8, 4, 2],
    ['2 zones, 3 copies', 7, 2, 3],
    ['3 zones, 5 copies', 8, 3, 5],
  ])('%s', (_, count, zones, copies) => {
    const servers = makeServers(
      count,
      () => 1,
      (i) => `z${(i * 7) % zones}`,
    )
    const placement = new Placement(makeTopology(servers, copies))
    for (const user of syntheticUsers(3000)) {
      expect(placement.serversFor(user)).toEqual(referenceWalk(servers, copies, user))
    }
  })
})
