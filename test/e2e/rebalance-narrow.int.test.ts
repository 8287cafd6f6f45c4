/**
 * `rebalance --dry-run --server NAME` and `--user U` narrow the listed moves (issue 13), through the built
 * CLI on a store where an added server makes moves pending. Executing with them is proved on real Dovecot
 * servers in rebalance.int.test.ts; here, what is listed, the exit codes, and the refusals.
 */
import {afterAll, beforeAll, describe, expect, it} from 'vitest'

import type {RebalanceResult} from '../../src/commands/rebalance.js'
import {expectRefused, seededSandbox, type CliSandbox} from '../support/cli-sandbox.js'

let cli: CliSandbox
let all: RebalanceResult

beforeAll(async () => {
  cli = await seededSandbox(60)
  expect((await cli.run(['node', 'add', 'mx04', '--address', 'mx04.example.net'])).code).toBe(0)
  all = (await cli.json<RebalanceResult>(['rebalance', '--dry-run'])).body.result
  expect(all.moves.length).toBeGreaterThan(3)
})

afterAll(() => cli?.cleanup())

describe('rebalance --dry-run narrowed', () => {
  it('--server lists only the moves from or to it, and says how many of all', async () => {
    const fromMx01 = all.moves.filter((m) => m.from === 'mx01' || m.to === 'mx01')
    expect(fromMx01.length).toBeGreaterThan(0)
    expect(fromMx01.length).toBeLessThan(all.moves.length)
    const {body} = await cli.json<RebalanceResult>(['rebalance', '--dry-run', '--server', 'mx01'])
    expect(body.result.moves).toEqual(fromMx01)
    expect(body.result.narrowed).toEqual({servers: ['mx01'], users: []})
    expect(body.result.summary).toEqual(all.summary) // the plan itself is whole
    const text = await cli.run(['rebalance', '--dry-run', '--server', 'mx01', '--moves', '1000'])
    expect(text.stdout).toContain(`${fromMx01.length} of these moves involve mx01.`)
    for (const m of all.moves.filter((x) => !fromMx01.includes(x))) expect(text.stdout).not.toContain(m.user)
  })

  it('--user lists only that user, and --detailed-exitcode follows what is listed', async () => {
    const user = all.moves[0]!.user
    const {body} = await cli.json<RebalanceResult>(['rebalance', '--dry-run', '--user', user])
    expect(body.result.moves).toEqual(all.moves.filter((m) => m.user === user))
    expect((await cli.run(['rebalance', '--dry-run', '--user', user, '--detailed-exitcode'])).code).toBe(2)
    const still = (await cli.json<{users: {user: string}[]}>(['users', 'list'])).body.result.users
      .map((u) => u.user)
      .find((u) => !all.moves.some((m) => m.user === u))!
    expect((await cli.run(['rebalance', '--dry-run', '--user', still, '--detailed-exitcode'])).code).toBe(0)
  })

  it('refuses an unknown server or user, and narrowing a plan to be saved, in one line', async () => {
    expectRefused(
      await cli.run(['rebalance', '--dry-run', '--server', 'mx99']),
      1,
      /--server mx99: no such server/,
    )
    expectRefused(
      await cli.run(['rebalance', '--dry-run', '--user', 'nobody@example.com']),
      1,
      /--user nobody@example.com: no such user/,
    )
    const saved = await cli.run(['rebalance', '--dry-run', '--server', 'mx01', '--out', 'plan.json'])
    expect(saved.code).toBe(1)
    expect(saved.stderr).toMatch(/^Error: .*--out/)
  })
})
