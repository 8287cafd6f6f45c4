import {mkdtempSync, rmSync} from 'node:fs'
import * as http from 'node:http'
import type {AddressInfo} from 'node:net'
import {tmpdir} from 'node:os'
import {join} from 'node:path'

import {afterEach, beforeEach, describe, expect, it, vi} from 'vitest'

import {PLACEMENT_ALGORITHM_VERSION, type Server, type Topology} from '../../../src/core/topology.js'
import {addServer, addUsers} from '../../../src/engine/cluster/cluster.js'
import {computePlan} from '../../../src/engine/rebalance/plan.js'
import type {DovecotContext} from '../../../src/engine/context.js'
import {clusterStatus, type StatusOutcome, type StoreStatus} from '../../../src/engine/cluster/status.js'
import {describeHolder} from '../../../src/store/aggregates/lock.js'
import {SqliteStore} from '../../../src/store/sqlite.js'
import {planServerRows} from '../../../src/ui/plan.js'
import {statusDoveadmWarnings, statusHeading, statusReport, statusWarnings} from '../../../src/ui/status.js'
import {contextFor} from '../../support/store-cluster.js'

function server(name: string, zone: string, more: Partial<Server> = {}): Server {
  return {name, address: '', zone, weight: 1, state: 'active', ...more}
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
    // Without the doveadm option nothing is probed and nothing of it shows.
    expect(outcome.doveadm).toBeNull()
    for (const s of status.servers) expect(s).not.toHaveProperty('doveadm')
    expect(statusDoveadmWarnings(outcome)).toEqual([])
    const report = statusReport(outcome)
    expect(report[0]!.split('\n')[0]).not.toContain('DOVEADM')
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

/**
 * A stand-in for a doveadm HTTP API on loopback: answers every command of a batch as doveadm does, or
 * refuses every request with 401 (a wrong password). A stand-in because these tests count the requests and
 * their order against the placement read; test/e2e/status-doveadm.int.test.ts runs `status --doveadm` against
 * real Dovecot servers.
 */
async function fakeDoveadm(
  answer: 'ok' | 'refuse',
): Promise<{server: http.Server; port: number; requests: string[]}> {
  const requests: string[] = []
  const server = http.createServer((req, res) => {
    let body = ''
    req.on('data', (chunk: Buffer) => (body += chunk.toString()))
    req.on('end', () => {
      requests.push(`${req.headers.authorization ?? ''} ${body}`)
      if (answer === 'refuse') return res.writeHead(401).end()
      const entries = JSON.parse(body) as [string, unknown, string][]
      res
        .writeHead(200, {'Content-Type': 'application/json'})
        .end(JSON.stringify(entries.map(([, , tag]) => ['doveadmResponse', [], tag])))
    })
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  return {server, port: (server.address() as AddressInfo).port, requests}
}

describe('clusterStatus with doveadm', () => {
  const PASSWORD = 'unit-test-doveadm-pw'
  let dir: string
  let store: SqliteStore
  let doveadm: Awaited<ReturnType<typeof fakeDoveadm>> | undefined
  beforeEach(async () => {
    dir = mkdtempSync(join(tmpdir(), 'mailring-status-'))
    store = (await SqliteStore.init(join(dir, 'cluster.db'))).store
  })
  afterEach(async () => {
    doveadm?.server.close()
    doveadm = undefined
    await store.close()
    rmSync(dir, {recursive: true, force: true})
  })

  async function context(port: number, env: NodeJS.ProcessEnv): Promise<DovecotContext> {
    const ctx = await contextFor(store, {kind: 'sqlite', path: join(dir, 'cluster.db'), source: 'test'})
    return {...ctx, doveadm: {...ctx.doveadm, httpPort: port, retries: 0, timeoutMs: 5000}, env}
  }

  function rowsOf(outcome: StatusOutcome): string[] {
    return statusReport(outcome)[0]!.split('\n')
  }

  it('probes every server that is not down, once, and says how each answered', async () => {
    doveadm = await fakeDoveadm('ok')
    await store.writeTopology(
      topology(1, [
        server('mx01', 'a', {address: '127.0.0.1'}),
        server('mx02', 'b'),
        server('mx03', 'c', {address: '127.0.0.3', state: 'down'}),
      ]),
    )
    await addUsers(
      store,
      Array.from({length: 30}, (_, i) => `user${i}@example.com`),
    )
    const ctx = await context(doveadm.port, {MAILRING_DOVEADM_PASSWORD: PASSWORD})
    // The heading first, then the probe, then the placement: a probe beside the placement read would time
    // the read (with SQLite it holds the process until it is done).
    const order: string[] = []
    const scan = store.scanPlacements.bind(store)
    vi.spyOn(store, 'scanPlacements').mockImplementation((chunkSize) => {
      order.push(`placement after ${doveadm!.requests.length} probes`)
      return scan(chunkSize)
    })
    const outcome = await clusterStatus(store, {doveadm: ctx, onStore: () => order.push('heading')})
    expect(order).toEqual(['heading', 'placement after 2 probes'])

    // mx01 only (a warm-up call, then the timed one): mx02 has no address, mx03 is down
    expect(doveadm.requests).toHaveLength(2)
    const byName = new Map(outcome.status.servers.map((s) => [s.name, s.doveadm]))
    expect(byName.get('mx01')).toEqual({state: 'ok', ms: expect.any(Number)})
    expect(Number.isInteger((byName.get('mx01') as {ms: number}).ms)).toBe(true)
    expect(byName.get('mx02')).toEqual({state: 'unreachable', reason: expect.stringContaining('no address')})
    expect(byName.get('mx03')).toEqual({state: 'down'})
    expect(outcome.doveadm!.map((d) => [d.server, d.state])).toEqual([
      ['mx01', 'ok'],
      ['mx02', 'unreachable'],
      ['mx03', 'down'],
    ])

    const rows = rowsOf(outcome)
    expect(rows[0]).toMatch(/OUT\s+DOVEADM$/)
    expect(rows[1]).toMatch(/^mx01 .* ok \d+ ms$/)
    expect(rows[2]).toMatch(/^mx02 .* unreachable$/)
    expect(rows[3]).toMatch(/^mx03 .* down$/)
    expect(statusDoveadmWarnings(outcome)).toEqual([
      'mx02 unreachable: mx02 has no address: set one with `mailring node set mx02 --address HOST`',
    ])
  })

  it('says refused when the password is wrong, and never shows it', async () => {
    doveadm = await fakeDoveadm('refuse')
    await store.writeTopology(topology(1, [server('mx01', 'a', {address: '127.0.0.1'})]))
    const ctx = await context(doveadm.port, {MAILRING_DOVEADM_PASSWORD: PASSWORD})
    const outcome = await clusterStatus(store, {doveadm: ctx})
    expect(outcome.status.servers[0]!.doveadm).toEqual({
      state: 'refused',
      reason: expect.stringContaining('the doveadm password was refused'),
    })
    const shown =
      JSON.stringify(outcome.status) +
      statusReport(outcome).join('\n') +
      statusDoveadmWarnings(outcome).join('\n')
    expect(shown).not.toContain(PASSWORD)
    expect(rowsOf(outcome)[1]).toMatch(/ refused$/)
  })

  it('fails before reading anything more when the doveadm password is not set', async () => {
    await store.writeTopology(topology(1, [server('mx01', 'a', {address: '127.0.0.1'})]))
    const ctx = await context(1, {})
    const seen: StoreStatus[] = []
    await expect(clusterStatus(store, {doveadm: ctx, onStore: (read) => seen.push(read)})).rejects.toThrow(
      /^The doveadm password is not set: set MAILRING_DOVEADM_PASSWORD/,
    )
    expect(seen).toEqual([])
  })

  it('with too few servers for a table still shows what doveadm said', async () => {
    doveadm = await fakeDoveadm('ok')
    await store.writeTopology(topology(2, [server('mx01', 'a', {address: '127.0.0.1'})]))
    const outcome = await clusterStatus(store, {
      doveadm: await context(doveadm.port, {MAILRING_DOVEADM_PASSWORD: PASSWORD}),
    })
    expect(outcome.status.servers).toEqual([])
    expect(outcome.doveadm).toEqual([{server: 'mx01', state: 'ok', ms: expect.any(Number)}])
    const rows = rowsOf(outcome)
    expect(rows[0]).toMatch(/^SERVER\s+STATE\s+ZONE\s+DOVEADM$/)
    expect(rows[1]).toMatch(/^mx01\s+active\s+a\s+ok \d+ ms$/)
  })
})
