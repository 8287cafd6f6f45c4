/**
 * The rendered SQL configuration, read by REAL Dovecot 2.3 instances (test/support/dovecot.ts) through
 * Dovecot's sqlite driver straight from a mailring SQLite store built with the store API:
 * - `doveadm user` on server A finds exactly the users with a copy on A, each with mail_replica = the next
 *   copy after A in its list (wrapping around); a user without a copy on A is not found;
 * - the userdb iteration lists only A's users;
 * (the stock replicator driven by this configuration is tested in replication.int.test.ts, on its own);
 * - the proxy passdb sends a login to the first copy, and to the second once the first server is down.
 */
import * as fs from 'node:fs'
import * as path from 'node:path'

import {afterAll, beforeAll, describe, expect, it} from 'vitest'

import {renderFor} from '../../src/engine/dovecot-config/render.js'
import {type DovecotContext} from '../../src/engine/context.js'
import {SqliteStore} from '../../src/store/sqlite.js'
import {reserveReplicaPair, startDovecot, type DovecotAddress, type DovecotHost} from '../support/dovecot.js'
import {makeTempDir, removeDir} from '../support/proc.js'
import {
  CLUSTER_USERS,
  listUsers,
  proxyHost,
  sqliteCluster,
  userFields,
  whileDown,
} from '../support/store-cluster.js'

let dir: string
let store: SqliteStore
let ctx: DovecotContext
let a: DovecotHost
let b: DovecotHost
let proxy: DovecotHost
const C_ADDRESS = '127.0.0.1' // a server with no Dovecot in this test (only named in mail_replica and host)

const PASSWORD = 'pw-secret'
const USERS = CLUSTER_USERS

function sqlFile(ctxHome: string, server: string): string {
  ctx.settings.home = `${ctxHome}/%d/%n`
  return renderFor(ctx, server).rendered.text
}

beforeAll(async () => {
  dir = makeTempDir('mr-dovecot-sql')
  fs.chmodSync(dir, 0o755)
  const [ra, rb, port] = await reserveReplicaPair()

  ;({store, ctx} = await sqliteCluster(dir, {a: ra.ip, b: rb.ip, c: C_ADDRESS}, {doveadmPort: port}))
  const users = USERS.map(([user]) => ({user, password: PASSWORD}))
  const backend = (address: DovecotAddress, server: string) =>
    startDovecot({
      address,
      users,
      files: (c) => ({'dovecot-sql.conf.ext': sqlFile(path.join(c.dir, 'home'), server)}),
      userdb: (c) => `userdb {\n  driver = sql\n  args = ${path.join(c.dir, 'dovecot-sql.conf.ext')}\n}`,
    })
  // No replicator here: it would start syncing every user at once, also towards mx-c, where nothing listens.
  ;[a, b] = await Promise.all([backend(ra, 'mx-a'), backend(rb, 'mx-b')])
  const proxyFile = renderFor(ctx, undefined, {role: 'proxy'}).rendered.text
  proxy = await startDovecot({
    files: {'dovecot-sql-proxy.conf.ext': proxyFile},
    passdb: (c) => `passdb {\n  driver = sql\n  args = ${path.join(c.dir, 'dovecot-sql-proxy.conf.ext')}\n}`,
  })
})

afterAll(async () => {
  await Promise.all([a?.stop(), b?.stop(), proxy?.stop()])
  await store?.close()
  if (dir) removeDir(dir)
})

