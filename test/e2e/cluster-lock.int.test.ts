import {spawn} from 'node:child_process'
import {once} from 'node:events'
import {hostname} from 'node:os'
import {join} from 'node:path'

import Database from 'better-sqlite3'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'

import {repoRoot} from '../support/cli.js'
import {expectRefused, seededSandbox, type CliRun, type CliSandbox} from '../support/cli-sandbox.js'

const host = hostname()

/** Runs the built CLI on a terminal (util-linux `script` gives it one), typing `input`. */
async function onTerminal(cli: CliSandbox, args: string[], input: string): Promise<CliRun> {
  const command = [process.execPath, join(repoRoot, 'bin', 'run.js'), ...args].join(' ')
  const child = spawn('script', ['-qec', command, '/dev/null'], {cwd: cli.dir, env: cli.env})
  let stdout = ''
  child.stdout.on('data', (data: Buffer) => (stdout += data.toString()))
  child.stdin.end(input)
  const [code] = (await once(child, 'exit')) as [number]
  return {code, stdout: stdout.replaceAll('\r', ''), stderr: ''}
}

// One store for both: every test leaves the cluster unlocked.
let cli: CliSandbox
beforeAll(async () => {
  cli = await seededSandbox(10)
})
afterAll(() => cli.cleanup())

describe('mailring unlock', () => {
  it('says when there is nothing to unlock, and exits 0', async () => {
    const run = await cli.run(['unlock'])
    expect(run).toMatchObject({
      code: 0,
      stdout: 'The cluster is not locked: nothing to unlock.\n',
      stderr: '',
    })
    const json = await cli.json(['unlock'])
    expect(json.code).toBe(0)
    expect(json.body.result).toEqual({holder: null, holderRuns: null, outcome: 'not-locked'})
  })

  it('shows the holder of a lock left by a dead process, refuses without --yes and a terminal, breaks it with --yes', async () => {
    const crashed = await cli.startLockHolder()
    crashed.kill('SIGKILL')
    await once(crashed, 'exit')
    const holder = `"mailring users import stdin" \\(pid ${crashed.pid} on ${host}, since [0-9T:.Z-]+\\), which no longer runs`
    const before = cli.dump()

    expectRefused(
      await cli.run(['unlock']),
      1,
      new RegExp(
        `^Error: Not unlocked: the cluster lock is held by ${holder}; no terminal to confirm on: pass --yes to break it\\.\\n$`,
      ),
    )
    const refused = await cli.json(['unlock'])
    expect(refused.code).toBe(1)
    expect(refused.body.error?.code).toBe('not_confirmed')
    expect(cli.dump()).toBe(before)

    const json = await cli.json<{holder: unknown; holderRuns: string; outcome: string}>(['unlock', '--yes'])
    expect(json.code).toBe(0)
    expect(json.body.result).toEqual({
      holder: {pid: crashed.pid, host, command: 'users import stdin', since: expect.any(String)},
      holderRuns: 'no',
      outcome: 'unlocked',
    })
    expect(cli.lockRow()).toBeUndefined()
    // Broken, not left to be taken over: the next command has nothing to warn about.
    expect(await cli.run(['node', 'add', 'mx04'])).toMatchObject({code: 0, stderr: ''})
    expect((await cli.run(['node', 'remove', 'mx04'])).code).toBe(0)
  })

  it('asks on a terminal: no keeps the lock, yes breaks it', async () => {
    const crashed = await cli.startLockHolder()
    crashed.kill('SIGKILL')
    await once(crashed, 'exit')
    const held = `The cluster lock is held by "mailring users import stdin" (pid ${crashed.pid} on ${host}`

    const no = await onTerminal(cli, ['unlock'], 'n\n')
    expect(no.code).toBe(1)
    expect(no.stdout).toContain(held)
    expect(no.stdout).toContain('Break it? [y/N]')
    expect(no.stdout).toContain('Error: Not unlocked: not confirmed.')
    expect(cli.lockRow()?.pid).toBe(crashed.pid)

    const yes = await onTerminal(cli, ['unlock'], 'y\n')
    expect(yes.code).toBe(0)
    expect(yes.stdout).toContain(
      `Unlocked: broke the cluster lock of "mailring users import stdin" (pid ${crashed.pid} on ${host}`,
    )
    expect(cli.lockRow()).toBeUndefined()
  })

  it('refuses to break the lock of a process that still runs on this host', async () => {
    const held = await cli.holdLock()
    try {
      expectRefused(
        await cli.run(['unlock', '--yes']),
        3,
        new RegExp(
          `^Error: Not unlocked: "mailring rebalance" \\(pid ${process.pid} on ${host}, since [^)]+\\) still runs on this host: let it finish, or stop it \\(kill ${process.pid}\\), which frees its lock\\.\\n$`,
        ),
      )
      expect(cli.lockRow()?.pid).toBe(process.pid)
    } finally {
      await held.release()
    }
  })

  it('breaks a lock held from another host with --yes; its holder then stops before writing', async () => {
    const importer = await cli.startLockHolder()
    importer.stdin.write('late@example.com\n')
    // As if the import ran on another host (the store shared, e.g. MySQL): this one cannot see its process.
    const db = new Database(cli.dbPath)
    db.prepare("UPDATE mailring_cluster_lock SET host = 'mgmt2.example.net'").run()
    db.close()

    expectRefused(
      await cli.run(['node', 'add', 'mx05']),
      3,
      /on mgmt2\.example\.net, since [^)]+\): wait for it to finish and try again \(--wait 5m waits for it\); if it no longer runs, `mailring unlock` frees the lock\.\n$/,
    )
    expectRefused(
      await cli.run(['unlock']),
      1,
      /on mgmt2\.example\.net, since [^)]+\), a process on another host: whether it still runs cannot be checked from here; no terminal to confirm on: pass --yes to break it\.\n$/,
    )
    const json = await cli.json<{holderRuns: string; outcome: string}>(['unlock', '--yes'])
    expect(json.body.result).toMatchObject({holderRuns: 'unknown', outcome: 'unlocked'})

    const before = cli.dump()
    importer.stdin.end()
    let stderr = ''
    importer.stderr.on('data', (data: Buffer) => (stderr += data.toString()))
    const [code] = await once(importer, 'exit')
    expect(code).toBe(3)
    expect(stderr.trim()).toMatch(
      /^Error: Lost the cluster lock of "mailring users import stdin" \(pid \d+ on [^)]+\): `mailring unlock` broke it; stopped before writing anything more\. Run the command again\.$/,
    )
    expect(cli.dump()).toBe(before)
  })
})

describe('--wait DURATION on commands that take the cluster lock', () => {
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
