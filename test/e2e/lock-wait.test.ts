import {hostname} from 'node:os'

import {afterAll, beforeAll, describe, expect, it} from 'vitest'

import {expectRefused, seededSandbox, type CliSandbox} from './store-helpers.js'

const host = hostname()

describe('--wait DURATION on commands that take the cluster lock', () => {
  let cli: CliSandbox
  beforeAll(async () => {
    cli = await seededSandbox(10)
  })
  afterAll(() => cli.cleanup())

  it('waits for a lock that another process releases while it waits', async () => {
    const held = await cli.holdLock()
    let finished = false
    const adding = cli.run(['node', 'add', 'mx04', '--wait', '30s']).finally(() => (finished = true))
    await new Promise((resolve) => setTimeout(resolve, 1_000))
    expect(finished).toBe(false)
    expect(cli.lockRow()?.pid).toBe(process.pid)
    await held.release()

    const run = await adding
    expect(run.code).toBe(0)
    expect(run.stdout).toContain('Added mx04.')
    const listed = await cli.json<{servers: {name: string}[]}>(['node', 'list'])
    expect(listed.body.result.servers.map((s) => s.name)).toContain('mx04')
    expect((await cli.run(['node', 'remove', 'mx04'])).code).toBe(0)
  })

  it('gives the locked error naming the holder when the time runs out, and writes nothing', async () => {
    const held = await cli.holdLock()
    try {
      const before = cli.dump()
      const run = await cli.run(['user', 'add', 'waiter@example.com', '--wait', '1s'])
      expectRefused(
        run,
        3,
        new RegExp(
          `^Error: The cluster is still locked by "mailring rebalance" \\(pid ${process.pid} on ${host}, since [^)]+\\) after waiting 1s: try again later\\.\\n$`,
        ),
      )
      const json = await cli.json(['node', 'drain', 'mx01', '--wait', '500ms'])
      expect(json.code).toBe(3)
      expect(json.body.error?.code).toBe('locked')
      expect(json.body.error?.message).toMatch(/after waiting 500ms/)
      expect(cli.dump()).toBe(before)
    } finally {
      await held.release()
    }
  })

  it('refuses a value that is not a duration, in one line', async () => {
    expectRefused(
      await cli.run(['node', 'add', 'mx09', '--wait', '5x']),
      1,
      '--wait "5x" is not a duration: use e.g. 30s, 5m or 1h',
    )
    const json = await cli.json(['users', 'import', 'users.txt', '--wait=soon'])
    expect(json.code).toBe(1)
    expect(json.body.error).toEqual({
      code: 'invalid_duration',
      message: '--wait "soon" is not a duration: use e.g. 30s, 5m or 1h',
    })
  })
})