describe('Dovecot 2.3 userdb from the SQLite store', () => {
  it('finds exactly the users with a copy on the server, each with the next copy as mail_replica', async () => {
    const port = ctx.settings.doveadmPort
    const expected: Record<string, string> = {
      'alice@example.com': `tcp:${b.ip}:${port}`, // [a, b]: after a comes b
      'bob@example.com': `tcp:${b.ip}:${port}`, // [b, a]: after a wraps around to b
      'carol@example.org': `tcp:${C_ADDRESS}:${port}`, // [a, c]
      'erin@example.net': `tcp:${C_ADDRESS}:${port}`, // [c, b, a]: a is last, wraps to c
    }
    for (const [user, replica] of Object.entries(expected)) {
      const r = await userFields(a, user)
      expect(r.exitCode, `${user}: ${r.stderr} ${a.readLog().slice(-1500)}`).toBe(0)
      expect(r.fields.mail_replica).toBe(replica)
      expect(r.fields.home).toBe(path.join(a.dir, 'home', user.split('@')[1]!, user.split('@')[0]!))
      expect(r.fields.uid).toMatch(/^\d+$/)
    }
    // On B: erin's list is [c, b, a], so after b comes a.
    expect((await userFields(b, 'erin@example.net')).fields.mail_replica).toBe(`tcp:${a.ip}:${port}`)
    expect((await userFields(b, 'dave@example.org')).fields.mail_replica).toBe(`tcp:${C_ADDRESS}:${port}`)
    // Case-insensitive login names reach the canonical address.
    expect((await userFields(a, 'Alice@Example.COM')).fields.mail_replica).toBe(`tcp:${b.ip}:${port}`)
  })

  it('does not find a user without a copy on the server, nor an unknown one', async () => {
    for (const user of ['dave@example.org', 'nobody@example.com', "o'brien@example.com"]) {
      const r = await a.doveadm(['user', user])
      expect(r.exitCode, r.stdout + r.stderr).toBe(67)
      expect(r.stderr + r.stdout).toMatch(/doesn't exist|unknown user/i)
    }
    expect((await a.doveadm(['user', 'carol@example.org'])).exitCode).toBe(0)
    expect((await b.doveadm(['user', 'carol@example.org'])).exitCode).toBe(67)
  })

  it('knows a user moving here while its copy is copied and verified, and not before or after a cancel', async () => {
    // carol is on [a, c]; a rebalance moves her copy on c to b (docs/decisions/0002).
    await store.journalMoves('test-plan', [
      {user: 'carol@example.org', position: 1, from: 'mx-c', to: 'mx-b'},
    ])
    const [move] = await store.openMoves()
    expect((await b.doveadm(['user', 'carol@example.org'])).exitCode).toBe(67) // planned: not yet
    await store.setMoveState(move!.id, 'planned', 'copying')
    const copying = await userFields(b, 'carol@example.org')
    expect(copying.exitCode, copying.stderr).toBe(0)
    expect(copying.fields.mail_replica).toBe(`tcp:${C_ADDRESS}:${ctx.settings.doveadmPort}`)
    expect((await b.doveadm(['user', '*'])).stdout).toContain('carol@example.org')
    // Her current copies are unchanged: a still has her, with c as its replica.
    expect((await userFields(a, 'carol@example.org')).fields.mail_replica).toBe(
      `tcp:${C_ADDRESS}:${ctx.settings.doveadmPort}`,
    )
    await store.setMoveState(move!.id, 'copying', 'verified')
    expect((await b.doveadm(['user', 'carol@example.org'])).exitCode).toBe(0)
    expect(await store.cancelUnswitchedMoves()).toBe(1)
    expect((await b.doveadm(['user', 'carol@example.org'])).exitCode).toBe(67)
    expect((await b.doveadm(['user', '*'])).stdout).not.toContain('carol@example.org')
  })

  it('iterates only the users the server holds', async () => {
    expect(await listUsers(a)).toEqual([
      'alice@example.com',
      'bob@example.com',
      'carol@example.org',
      'erin@example.net',
    ])
    expect(await listUsers(b)).toEqual([
      'alice@example.com',
      'bob@example.com',
      'dave@example.org',
      'erin@example.net',
    ])
  })
})

describe('Dovecot 2.3 userdb while a copy count changes', () => {
  it('knows a copy being added while it is copied and verified, and a dropped copy until it is retired', async () => {
    const port = ctx.settings.doveadmPort
    const carol = 'carol@example.org'
    // carol is on [a, c]; a higher copy count adds a copy on b at the end (no `from`).
    await store.journalMoves('test-plan', [{user: carol, position: 2, from: null, to: 'mx-b'}])
    const [add] = await store.openMoves()
    expect((await b.doveadm(['user', carol])).exitCode).toBe(67) // planned: not yet
    await store.setMoveState(add!.id, 'planned', 'copying')
    const copying = await userFields(b, carol)
    expect(copying.exitCode, copying.stderr).toBe(0)
    expect(copying.fields.mail_replica).toBe(`tcp:${a.ip}:${port}`) // no other end: her first copy
    expect(await listUsers(b)).toContain(carol)
    await store.setMoveState(add!.id, 'copying', 'verified')
    await store.switchMove(add!.id)
    expect((await store.getUser(carol))?.copies).toEqual(['mx-a', 'mx-c', 'mx-b'])
    expect((await userFields(b, carol)).fields.mail_replica).toBe(`tcp:${a.ip}:${port}`) // b is last: wraps
    await store.setMoveState(add!.id, 'switched', 'caught-up')
    await store.retireMove(add!.id, null)
    expect((await userFields(b, carol)).exitCode).toBe(0)

    // A lower copy count drops her copy on a (no `to`): a knows her until the retire.
    await store.journalMoves('test-plan', [{user: carol, position: 0, from: 'mx-a', to: null}])
    const [drop] = await store.openMoves()
    await store.setMoveState(drop!.id, 'planned', 'verified')
    expect((await userFields(a, carol)).fields.mail_replica).toBe(`tcp:${C_ADDRESS}:${port}`)
    await store.switchMove(drop!.id)
    expect((await store.getUser(carol))?.copies).toEqual(['mx-c', 'mx-b'])
    const switched = await userFields(a, carol)
    expect(switched.exitCode, switched.stderr).toBe(0)
    expect(switched.fields.mail_replica).toBe(`tcp:${C_ADDRESS}:${port}`) // her first copy now
    expect(await listUsers(a)).toContain(carol)
    await store.setMoveState(drop!.id, 'switched', 'caught-up')
    expect((await userFields(a, carol)).exitCode).toBe(0)
    await store.retireMove(drop!.id, '/trash/carol')
    expect((await a.doveadm(['user', carol])).exitCode).toBe(67)
    expect(await listUsers(a)).not.toContain(carol)
    expect((await userFields(b, carol)).fields.mail_replica).toBe(`tcp:${C_ADDRESS}:${port}`)
  })
})

describe('the proxy passdb', () => {
  it('sends a login to the first copy, and to the second when the first server is down', async () => {
    const r = await proxy.doveadm(['auth', 'lookup', 'alice@example.com'])
    expect(r.stdout).toMatch(/proxy\s*:\s*Y/i)
    expect(r.stdout).toMatch(/proxy_timeout\s*:\s*10/)
    expect(await proxyHost(proxy, 'alice@example.com')).toBe(a.ip)
    expect(await proxyHost(proxy, 'bob@example.com')).toBe(b.ip)
    await whileDown(store, 'mx-a', async () => {
      expect(await proxyHost(proxy, 'alice@example.com')).toBe(b.ip)
      expect(await proxyHost(proxy, 'bob@example.com')).toBe(b.ip)
      expect(await proxyHost(proxy, 'carol@example.org')).toBe(C_ADDRESS)
    })
    expect(await proxyHost(proxy, 'alice@example.com')).toBe(a.ip)
    expect((await proxy.doveadm(['auth', 'lookup', 'nobody@example.com'])).exitCode).not.toBe(0)
  })
})
