import {once} from 'node:events'
import {hostname} from 'node:os'

import {afterAll, beforeAll, describe, expect, it} from 'vitest'

import {CliSandbox} from '../support/cli-sandbox.js'

describe('two mailring processes at once', () => {
  const cli = new CliSandbox()
  beforeAll(async () => {
    expect((await cli.run(['init'])).code).toBe(0)
    for (const name of ['mx01', 'mx02', 'mx03']) expect((await cli.run(['node', 'add', name])).code).toBe(0)
  })
  afterAll(() => cli.cleanup())

  it('the second waits for no one: it is refused with exit code 3, naming the holder, and writes nothing', async () => {
    // An import from stdin holds the cluster lock until its input ends.
    const importer = await cli.startLockHolder()
    importer.stdin.write('first@example.com\n')
    const holderPid = importer.pid!
    const before = cli.dump()

    const refused = await cli.run(['add-node', 'mx04'])
    expect(refused.code).toBe(3)
    expect(refused.stdout).toBe('')
    expect(refused.stderr.trim()).toMatch(
      new RegExp(
        `^Error: The cluster is locked by "mailring users import stdin" \\(pid ${holderPid} on ${hostname()}, since [0-9T:.Z-]+\\): wait for it to finish and try again \\(--wait 5m waits for it\\)\\.$`,
      ),
    )
    const json = await cli.json<unknown>(['user', 'add', 'second@example.com'])
    expect(json.code).toBe(3)
    expect(json.body.error?.code).toBe('locked')
    expect(cli.dump()).toBe(before)

    // Reading needs no lock.
    expect((await cli.run(['node', 'list'])).code).toBe(0)

    importer.stdin.end('third@example.com\n')
    const [code] = await once(importer, 'exit')
    expect(code).toBe(0)
    const listed = await cli.json<{users: {user: string}[]}>(['users', 'list'])
    expect(listed.body.result.users.map((u) => u.user)).toEqual(['first@example.com', 'third@example.com'])
    expect((await cli.run(['add-node', 'mx04'])).code).toBe(0)
  })

  it('a lock left by a process that died is taken over, with a warning', async () => {
    const crashed = await cli.startLockHolder()
    crashed.kill('SIGKILL')
    await once(crashed, 'exit')
    const next = await cli.run(['node', 'add', 'mx05'])
    expect(next.code).toBe(0)
    expect(next.stderr).toMatch(
      new RegExp(
        `Warning: took over the cluster lock left by "mailring users import stdin" \\(pid ${crashed.pid} on ${hostname()}`,
      ),
    )
  })
})
