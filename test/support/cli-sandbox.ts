/**
 * A sandbox for end-to-end tests of the store commands: runs the built CLI (runCli of cli.js) against a
 * store in a temporary directory, and dumps that store so that a test can prove a refused command wrote
 * nothing.
 */
import {spawn, type ChildProcessWithoutNullStreams} from 'node:child_process'
import {mkdtempSync, rmSync, writeFileSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'

import Database from 'better-sqlite3'
import {expect} from 'vitest'

import {SqliteStore} from '../../src/store/sqlite.js'
import {repoRoot, runCli} from './cli.js'
import {refuseInUnitTier} from './tier.js'

const runJs = join(repoRoot, 'bin', 'run.js')

export interface CliRun {
  code: number
  stdout: string
  stderr: string
}

export class CliSandbox {
  readonly dir: string
  readonly dbPath: string
  readonly env: NodeJS.ProcessEnv

  constructor() {
    this.dir = mkdtempSync(join(tmpdir(), 'mailring-e2e-'))
    this.dbPath = join(this.dir, 'cluster.db')
    // Everything in the sandbox: no config file or store of the machine running the tests can leak in.
    this.env = {
      PATH: process.env.PATH,
      HOME: this.dir,
      XDG_CONFIG_HOME: join(this.dir, 'config'),
      XDG_DATA_HOME: join(this.dir, 'data'),
      NO_COLOR: '1',
      MAILRING_DB: `sqlite:${this.dbPath}`,
    }
  }

  async run(
    args: string[],
    options: {input?: string; env?: NodeJS.ProcessEnv; prefix?: readonly string[]} = {},
  ): Promise<CliRun> {
    const result = await runCli(args, {
      cwd: this.dir,
      env: {...this.env, ...options.env},
      input: options.input,
      ...(options.prefix ? {prefix: options.prefix} : {}),
    })
    return {code: result.exitCode ?? -1, stdout: result.stdout, stderr: result.stderr}
  }

  /** Runs and parses the --json envelope. */
  async json<T>(
    args: string[],
    options: {input?: string} = {},
  ): Promise<{
    code: number
    body: {status: number; result: T; error?: {code: string; message: string}; warnings: string[]}
  }> {
    const run = await this.run([...args, '--json'], options)
    try {
      return {code: run.code, body: JSON.parse(run.stdout)}
    } catch {
      throw new Error(`not JSON (exit ${run.code}): ${run.stdout}\n${run.stderr}`)
    }
  }

  /** Starts the CLI with stdin open, for a process that must stay busy. */
  start(args: string[]): ChildProcessWithoutNullStreams {
    refuseInUnitTier('running the built CLI')
    return spawn(process.execPath, [runJs, ...args], {cwd: this.dir, env: this.env})
  }

  /** Starts a CLI command that holds the cluster lock until its stdin ends; resolves once it holds it. */
  async startLockHolder(args: string[] = ['users', 'import', '-']): Promise<ChildProcessWithoutNullStreams> {
    const holder = this.start(args)
    const deadline = Date.now() + 30_000
    while (this.lockRow()?.pid !== holder.pid) {
      if (Date.now() > deadline) throw new Error(`${args.join(' ')} never took the lock`)
      await new Promise((resolve) => setTimeout(resolve, 100))
    }
    return holder
  }

  /** Holds the cluster lock from this test process, through the store API, as `mailring rebalance` would. */
  async holdLock(): Promise<{release: () => Promise<void>}> {
    const store = await SqliteStore.open(this.dbPath)
    const lock = await store.acquireLock('rebalance')
    return {
      release: async () => {
        await lock.release()
        await store.close()
      },
    }
  }

  /** The cluster lock's row, read straight from the file. */
  lockRow(): {pid: number; host: string; command: string} | undefined {
    const db = new Database(this.dbPath, {readonly: true})
    try {
      return db.prepare('SELECT pid, host, command FROM mailring_cluster_lock').get() as
        {pid: number; host: string; command: string} | undefined
    } finally {
      db.close()
    }
  }

  /** Every row of every table, in a fixed order: equal dumps mean an unchanged store. */
  dump(): string {
    const db = new Database(this.dbPath, {readonly: true})
    try {
      const tables = db
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
        .pluck()
        .all() as string[]
      return JSON.stringify(
        tables.map((table) => [table, db.prepare(`SELECT * FROM "${table}" ORDER BY 1, 2`).raw().all()]),
      )
    } finally {
      db.close()
    }
  }

  cleanup(): void {
    rmSync(this.dir, {recursive: true, force: true})
  }
}

/** `count` realistic addresses over a few domains. */
export function someUsers(count: number, offset = 0): string[] {
  const domains = ['example.com', 'example.org', 'archive.example.net', 'mail.example.de']
  return Array.from({length: count}, (_, i) => `user${i + offset}@${domains[(i + offset) % domains.length]}`)
}

/** A store with three servers (mx01..mx03) and `users` imported users, for bad-input tests. */
export async function seededSandbox(users: number): Promise<CliSandbox> {
  const cli = new CliSandbox()
  expect((await cli.run(['init'])).code).toBe(0)
  for (const name of ['mx01', 'mx02', 'mx03'])
    expect((await cli.run(['node', 'add', name, '--address', `${name}.example.net`])).code).toBe(0)
  writeFileSync(join(cli.dir, 'users.txt'), `${someUsers(users).join('\n')}\n`)
  expect((await cli.run(['users', 'import', 'users.txt'])).code).toBe(0)
  return cli
}

/** A refused command: the documented exit code, one line on stderr (`Error: ...`), nothing on stdout. */
export function expectRefused(run: CliRun, code: number, message: string | RegExp): void {
  expect(run.stdout).toBe('')
  expect(run.stderr.trim().split('\n')).toHaveLength(1)
  if (typeof message === 'string') expect(run.stderr.trim()).toBe(`Error: ${message}`)
  else {
    expect(run.stderr).toMatch(/^Error: /)
    expect(run.stderr).toMatch(message)
  }
  expect(run.code).toBe(code)
}
