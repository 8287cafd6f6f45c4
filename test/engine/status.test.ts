import {mkdtempSync, rmSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'

import {afterEach, beforeEach, describe, expect, it, vi} from 'vitest'

import {PLACEMENT_ALGORITHM_VERSION, type Server, type Topology} from '../../src/core/topology.js'
import {addServer, addUsers} from '../../src/engine/cluster.js'
import {computePlan} from '../../src/engine/rebalance-plan.js'
import {clusterStatus, type StoreStatus} from '../../src/engine/status.js'
import {describeHolder} from '../../src/store/lock.js'
import {SqliteStore} from '../../src/store/sqlite.js'
import {planServerRows} from '../../src/ui/plan.js'
import {statusHeading, statusReport, statusWarnings} from '../../src/ui/status.js'

function server(name: string, zone: string): Server {
  return {name, address: '', zone, weight: 1, state: 'active'}
}

function topology(copies: number, servers: Server[]): Topology {
  return {algorithm: PLACEMENT_ALGORITHM_VERSION, copies, servers, domains: []}
}

describe('clusterStatus', () => {
  let dir: string
  let store: SqliteStore
  beforeEach(async () => {
    dir = mkdtempSync(join(tmpdir(), 'mailring-status-'))
    store = (await SqliteStore.init(join(dir, 'cluster.db'))).store
  })
  afterEach(async () => {
    await store.close()
    rmSync(dir, {recursive: true, force: true})
  })

  it('without servers reads no placement and says how to add them', async () => {
    const outcome = await clusterStatus(store)
    expect(outcome.status).toMatchObject({store: store.location, users: 0, servers: [], lock: null})
    expect(outcome).toMatchObject({lockedBy: null, shortfall: [], warnings: [], summary: null})
    expect(statusWarnings(outcome)).toEqual([])
    expect(statusReport(outcome)).toEqual([
      'No servers yet: add them with `mailring node add` or `mailring topology apply -f FILE`.',
    ])
  })

  it('with too few servers for the copies names the shortfall and shows no table', async () => {
    await store.writeTopology(topology(2, [server('mx01', 'a')]))
    const outcome = await clusterStatus(store)
    expect(outcome.summary).toBeNull()
    expect(outcome.status.servers).toEqual([])
    expect(statusWarnings(outcome)).toEqual([
      '2 copies need 2 servers that are not draining; 1 available: lower copies or add servers (users can be added once there are enough)',
    ])
    expect(statusReport(outcome)).toEqual([])
  })

  it('shows every server with the same shares and moves as the plan', async () => {
    await store.writeTopology(topology(2, [server('mx01', 'a'), server('mx02', 'b'), server('mx03', 'c')]))
    await addUsers(
      store,
      Array.from({length: 200}, (_, i) => `user${i}@example.com`),
    )
    await addServer(store, server('mx04', 'c'))

    const outcome = await clusterStatus(store)
    const {plan, target} = await computePlan(store)
    const {status} = outcome
    expect(outcome.summary).toEqual(plan.summary)
    expect(status).toMatchObject({users: 200, pendingMoves: plan.summary.moves, pendingDrops: 0})
    expect(status.pendingMoves).toBeGreaterThan(0)
    expect(status.servers.map((s) => s.name)).toEqual(['mx01', 'mx02', 'mx03', 'mx04'])
    expect(status.servers.reduce((sum, s) => sum + s.primaries, 0)).toBe(200)
    expect(status.servers.reduce((sum, s) => sum + s.copies, 0)).toBe(400)
    const rows = new Map(planServerRows(plan, target).map((r) => [r.server, r]))
    for (const s of status.servers) {
      const row = rows.get(s.name)!
      expect([s.copies, s.targetCopies, s.share, s.targetShare, s.movesIn, s.movesOut]).toEqual([
        row.copiesBefore,
        row.copiesAfter,
        row.shareBefore,
        row.shareAfter,
        row.movesIn,
        row.movesOut,
      ])
    }
    const report = statusReport(outcome)
    expect(report).toHaveLength(2)
    expect(report[1]).toBe(
      `200 users, 400 copies (default 2 per user). Pending: ${status.pendingMoves} moves; see \`mailring rebalance --dry-run\`.`,
    )
  })

  it('names the lock holder before it reads the placement', async () => {
    await store.writeTopology(topology(1, [server('mx01', 'a')]))
    const lock = await store.acquireLock('rebalance')
    // When the placement cannot be read, what was read before it must already be out.
    vi.spyOn(store, 'scanPlacements').mockRejectedValue(new Error('disk gone'))
    const seen: StoreStatus[] = []
    await expect(clusterStatus(store, {onStore: (read) => seen.push(read)})).rejects.toThrow('disk gone')
    expect(seen).toHaveLength(1)
    expect(seen[0]!.lockedBy).toBe(describeHolder(lock.holder))
    expect(statusHeading(seen[0]!)).toEqual([
      `Store ${store.location} (schema ${seen[0]!.status.schemaVersion}, placement algorithm ${PLACEMENT_ALGORITHM_VERSION})`,
      `Locked by ${describeHolder(lock.holder)}`,
    ])
    await lock.release()
  })
})
