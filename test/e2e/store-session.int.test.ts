import {existsSync, readFileSync, writeFileSync} from 'node:fs'
import {join} from 'node:path'

import {afterAll, beforeAll, describe, expect, it} from 'vitest'

import {CliSandbox, someUsers} from '../support/cli-sandbox.js'

interface Summary {
  users: number
  moves: number
  minimumMoves: number
  drops: number
  usersAffected: number
}
interface RebalanceJson {
  summary: Summary
  fingerprint: string
  moves: {user: string; from: string | null; to: string | null}[]
  servers: {server: string; copiesBefore: number; copiesAfter: number; movesIn: number}[]
}

describe('a whole session on the embedded store', () => {
  const cli = new CliSandbox()
  const users = someUsers(1200)
  beforeAll(async () => {
    writeFileSync(join(cli.dir, 'users.txt'), `${users.join('\n')}\n`)
    expect((await cli.run(['init'])).code).toBe(0)
    for (const [name, zone] of [
      ['mx01', 'a'],
      ['mx02', 'a'],
      ['mx03', 'b'],
      ['mx04', 'b'],
      ['mx05', 'c'],
    ]) {
      const added = await cli.run([
        'node',
        'add',
        name!,
        '--zone',
        `rack-${zone}`,
        '--address',
        `${name}.example.net`,
      ])
      expect(added.stderr).not.toMatch(/Error/)
      expect(added.code).toBe(0)
    }
  })
  afterAll(() => cli.cleanup())

  it('imports users, each placed at once on its target servers', async () => {
    const imported = await cli.json<{imported: number}>(['users', 'import', 'users.txt'])
    expect(imported.code).toBe(0)
    expect(imported.body.result.imported).toBe(1200)

    const plan = await cli.run(['rebalance', '--dry-run', '--detailed-exitcode'])
    expect(plan.code).toBe(0)
    expect(plan.stdout).toContain('Nothing to move: all 1200 users are on their target servers.')

    const status = await cli.json<{
      users: number
      servers: {copies: number; primaries: number}[]
      pendingMoves: number
    }>(['status'])
    expect(status.body.result.users).toBe(1200)
    expect(status.body.result.pendingMoves).toBe(0)
    expect(status.body.result.servers.reduce((sum, s) => sum + s.copies, 0)).toBe(2400)
    expect(status.body.result.servers.reduce((sum, s) => sum + s.primaries, 0)).toBe(1200)

    const shown = await cli.json<{target: string[]; current: string[]; pendingMoves: unknown[]}>([
      'user',
      'show',
      'USER7@Mail.Example.DE',
    ])
    expect(shown.body.result.current).toEqual(shown.body.result.target)
    expect(shown.body.result.pendingMoves).toEqual([])
  })

  it('plans the moves onto an added server, saves the plan, and refuses it once stale', async () => {
    expect((await cli.run(['add-node', 'mx06', '--zone', 'rack-c'])).code).toBe(0)

    const dry = await cli.json<RebalanceJson>(['rebalance', '--dry-run'])
    expect(dry.code).toBe(0)
    const {summary, moves} = dry.body.result
    expect(summary.moves).toBeGreaterThan(100)
    expect(summary.moves).toBe(summary.minimumMoves)
    expect(moves).toHaveLength(summary.moves)
    expect(moves.every((move) => move.to !== null && move.from !== null)).toBe(true)
    // Zone rack-c grows, so some copies also move between the older servers; most go to mx06.
    const mx06 = dry.body.result.servers.find((s) => s.server === 'mx06')!
    expect(mx06.copiesBefore).toBe(0)
    expect(mx06.movesIn).toBe(mx06.copiesAfter)
    expect(mx06.movesIn).toBeGreaterThan(summary.moves / 2)

    const detailed = await cli.run(['rebalance', '--dry-run', '--detailed-exitcode'])
    expect(detailed.code).toBe(2)
    expect(detailed.stdout).toMatch(/ copies to move for .*: the fewest that reach the target placement /)
    expect(detailed.stdout).toMatch(/^The copies per server alone need at least \d+ moves /m)

    // A moved user: show tells its target, where it is now, and the pending move.
    const moved = moves[0]!
    const shown = await cli.json<{target: string[]; current: string[]; pendingMoves: unknown[]}>([
      'user',
      'show',
      moved.user,
    ])
    expect(shown.body.result.target).toContain(moved.to)
    expect(shown.body.result.current).toContain(moved.from)
    expect(shown.body.result.pendingMoves).toEqual([moved])

    const saved = await cli.run(['rebalance', '--dry-run', '--out', 'plan.json'])
    expect(saved.code).toBe(0)
    const file = JSON.parse(readFileSync(join(cli.dir, 'plan.json'), 'utf8'))
    expect(file).toMatchObject({format: 'mailring-plan', fingerprint: dry.body.result.fingerprint})
    expect(file.moves).toEqual(moves)
    expect((await cli.run(['rebalance', '--dry-run', '--plan', 'plan.json'])).code).toBe(0)

    // Executing moves mail: not without confirmation (no terminal here, no --yes).
    const execute = await cli.run(['rebalance', '--plan', 'plan.json'])
    expect(execute.code).toBe(1)
    expect(execute.stderr).toMatch(/^Error: rebalance needs confirmation .*pass --yes/)

    // A new user changes the placement: the saved plan is stale now.
    expect((await cli.run(['user', 'add', 'late@example.com'])).code).toBe(0)
    const before = cli.dump()
    const stale = await cli.run(['rebalance', '--dry-run', '--plan', 'plan.json'])
    expect(stale.code).toBe(1)
    expect(stale.stderr.trim().split('\n')).toHaveLength(1)
    expect(stale.stderr).toMatch(
      /^Error: plan\.json is stale: the topology or the placement has changed since it was made/,
    )
    expect((await cli.run(['rebalance', '--plan', 'plan.json'])).stderr).toMatch(/plan\.json is stale/)
    expect(cli.dump()).toBe(before)
  })

  it('plans against a proposed topology file without applying it', async () => {
    const exported = await cli.run(['topology', 'export'])
    expect(exported.code).toBe(0)
    const proposal = exported.stdout.replace(
      /name: mx06\n(\s+)address: ""\n\s+zone: rack-c\n\s+weight: 1/,
      'name: mx06\n$1address: ""\n$1zone: rack-c\n$1weight: 3',
    )
    expect(proposal).not.toBe(exported.stdout)
    writeFileSync(join(cli.dir, 'proposal.yaml'), proposal)
    const before = cli.dump()
    const planned = await cli.json<RebalanceJson>(['rebalance', '--dry-run', '--topology', 'proposal.yaml'])
    expect(planned.code).toBe(0)
    const inStore = await cli.json<RebalanceJson>(['rebalance', '--dry-run'])
    expect(planned.body.result.summary.moves).toBeGreaterThan(inStore.body.result.summary.moves)
    expect(cli.dump()).toBe(before)

    const preview = await cli.run(['topology', 'apply', '-f', 'proposal.yaml'])
    expect(preview.code).toBe(0)
    expect(preview.stdout).toContain('~ server mx06: weight 1 -> 3')
    expect(preview.stdout).toContain('Not applied: run again with --yes to apply.')
    expect(cli.dump()).toBe(before)
    expect((await cli.run(['topology', 'apply', '-f', 'proposal.yaml', '--yes'])).code).toBe(0)
    expect((await cli.run(['topology', 'export'])).stdout).toBe(proposal)
  })

  it('drains a server that still holds copies instead of removing it, and removes it once empty', async () => {
    const removed = await cli.json<{removed: boolean; copiesLeft: number}>(['node', 'remove', 'mx01'])
    expect(removed.code).toBe(0)
    expect(removed.body.result.removed).toBe(false)
    expect(removed.body.result.copiesLeft).toBeGreaterThan(0)
    expect(removed.body.warnings[0]).toMatch(
      /mx01 still holds \d+ copies, so it is not removed: it is draining now/,
    )
    const list = await cli.json<{servers: {name: string; state: string}[]}>(['node', 'list'])
    expect(list.body.result.servers.find((s) => s.name === 'mx01')!.state).toBe('draining')
    const plan = await cli.json<RebalanceJson>(['rebalance', '--dry-run'])
    expect(plan.body.result.servers.find((s) => s.server === 'mx01')!.copiesAfter).toBe(0)

    // A server without copies goes at once.
    expect((await cli.run(['node', 'add', 'mx07'])).code).toBe(0)
    const empty = await cli.json<{removed: boolean}>(['node', 'remove', 'mx07'])
    expect(empty.body.result.removed).toBe(true)
    expect(
      (await cli.json<{servers: {name: string}[]}>(['node', 'list'])).body.result.servers.map((s) => s.name),
    ).not.toContain('mx07')
  })

  it('pins domains and sets their copy counts', async () => {
    const pinned = await cli.json<{domain: {servers: string[]}}>([
      'domain',
      'pin',
      'Archive.Example.NET',
      'mx03',
      'mx05',
    ])
    expect(pinned.code).toBe(0)
    expect(pinned.body.result.domain.servers).toEqual(['mx03', 'mx05'])
    expect((await cli.run(['domain', 'set', 'example.com', '--copies', '3'])).code).toBe(0)
    const list = await cli.json<{
      domains: {domain: string; servers: string[] | null; copies: number | null}[]
    }>(['domain', 'list'])
    expect(list.body.result.domains).toEqual([
      {domain: 'archive.example.net', servers: ['mx03', 'mx05'], copies: null, effectiveCopies: 2},
      {domain: 'example.com', servers: null, copies: 3, effectiveCopies: 3},
    ])
    const placed = await cli.json<{users: {servers: {name: string}[]; current: string[] | null}[]}>([
      'place',
      'user2@archive.example.net',
    ])
    expect(placed.body.result.users[0]!.servers.map((s) => s.name).sort()).toEqual(['mx03', 'mx05'])
    expect(placed.body.result.users[0]!.current).toHaveLength(2)

    const listed = await cli.json<{users: {user: string}[]}>([
      'users',
      'list',
      '--domain',
      'archive.example.net',
      '--limit',
      '5',
    ])
    expect(listed.body.result.users).toHaveLength(5)
    expect(listed.body.result.users.every((u) => u.user.endsWith('@archive.example.net'))).toBe(true)
    expect((await cli.run(['domain', 'unpin', 'archive.example.net'])).code).toBe(0)
    expect(existsSync(join(cli.dir, 'plan.json'))).toBe(true)
  })
})
