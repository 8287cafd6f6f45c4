/**
 * The rendered Dovecot 2.4 SQL configuration, read by REAL Dovecot 2.4 (Debian 13's, test/support/dovecot24.ts)
 * through its sqlite driver straight from a mailring SQLite store built with the store API, as
 * dovecot-sql.int.test.ts proves the 2.3 form on 2.3:
 * - the file is `!include`d by dovecot.conf (after dovecot_config_version, which only dovecot.conf may set);
 * - `doveadm user` on server A finds exactly the users with a copy on A, a user without a copy there is not
 *   found, the userdb iteration lists only A's users;
 * - the proxy passdb sends a login to the first copy, and to the second once the first server is down:
 *   in `doveadm auth lookup`, and for a real IMAP login and a real LMTP delivery (`lmtp_proxy = yes`)
 *   through a 2.4 proxy to 2.4 backends.
 */
import * as fs from 'node:fs'
import * as path from 'node:path'

import {afterAll, beforeAll, expect, it} from 'vitest'

import {renderFor} from '../../src/engine/dovecot-config/render.js'
import {type DovecotContext} from '../../src/engine/context.js'
import {SqliteStore} from '../../src/store/sqlite.js'
import {reserveDovecotAddress, startDovecot, type DovecotHost} from '../support/dovecot.js'
import {describeDovecot24} from '../support/dovecot24.js'
import {makeTempDir, removeDir, run} from '../support/proc.js'
import {
  CLUSTER_USERS,
  listUsers,
  proxyHost,
  sqliteCluster,
  userFields,
  whileDown,
} from '../support/store-cluster.js'

const C_ADDRESS = '127.0.0.1' // a server with no Dovecot in this test (only named as a proxy host)
const USERS = CLUSTER_USERS

