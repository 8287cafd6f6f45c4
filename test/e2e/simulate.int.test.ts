import {describe, expect, it} from 'vitest'

import {mkdtempSync, rmSync, writeFileSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'

import type {SimulateResult} from '../../src/commands/simulate.js'
import {runCli, type JsonEnvelope} from '../support/cli.js'

type Envelope = JsonEnvelope<SimulateResult>

async function simulateJson(args: string[], env?: Record<string, string | undefined>) {
  const run = await runCli<Envelope>(['simulate', ...args, '--json'], env ? {env} : {})
  return {...run, body: run.json!}
}

function expectOneLineError(run: {exitCode: number | null; stderr: string; stdout: string}, message: RegExp) {
  expect(run.exitCode).toBe(1)
  const lines = run.stderr.trimEnd().split('\n')
  expect(lines).toHaveLength(1)
  expect(lines[0]).toMatch(/^Error: /)
  expect(lines[0]).toMatch(message)
  expect(run.stderr).not.toMatch(/\n\s+at /)
  expect(run.stdout).toBe('')
}

describe('mailring simulate', () => {
  it('compares ring and pairs on a synthetic cluster, as JSON', async () => {
    const run = await simulateJson([
      '--servers',
      '10',
      '--users',
      '20000',
      '--replicas',
      '2',
      '--fail',
      '2',
      '--capacity',
      '10000',
    ])
    expect(run.exitCode).toBe(0)
    expect(run.stderr).toBe('')
    const {status, result, warnings} = run.body
    expect(status).toBe(0)
    expect(warnings).toEqual([])
    const r = result!
    expect(r.cluster).toMatchObject({source: 'synthetic', servers: 10, copies: 2, users: 20000, zones: []})
    expect(r.failure.mode).toBe('random')
    expect(r.failure.k).toBe(2)
    expect(r.failure.seed).toBe(1)
    expect(r.failure.servers).toHaveLength(2)
    // 2 of 10 servers fail, 2 copies: 1/45 of users expected offline, in both layouts.
    expect(r.ring.offline.expected).toBeCloseTo(1 / 45, 12)
    expect(r.pairs.offline.expected).toBeCloseTo(1 / 45, 12)
    expect(r.ring.offline.worstMethod).toBe('exact')
    expect(r.ring.offline.worstSetsEvaluated).toBe(45)
    expect(r.ring.offline.worst.servers).toHaveLength(2)
    expect(r.pairs.offline.worst.share).toBeGreaterThan(0.18)
    expect(r.ring.offline.worst.share).toBeLessThan(0.04)
    expect(r.pairs.pools[0]!.groups).toHaveLength(5)
    expect(r.capacity.tolerates).toBe('any 2 servers')
    expect(r.capacity.ring.method).toBe('exact')
    expect(r.capacity.ring.users!).toBeGreaterThan(r.capacity.pairs.users!)
    expect(r.capacity.pairs.users!).toBeLessThanOrEqual(50_000)
    expect(r.capacity.ratio).toBeCloseTo(r.capacity.ring.users! / r.capacity.pairs.users!, 3)
    expect(r.ring.load.perServer).toBeNull()
  })

  it('gives the same result for the same seed', async () => {
    const args = ['--servers', '30', '--users', '5000', '--fail', '3', '--seed', '9']
    const [a, b] = await Promise.all([simulateJson(args), simulateJson(args)])
    expect(a.stdout).toBe(b.stdout)
    expect(a.body.result!.failure.seed).toBe(9)
  })

  it('fails named servers and shows every server with --per-server', async () => {
    const first = await simulateJson(['--servers', '10', '--users', '10000', '--fail', '1'])
    const pair = first.body.result!.pairs.pools[0]!.groups[0]!
    const run = await simulateJson([
      '--servers',
      '10',
      '--users',
      '10000',
      '--fail',
      pair.join(','),
      '--per-server',
    ])
    expect(run.exitCode).toBe(0)
    const r = run.body.result!
    expect(r.failure).toMatchObject({mode: 'servers', k: 2, servers: pair})
    // The whole pair is gone: about a fifth of the users, all of that group's.
    expect(r.pairs.offline.chosen.share).toBeGreaterThan(0.15)
    expect(r.pairs.offline.chosen.share).toBeLessThan(0.25)
    expect(r.ring.offline.chosen.share).toBeLessThan(0.05)
    const rows = r.ring.load.perServer!
    expect(rows).toHaveLength(10)
    expect(rows.filter((row) => row.state === 'failed').map((row) => row.name)).toEqual(pair)
    for (const row of rows) expect(row.increase).toBe(row.after - row.before)
    expect(rows.reduce((sum, row) => sum + row.after, 0)).toBe(10_000 - r.ring.offline.chosen.users)
  })

  it('fails a zone and sizes capacity for the loss of any zone', async () => {
    const run = await simulateJson([
      '--servers',
      '12',
      '--zones',
      '3',
      '--replicas',
      '2',
      '--users',
      '12000',
      '--fail-zone',
      'z2',
      '--capacity',
      '2000',
    ])
    expect(run.exitCode).toBe(0)
    const r = run.body.result!
    expect(r.cluster.zones).toEqual(['z1', 'z2', 'z3'])
    expect(r.failure).toMatchObject({mode: 'zone', zone: 'z2', k: 4})
    // Copies are in different zones in both layouts: a zone failure takes nobody offline.
    expect(r.ring.offline.chosen.users).toBe(0)
    expect(r.pairs.offline.chosen.users).toBe(0)
    expect(r.capacity.tolerates).toBe('any one zone')
    expect(r.capacity.ring.setsEvaluated).toBe(3)
    expect(['z1', 'z2', 'z3']).toContain(r.capacity.ring.worstZone)
  })

  it('counts down servers as failed and leaves draining servers out', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'mailring-simulate-'))
    try {
      const file = join(dir, 'topology.yaml')
      writeFileSync(
        file,
        [
          'copies: 2',
          'servers:',
          ...['a1', 'a2', 'a3', 'b1', 'b2', 'b3'].map((name) => `  - {name: ${name}, zone: ${name[0]}}`),
          '  - {name: c1, zone: c, state: down}',
          '  - {name: c2, zone: c, state: draining}',
          '',
        ].join('\n'),
      )
      const run = await simulateJson(['-t', file, '--users', '6000', '--fail', 'a1,c1'])
      expect(run.exitCode).toBe(0)
      const {result, warnings} = run.body
      expect(warnings.join(' ')).toMatch(/c1 already down/)
      expect(result!.cluster).toMatchObject({servers: 7, down: ['c1'], draining: ['c2']})
      expect(result!.failure).toMatchObject({k: 1, servers: ['a1']})
      expect(result!.notes.join(' ')).toMatch(/already down \(c1\)/)
      // Users with copies on c1 and a1 are offline; nobody is placed on the draining c2.
      expect(result!.ring.offline.chosen.users).toBeGreaterThan(0)
      const groups = result!.pairs.pools[0]!.groups.flat()
      expect(groups).not.toContain('c2')
      expect(groups).toHaveLength(7)

      const draining = await runCli(['simulate', '-t', file, '--fail', 'c2'])
      expectOneLineError(draining, /draining servers hold no copies/)
    } finally {
      rmSync(dir, {recursive: true, force: true})
    }
  })

  it('reads a topology file from MAILRING_TOPOLOGY, and --servers overrides that variable', async () => {
    const fromFile = await simulateJson(['--users', '6000', '--fail', 'mx01'], {
      MAILRING_TOPOLOGY: 'examples/cluster.yaml',
    })
    expect(fromFile.exitCode).toBe(0)
    const r = fromFile.body.result!
    expect(r.cluster.source).toBe('topology')
    expect(r.cluster.servers).toBe(12)
    expect(r.cluster.domains).toEqual(['sim.example', 'archive.example.net', 'example.com'])
    expect(r.notes.join(' ')).toMatch(/3 domains/)
    expect(r.pairs.pools.map((pool) => pool.copies).sort()).toEqual([2, 2, 3])

    const synthetic = await simulateJson(['--servers', '5', '--users', '1000'], {
      MAILRING_TOPOLOGY: 'examples/cluster.yaml',
    })
    expect(synthetic.exitCode).toBe(0)
    expect(synthetic.body.result!.cluster.source).toBe('synthetic')
  })

  it('prints tables on a terminal', async () => {
    const run = await runCli([
      'simulate',
      '--servers',
      '10',
      '--users',
      '10000',
      '--fail',
      '2',
      '--capacity',
      '1000',
    ])
    expect(run.exitCode).toBe(0)
    expect(run.stdout).toMatch(/RING\s+PAIRS/)
    expect(run.stdout).toMatch(/Offline, expected over any 2\s+2\.22%\s+2\.22%/)
    expect(run.stdout).toMatch(/Capacity, tolerating any 2 servers/)
    expect(run.stdout).toMatch(/^Pairs: /m)
    expect(run.json).toBeUndefined()
  })

  it('runs a million users on 100 servers well within a minute', async () => {
    const run = await simulateJson([
      '--servers',
      '100',
      '--users',
      '1000000',
      '--replicas',
      '3',
      '--fail',
      '2',
    ])
    expect(run.exitCode).toBe(0)
    expect(run.elapsedMs).toBeLessThan(45_000)
    const r = run.body.result!
    expect(r.ring.offline.expected).toBe(0)
    expect(r.capacity.ring.method).toBe('exact')
    expect(r.capacity.ring.setsEvaluated).toBe(4950)
    // Its own timeout: on a busy machine the elapsed-time check, not the test runner, should report.
  }, 120_000)

  const bad: [string, string[], RegExp][] = [
    ['no cluster', [], /No cluster given/],
    ['an unknown server', ['--servers', '10', '--fail', 's01,s99'], /Unknown server in --fail: s99/],
    ['as many failures as servers', ['--servers', '10', '--fail', '10'], /Cannot fail 10 of 10/],
    ['more zones than servers', ['--servers', '4', '--zones', '5'], /--zones 5 is more than --servers 4/],
    [
      'more replicas than servers',
      ['--servers', '2', '--replicas', '3'],
      /--replicas 3 is more than --servers 2/,
    ],
    ['zero servers', ['--servers', '0'], /--servers must be a whole number/],
    ['zero users', ['--servers', '10', '--users', '0'], /--users must be a whole number/],
    ['zero capacity', ['--servers', '10', '--capacity', '0'], /--capacity must be a positive number/],
    ['a negative failure count', ['--servers', '10', '--fail=-1'], /--fail must be a whole number/],
    ['an unknown zone', ['--servers', '10', '--zones', '2', '--fail-zone', 'nope'], /Unknown zone "nope"/],
    ['a zone without zones', ['--servers', '10', '--fail-zone', 'z1'], /no zones/],
    [
      'both --fail and --fail-zone',
      ['--servers', '10', '--zones', '2', '--fail', '1', '--fail-zone', 'z1'],
      /Give --fail or --fail-zone, not both/,
    ],
    ['a non-number', ['--servers', 'ten'], /ten/],
    ['a missing topology file', ['--topology', 'no/such.yaml'], /Cannot read topology file no\/such\.yaml/],
    ['a topology and --servers', ['--topology', 'examples/cluster.yaml', '--servers', '3'], /not both/],
    [
      '--zones with a topology',
      ['--topology', 'examples/cluster.yaml', '--zones', '3'],
      /--zones applies to a synthetic/,
    ],
  ]

  it.concurrent.each(bad)('rejects %s with one line and exit 1', async (_, args, message) => {
    const run = await runCli(['simulate', ...args])
    expectOneLineError(run, message)
  })

  it('reports bad input in the JSON envelope with --json', async () => {
    const run = await simulateJson(['--servers', '10', '--fail', 's99'])
    expect(run.exitCode).toBe(1)
    expect(run.body.status).toBe(1)
    expect(run.body.error!.message).toMatch(/Unknown server in --fail: s99/)
    expect(run.body.result).toBeUndefined()
  })
})
