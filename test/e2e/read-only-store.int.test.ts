/**
 * A store that the user may read but not write: monitoring accounts run `status`. Tests run as root, whom
 * file modes do not stop, so the CLI runs here as the unprivileged user nobody (setpriv), against a store
 * owned by root, mode 0644, in a folder of mode 0755.
 */
import {chmodSync, mkdirSync} from 'node:fs'
import {join} from 'node:path'

import Database from 'better-sqlite3'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'

import {expectRefused, seededSandbox, type CliSandbox} from '../support/cli-sandbox.js'

const asNobody = ['setpriv', '--reuid=nobody', '--regid=nogroup', '--clear-groups']

describe('a store the user may read but not write', () => {
  let cli: CliSandbox
  let before: string
  beforeAll(async () => {
    cli = await seededSandbox(30)
    chmodSync(cli.dir, 0o755)
    chmodSync(cli.dbPath, 0o644)
    before = cli.dump()
    // The user can really not write it: a store it could write would not prove anything.
    const probe = await cli.run(['node', 'add', 'mx09'], {prefix: asNobody})
    expect(probe.stderr).toMatch(/is read-only for user nobody/)
  })
  afterAll(() => cli.cleanup())

  const nobody = (args: string[]) => cli.run(args, {prefix: asNobody})

  it('serves every read-only command', async () => {
    const status = await nobody(['status'])
    expect(status.stderr).toBe('')
    expect(status.code).toBe(0)
    expect(status.stdout).toMatch(/^mx01 +active /m)
    const nodes = await nobody(['node', 'list'])
    expect(nodes.code).toBe(0)
    expect(nodes.stdout.trim().split('\n')).toHaveLength(4)
    const users = await nobody(['users', 'list', '--json'])
    expect(users.code).toBe(0)
    expect(JSON.parse(users.stdout).result.users).toHaveLength(30)
    for (const args of [
      ['topology', 'export'],
      ['domain', 'list'],
      ['user', 'show', 'user1@example.org'],
      ['place', 'user1@example.org'],
      ['rebalance', '--dry-run'],
      ['rebalance', 'status'],
      ['config', 'render', '--server', 'mx01'],
    ]) {
      const run = await nobody(args)
      expect(run.stderr, args.join(' ')).not.toMatch(/Error|read-only/)
      expect(run.code, args.join(' ')).toBe(0)
    }
    // init finds the store and changes nothing.
    const init = await nobody(['init'])
    expect(init.code).toBe(0)
    expect(init.stdout.trim()).toBe(
      `The mailring store sqlite:${cli.dbPath} exists already; nothing changed.`,
    )
    expect(cli.dump()).toBe(before)
  })

  it('reads it while another process has it open, through its -wal file', async () => {
    const writer = new Database(cli.dbPath)
    try {
      // A user in the -wal file only (not checkpointed while the writer is open): seen only through it.
      writer
        .prepare("INSERT INTO mailring_users (address, domain) VALUES ('wal@example.com', 'example.com')")
        .run()
      const status = await nobody(['status', '--json'])
      expect(status.code).toBe(0)
      expect(JSON.parse(status.stdout).result.users).toBe(31)
    } finally {
      writer.prepare("DELETE FROM mailring_users WHERE address = 'wal@example.com'").run()
      writer.close()
    }
    expect(cli.dump()).toBe(before)
  })

  it('refuses a change in one line that says the store is read-only and what to do', async () => {
    const readOnly = `Store sqlite:${cli.dbPath} is read-only for user nobody: run commands that change it as a user who may write ${cli.dbPath} and its folder ${cli.dir} (its owner), or give user nobody write access to both.`
    expectRefused(await nobody(['node', 'add', 'mx09']), 4, readOnly)
    expectRefused(await nobody(['user', 'add', 'fresh@example.com']), 4, readOnly)
    expectRefused(await nobody(['rebalance', 'cancel']), 4, readOnly)
    const json = JSON.parse((await nobody(['node', 'drain', 'mx01', '--json'])).stdout)
    expect(json).toEqual({status: 4, error: {code: 'store_read_only', message: readOnly}, warnings: []})
    expect(cli.dump()).toBe(before)
  })

  it('init in a folder the user cannot write names the cause', async () => {
    const folder = join(cli.dir, 'root-only')
    mkdirSync(folder, {mode: 0o755})
    const path = join(folder, 'cluster.db')
    expectRefused(
      await nobody(['init', '--db', `sqlite:${path}`]),
      4,
      `Cannot create the store ${path}: user nobody may not write its folder ${folder}: run mailring init as a user who may, or give another place with --db sqlite:PATH.`,
    )
    expectRefused(
      await nobody(['init', '--db', `sqlite:${join(folder, 'deeper', 'cluster.db')}`]),
      4,
      /: user nobody may not write the folder .*root-only: run mailring init as a user who may/,
    )
  })
})