describeDovecot24('the rendered 2.4 SQL configuration on Dovecot 2.4', () => {
  let dir: string
  let store: SqliteStore
  let ctx: DovecotContext
  let a: DovecotHost
  let b: DovecotHost
  let proxy: DovecotHost

  beforeAll(async () => {
    dir = makeTempDir('mr-dovecot-sql24')
    const [ra, rb, rp] = [
      await reserveDovecotAddress(),
      await reserveDovecotAddress(),
      await reserveDovecotAddress(),
    ]
    // The proxy passdb names a host, not a port. Seen on 2.4.1: an IMAP proxy then connects to port 143,
    // an LMTP proxy to the port its own client connected to. So every host takes IMAP's and LMTP's own
    // ports on its address.
    for (const r of [ra, rb, rp]) {
      r.imapPort = 143
      r.lmtpPort = 24
    }
    ;({store, ctx} = await sqliteCluster(dir, {a: ra.ip, b: rb.ip, c: C_ADDRESS}, {version: '2.4'}))
    const users = USERS.map(([user]) => ({user, password: 'pw'}))
    // The rendered file is included by dovecot.conf; it brings the userdb (and a passdb for proxies).
    const sqlFile = (server: string | undefined, home: string) => {
      ctx.settings.home = `${home}/%d/%n`
      const r = renderFor(ctx, server, server ? {} : {role: 'proxy'})
      expect(r.version).toBe('2.4')
      return r.rendered.text
    }
    const include = (c: {dir: string}) => `!include ${path.join(c.dir, 'mailring-sql.conf')}\n`
    const backend = (address: typeof ra, server: string) =>
      startDovecot({
        version: '2.4',
        address,
        users: users.map((u) => ({...u, password: `pw-${server}`})),
        files: (c) => ({'mailring-sql.conf': sqlFile(server, path.join(c.dir, 'home'))}),
        userdb: '',
        extraConfig: include,
      })
    ;[a, b] = await Promise.all([backend(ra, 'mx-a'), backend(rb, 'mx-b')])
    proxy = await startDovecot({
      version: '2.4',
      address: rp,
      files: {'mailring-sql.conf': sqlFile(undefined, '/nonexistent')},
      passdb: '',
      extraConfig: (c) => `${include(c)}lmtp_proxy = yes\n`,
    })
  })

  afterAll(async () => {
    await Promise.all([a?.stop(), b?.stop(), proxy?.stop()])
    await store?.close()
    if (dir) removeDir(dir)
  })

  it('doveconf reads the rendered file with its SQL settings', async () => {
    const conf = await run('/bin/sh', ['-c', `${a.command('doveconf')} -n -c ${a.configPath}`])
    expect(conf.exitCode, conf.stderr).toBe(0)
    expect(conf.stdout).toMatch(/^sql_driver = sqlite$/m)
    expect(conf.stdout).toMatch(/^userdb sql \{$/m)
  })

  it('finds exactly the users with a copy on the server, with their home', async () => {
    for (const user of ['alice@example.com', 'bob@example.com', 'carol@example.org', 'erin@example.net']) {
      const r = await userFields(a, user)
      expect(r.exitCode, `${user}: ${r.stderr} ${a.readLog().slice(-1500)}`).toBe(0)
      expect(r.fields.home).toBe(path.join(a.dir, 'home', user.split('@')[1]!, user.split('@')[0]!))
      expect(r.fields.uid).toBe(String(fs.statSync(a.mailDir).uid)) // vmail, as rendered
      expect(r.fields.mail_replica).toMatch(/^tcp:127\.0\.0\.\d+:12345$/) // still returned, unused by 2.4
    }
    expect((await userFields(b, 'dave@example.org')).exitCode).toBe(0)
    // Case-insensitive login names reach the canonical address.
    const mixed = await userFields(a, 'Alice@Example.COM')
    expect(mixed.exitCode, mixed.stderr).toBe(0)
    expect(mixed.fields.user).toBe('alice@example.com')
  })

  it('does not find a user without a copy on the server, nor an unknown one', async () => {
    for (const user of ['dave@example.org', 'nobody@example.com', "o'brien@example.com"]) {
      const r = await a.doveadm(['user', user])
      expect(r.exitCode, r.stdout + r.stderr).toBe(67)
    }
    expect((await b.doveadm(['user', 'carol@example.org'])).exitCode).toBe(67)
  })

  it('iterates only the users the server holds', async () => {
    const holds = (server: string) =>
      USERS.filter(([, copies]) => copies.includes(server))
        .map(([user]) => user)
        .sort()
    expect(await listUsers(a)).toEqual(holds('mx-a'))
    expect(await listUsers(b)).toEqual(holds('mx-b'))
    expect(holds('mx-a')).toHaveLength(4)
  })

  it('serves the users it finds: LMTP delivery and IMAP login through the rendered userdb', async () => {
    await a.deliver('carol@example.org', 'Subject: to carol on 2.4\r\n\r\nbody\r\n')
    const box = await a.imapListMessages('carol@example.org', 'pw-mx-a')
    expect(box.messages.map((m) => m.subject)).toEqual(['to carol on 2.4'])
    expect(fs.readdirSync(path.join(a.mailDir, 'example.org', 'carol', 'new'))).toHaveLength(1)
    await expect(a.deliver('dave@example.org', 'Subject: x\r\n\r\nx\r\n')).rejects.toThrow()
    // The userdb's mail_replica (the replicator's field, gone in 2.4) is taken without a complaint.
    expect(a.readLog()).not.toMatch(/(Warning|Error|Fatal):/)
  })

  it('the proxy passdb sends a login to the first copy, and to the second when the first is down', async () => {
    const host = (user: string) => proxyHost(proxy, user)
    const r = await proxy.doveadm(['auth', 'lookup', 'alice@example.com'])
    expect(r.exitCode, r.stdout + r.stderr + proxy.readLog().slice(-1500)).toBe(0)
    expect(r.stdout).toMatch(/proxy\s*:?\s+Y/i)
    expect(await host('alice@example.com')).toBe(a.ip)
    expect(await host('bob@example.com')).toBe(b.ip)
    await whileDown(store, 'mx-a', async () => {
      expect(await host('alice@example.com')).toBe(b.ip)
      expect(await host('carol@example.org')).toBe(C_ADDRESS)
    })
    expect(await host('alice@example.com')).toBe(a.ip)
    expect((await proxy.doveadm(['auth', 'lookup', 'nobody@example.com'])).exitCode).not.toBe(0)
  })

  it('an IMAP login through the 2.4 proxy lands on the first copy, and on the second when the first is down', async () => {
    // Each backend holds its own copy of alice's mail, and its own password for her (its passwd-file passdb
    // checks it: the proxy passdb says nopassword and passes the login on).
    await a.deliver('alice@example.com', 'Subject: on mx-a\r\n\r\nbody\r\n')
    await b.deliver('alice@example.com', 'Subject: on mx-b\r\n\r\nbody\r\n')
    const subjects = async (password: string) =>
      (await proxy.imapListMessages('alice@example.com', password)).messages.map((m) => m.subject)
    expect(await subjects('pw-mx-a')).toEqual(['on mx-a'])
    // The backend refuses mx-b's password after its auth_failure_delay (up to about 2 s): within the default
    // proxy_timeout (10 s), so the client is told the password is wrong. With proxy_timeout 2 that was a
    // race: seen both ways, once as "account temporarily unavailable" (docs/dovecot-facts.md).
    await expect(subjects('pw-mx-b')).rejects.toThrow(/AUTHENTICATIONFAILED/)
    await whileDown(store, 'mx-a', async () => {
      expect(await subjects('pw-mx-b')).toEqual(['on mx-b'])
    })
    for (const backend of [a, b])
      expect(proxy.readLog()).toContain(`proxy(alice@example.com,${backend.ip}:143): Started proxying`)
  })

  it('an LMTP delivery through the 2.4 proxy goes to the first copy, and to the second when the first is down', async () => {
    const inbox = async (host: DovecotHost, server: string) =>
      (await host.imapListMessages('bob@example.com', `pw-${server}`)).messages.map((m) => m.subject)
    // bob's copies: [mx-b, mx-a].
    await proxy.deliver('bob@example.com', 'Subject: via the proxy\r\n\r\nbody\r\n')
    expect(await inbox(b, 'mx-b')).toEqual(['via the proxy'])
    expect(await inbox(a, 'mx-a')).toEqual([])
    await whileDown(store, 'mx-b', async () => {
      await proxy.deliver('bob@example.com', 'Subject: via the proxy, mx-b down\r\n\r\nbody\r\n')
    })
    expect(await inbox(a, 'mx-a')).toEqual(['via the proxy, mx-b down'])
    expect(await inbox(b, 'mx-b')).toEqual(['via the proxy'])
    await expect(proxy.deliver('nobody@example.com', 'Subject: x\r\n\r\nx\r\n')).rejects.toThrow()
  })
})
