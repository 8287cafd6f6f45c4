import {describe, expect, it} from 'vitest'

import {PlanBuilder, type CurrentChunk, type RebalancePlan} from '../../src/core/plan.js'
import {Placement} from '../../src/core/placement.js'
import type {Server, Topology} from '../../src/core/topology.js'

const server = (name: string, extra: Partial<Server> = {}): Server => ({
  name,
  address: '',
  weight: 1,
  state: 'active',
  ...extra,
})

const fiveServers: Topology = {
  algorithm: 1,
  copies: 2,
  servers: ['mx01', 'mx02', 'mx03', 'mx04', 'mx05'].map((name) => server(name)),
  domains: [],
}

const users = Array.from({length: 3000}, (_, i) => `user${i}@${i % 3 === 0 ? 'example.com' : 'example.org'}`)

/** The users placed as `topology` places them: what the store holds right after an import. */
function placedChunks(topology: Topology, chunkSize: number): {servers: string[]; chunks: CurrentChunk[]} {
  const placement = new Placement(topology)
  const servers = placement.servers.map((s) => s.name)
  const chunks: CurrentChunk[] = []
  const out = new Int32Array(16)
  for (let start = 0; start < users.length; start += chunkSize) {
    const part = users.slice(start, start + chunkSize)
    const copyStart = new Int32Array(part.length + 1)
    const copyServers: number[] = []
    part.forEach((user, i) => {
      copyStart[i] = copyServers.length
      const count = placement.placeInto(user, out)
      copyServers.push(...out.subarray(0, count))
    })
    copyStart[part.length] = copyServers.length
    chunks.push({users: part, copyStart, copyServers: Int32Array.from(copyServers)})
  }
  return {servers, chunks}
}

function plan(
  current: Topology,
  target: Topology,
  options: {chunkSize?: number; clusterId?: string} = {},
): RebalancePlan {
  const {servers, chunks} = placedChunks(current, options.chunkSize ?? 500)
  const builder = new PlanBuilder(servers, new Placement(target), {
    clusterId: options.clusterId ?? 'cluster-1',
    algorithm: 1,
    current,
    target,
  })
  for (const chunk of chunks) builder.add(chunk)
  return builder.finish()
}

describe('rebalance plan', () => {
  it('has nothing to do when the current placement is the target', () => {
    const result = plan(fiveServers, fiveServers)
    expect(result.summary).toEqual({
      users: 3000,
      copiesBefore: 6000,
      copiesAfter: 6000,
      moves: 0,
      drops: 0,
      minimumMoves: 0,
      capacityLowerBound: 0,
      usersAffected: 0,
    })
    expect(result.moves.length).toBe(0)
    for (const s of result.balance) expect(s.after).toBe(s.before)
  })

  it('moves copies only onto an added server, as few as possible', () => {
    const target = {...fiveServers, servers: [...fiveServers.servers, server('mx06')]}
    const result = plan(fiveServers, target)
    const moves = [...result.moves]
    expect(moves.length).toBeGreaterThan(0)
    expect(moves.every((move) => move.to === 'mx06' && move.from !== null)).toBe(true)
    expect(result.summary.moves).toBe(moves.length)
    expect(result.summary.minimumMoves).toBe(moves.length)
    expect(result.summary.capacityLowerBound).toBe(moves.length)
    // About 1/6 of the copies go to the new server.
    expect(moves.length / 6000).toBeGreaterThan(1 / 6 - 0.03)
    expect(moves.length / 6000).toBeLessThan(1 / 6 + 0.03)
    const mx06 = result.balance.find((s) => s.server === 'mx06')!
    expect(mx06).toMatchObject({before: 0, after: moves.length, movesIn: moves.length, movesOut: 0})
    const totalAfter = result.balance.reduce((sum, s) => sum + s.after, 0)
    expect(totalAfter).toBe(6000)
    // Each move takes a copy from a server the user is on now, to one the ring chooses.
    const placementNow = new Placement(fiveServers)
    const placementThen = new Placement(target)
    for (const move of moves.slice(0, 200)) {
      expect(placementNow.serversFor(move.user)).toContain(move.from)
      expect(placementThen.serversFor(move.user)).toContain(move.to)
      expect(placementThen.serversFor(move.user)).not.toContain(move.from)
    }
  })

  it('plans every copy away from a draining server', () => {
    const target = {
      ...fiveServers,
      servers: fiveServers.servers.map((s) => (s.name === 'mx03' ? {...s, state: 'draining' as const} : s)),
    }
    const result = plan(fiveServers, target)
    const mx03 = result.balance.find((s) => s.server === 'mx03')!
    expect(mx03.after).toBe(0)
    expect(mx03.movesOut).toBe(mx03.before)
    expect(result.summary.moves).toBe(mx03.before)
    expect([...result.moves].every((move) => move.from === 'mx03' && move.to !== 'mx03')).toBe(true)
  })

  it('plans copies away from a server missing from the target', () => {
    const target = {...fiveServers, servers: fiveServers.servers.filter((s) => s.name !== 'mx05')}
    const result = plan(fiveServers, target)
    expect(result.servers).toContain('mx05')
    expect(result.balance.find((s) => s.server === 'mx05')!.after).toBe(0)
    expect(result.summary.moves).toBe(result.balance.find((s) => s.server === 'mx05')!.before)
  })

  it('adds new copies and drops extra ones when a domain changes its copy count', () => {
    const more = {...fiveServers, domains: [{domain: 'example.com', copies: 3}]}
    const grown = plan(fiveServers, more)
    expect(grown.summary.moves).toBe(1000)
    expect(grown.summary.drops).toBe(0)
    expect([...grown.moves].every((move) => move.from === null && move.user.endsWith('@example.com'))).toBe(
      true,
    )

    const shrunk = plan(more, fiveServers)
    expect(shrunk.summary.moves).toBe(0)
    expect(shrunk.summary.drops).toBe(1000)
    expect(shrunk.summary.copiesAfter).toBe(6000)
    expect([...shrunk.moves].every((move) => move.to === null)).toBe(true)
  })

  it('fingerprints the inputs, whatever the chunk size', () => {
    const target = {...fiveServers, servers: [...fiveServers.servers, server('mx06')]}
    const reference = plan(fiveServers, target).fingerprint
    expect(reference).toMatch(/^sha256:[0-9a-f]{64}$/)
    expect(plan(fiveServers, target, {chunkSize: 7}).fingerprint).toBe(reference)
    expect(plan(fiveServers, target, {clusterId: 'another'}).fingerprint).not.toBe(reference)
    const heavier = {
      ...target,
      servers: target.servers.map((s) => (s.name === 'mx06' ? {...s, weight: 2} : s)),
    }
    expect(plan(fiveServers, heavier).fingerprint).not.toBe(reference)
  })

  it('changes the fingerprint when one copy of one user is elsewhere', () => {
    const {servers, chunks} = placedChunks(fiveServers, 1000)
    const fingerprint = (changed: boolean): string => {
      const builder = new PlanBuilder(servers, new Placement(fiveServers), {
        clusterId: 'c',
        algorithm: 1,
        current: fiveServers,
        target: fiveServers,
      })
      chunks.forEach((chunk, i) => {
        if (changed && i === 2) {
          const copyServers = chunk.copyServers.slice()
          copyServers[5] = (copyServers[5]! + 1) % servers.length
          builder.add({...chunk, copyServers})
        } else builder.add(chunk)
      })
      return builder.finish().fingerprint
    }
    expect(fingerprint(true)).not.toBe(fingerprint(false))
  })
})
