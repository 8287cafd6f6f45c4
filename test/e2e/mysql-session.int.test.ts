/**
 * A whole session of the built CLI on a real MariaDB, as production runs it: the store URL in
 * MAILRING_DB, the password only in MAILRING_DB_PASSWORD, the operator's users table named in the config
 * file. Adopts the seed's two-column hostA/hostB layout, syncs users, plans a rebalance.
 */
import {mkdtempSync, rmSync, writeFileSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'

import {afterAll, beforeAll, describe, expect, it} from 'vitest'

import {loadTopologyFile} from '../../src/config/topology-file.js'
import {Placement} from '../../src/core/placement.js'
import {startMariaDb, type MariaDb} from '../support/mariadb.js'
import {repoRoot, runCli} from '../support/cli.js'

interface Envelope<T> {
  status: number
  result: T
  error?: {code: string; message: string}
  warnings: string[]
}

describe('a session on MySQL/MariaDB: adopt a running hostA/hostB deployment, sync users, plan', () => {
  let db: MariaDb
  let dir: string
  let env: Record<string, string>
  const topology = loadTopologyFile(join(repoRoot, 'examples', 'cluster.yaml'))
  const placement = new Placement(topology)
  const addressOf = new Map(topology.servers.map((s) => [s.name, s.address]))
  const outputs: string[] = []

  const run = async (args: string[], extraEnv: Record<string, string> = {}) => {
    const result = await runCli(args, {cwd: dir, env: {...env, ...extraEnv}})
    outputs.push(result.stdout, result.stderr)
    return result
  }
  const json = async <T>(args: string[]): Promise<{code: number | null; body: Envelope<T>}> => {
    const result = await run([...args, '--json'])
    try {
      return {code: result.exitCode, body: JSON.parse(result.stdout) as Envelope<T>}
    } catch {
      throw new Error(`not JSON (exit ${result.exitCode}): ${result.stdout}\n${result.stderr}`)
    }
  }
  const definition = () => db.rootExec(`USE \`${db.database}\`; SHOW CREATE TABLE users`)

  // 200 users in the seed's layout: hostA/hostB hold server addresses. Users 0-119 sit on their target
  // servers already; 120-199 on a pair that is not their target; one names a server mailring doesn't know.
  const users = Array.from({length: 200}, (_, i) => `user${i}@example.org`)
  const misplaced = new Set<string>()
  const rows = users.map((user, i) => {
    const target = placement.serversFor(user)
    if (i < 120) return [user, addressOf.get(target[0]!)!, addressOf.get(target[1]!)!]
    // Two servers of different racks, neither of them a target.
    const others = topology.servers.filter((s) => !target.includes(s.name))
    const a = others.find((s) => s.zone === 'rack-a')!
    const b = others.find((s) => s.zone === 'rack-b')!
    misplaced.add(user)
    return [user, a.address, b.address]
  })
  rows.push(['stray@example.org', '203.0.113.99', addressOf.get('mx01')!])

  beforeAll(async () => {
    db = await startMariaDb()
    dir = mkdtempSync(join(tmpdir(), 'mailring-e2e-mysql-'))
    writeFileSync(join(dir, 'mailring.yaml'), 'users_table:\n  table: users\n  user_column: email\n')
    env = {
      HOME: dir,
      XDG_CONFIG_HOME: join(dir, 'config'),
      XDG_DATA_HOME: join(dir, 'data'),
      MAILRING_DB: db.url,
      MAILRING_DB_PASSWORD: db.password,
    }
    const values = rows.map(([user, a, b]) => `('${user}', '${a}', '${b}', 1024)`).join(', ')
    await db.rootExec(
      `USE \`${db.database}\`; CREATE TABLE users (email VARCHAR(255) NOT NULL PRIMARY KEY, password VARCHAR(128) NOT NULL DEFAULT '{PLAIN}x', hostA VARCHAR(64), hostB VARCHAR(64), quota_mb INT) ENGINE=InnoDB; INSERT INTO users (email, hostA, hostB, quota_mb) VALUES ${values};`,
    )
  })
  afterAll(async () => {
    await db?.stop()
    if (dir) rmSync(dir, {recursive: true, force: true})
  })

  it('creates the store, applies the topology, adopts the hostA/hostB columns, syncs and plans', async () => {
    const before = await definition()

    const init = await run(['init'])
    expect(init.stderr).toBe('')
    expect(init.exitCode).toBe(0)
    expect(init.stdout).toContain(`Created the mailring store mysql://mailring@127.0.0.1:${db.port}/mailring`)
    expect(
      (await run(['topology', 'apply', '-f', join(repoRoot, 'examples', 'cluster.yaml'), '--yes'])).exitCode,
    ).toBe(0)

    // One row names a server the cluster does not have: nothing is recorded unless it is skipped.
    const refused = await run(['adopt', '--from-columns', 'hostA,hostB', '--dry-run'])
    expect(refused.exitCode).toBe(1)
    expect(refused.stdout).toBe('')
    expect(refused.stderr.trim()).toBe(
      'Error: users: stray@example.org: unknown server "203.0.113.99" (mailring node list shows the servers): nothing recorded (fix it, or pass --skip-invalid to record the rest).',
    )
    const dry = await json<{
      recorded: number
      created: number
      users: {user: string; copies: string[]; new: boolean}[]
      skipped: {'unknown-server': number}
    }>(['adopt', '--from-columns', 'hostA,hostB', '--dry-run', '--skip-invalid'])
    expect(dry.code).toBe(0)
    expect(dry.body.result.recorded).toBe(200)
    expect(dry.body.result.created).toBe(200)
    expect(dry.body.result.skipped['unknown-server']).toBe(1)
    expect(dry.body.result.users.find((u) => u.user === 'user0@example.org')!.copies).toEqual(
      placement.serversFor('user0@example.org'),
    )
    expect((await json<{users: number}>(['status'])).body.result.users).toBe(0)

    const adopted = await json<{
      recorded: number
      created: number
      replaced: number
      problems: {where: string; kind: string; message: string}[]
    }>(['adopt', '--from-columns', 'hostA,hostB', '--skip-invalid'])
    expect(adopted.code).toBe(0)
    expect(adopted.body.result).toMatchObject({recorded: 200, created: 200, replaced: 0})
    expect(adopted.body.result.problems).toEqual([
      {
        where: 'users',
        kind: 'unknown-server',
        message: 'stray@example.org: unknown server "203.0.113.99" (mailring node list shows the servers)',
      },
    ])
    expect(adopted.body.warnings[0]).toMatch(
      /^users: stray@example\.org: unknown server "203\.0\.113\.99" .*\(skipped\)$/,
    )

    // Provisioning adds three users and removes two.
    await db.rootExec(
      `USE \`${db.database}\`; INSERT INTO users (email) VALUES ('new1@example.org'), ('New2@Example.ORG'), ('new3@example.org'); DELETE FROM users WHERE email IN ('user0@example.org', 'user199@example.org');`,
    )
    misplaced.delete('user199@example.org')
    const syncDry = await run(['users', 'sync', '--dry-run'])
    expect(syncDry.exitCode).toBe(0)
    expect(syncDry.stdout).toContain('Would place 4 new users and retire 2')
    const sync = await json<{added: number; retired: number; addedUsers: string[]; retiredUsers: string[]}>([
      'users',
      'sync',
    ])
    expect(sync.code).toBe(0)
    expect(sync.body.result).toMatchObject({
      added: 4,
      retired: 2,
      addedUsers: ['new1@example.org', 'new2@example.org', 'new3@example.org', 'stray@example.org'],
      retiredUsers: ['user0@example.org', 'user199@example.org'],
    })
    expect((await json<{added: number; retired: number}>(['users', 'sync'])).body.result).toMatchObject({
      added: 0,
      retired: 0,
    })

    const plan = await json<{
      summary: {users: number; moves: number; minimumMoves: number}
      moves: {user: string}[]
    }>(['rebalance', '--dry-run'])
    expect(plan.code).toBe(0)
    expect(plan.body.result.summary.users).toBe(202)
    expect(new Set(plan.body.result.moves.map((m) => m.user))).toEqual(misplaced)
    expect(plan.body.result.summary.moves).toBe(plan.body.result.summary.minimumMoves)

    const status = await json<{users: number; pendingMoves: number; store: string}>(['status'])
    expect(status.code).toBe(0)
    expect(status.body.result).toMatchObject({users: 202, pendingMoves: plan.body.result.summary.moves})

    expect(await definition()).toBe(before)
    for (const text of outputs) expect(text).not.toContain(db.password)
  })

  it('refuses bad input with one line and its exit code, and never prints the password', async () => {
    const wrong = await run(['status'], {MAILRING_DB_PASSWORD: 'Not-The-Password-1'})
    expect(wrong.exitCode).toBe(4)
    expect(wrong.stderr.trim().split('\n')).toHaveLength(1)
    expect(wrong.stderr).toMatch(
      /^Error: The MySQL\/MariaDB server at 127\.0\.0\.1:\d+ refused user mailring \(access denied\)/,
    )
    expect(wrong.stderr).not.toContain('Not-The-Password-1')

    const inUrl = await run([
      'status',
      '--db',
      `mysql://mailring:${db.password}@127.0.0.1:${db.port}/mailring`,
    ])
    expect(inUrl.exitCode).toBe(4)
    expect(inUrl.stderr).toMatch(/the store URL holds a password.*MAILRING_DB_PASSWORD/)
    expect(inUrl.stderr).not.toContain(db.password)

    const before = await definition()
    const column = await run(['adopt', '--from-columns', 'hostA,hostC'])
    expect(column.exitCode).toBe(1)
    expect(column.stderr.trim()).toMatch(
      /^Error: --from-columns: the users table `users` has no column `hostC`/,
    )
    writeFileSync(join(dir, 'other.yaml'), 'users_table: {table: accounts, user_column: email}\n')
    const table = await run(['users', 'sync', '--config', 'other.yaml'])
    expect(table.exitCode).toBe(1)
    expect(table.stderr.trim()).toMatch(
      /^Error: .*other\.yaml:1: users_table: the users table `accounts` does not exist/,
    )
    expect(await definition()).toBe(before)
    expect((await json<{users: number}>(['status'])).body.result.users).toBe(202)
  })
})
