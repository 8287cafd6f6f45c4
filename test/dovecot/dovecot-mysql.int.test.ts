/**
 * The rendered MySQL configuration read by a REAL Dovecot 2.3 and a REAL Dovecot 2.4 (Debian 13's, chrooted
 * in the test bed's root: it reaches MariaDB over 127.0.0.1) (dovecot-mysql driver) from a mailring MySQL
 * store on a REAL MariaDB (test/support/mariadb.ts), as a separate read-only database user, with the
 * operator's own users table for passwords:
 * - `doveadm user` finds exactly the users with a copy on the server, with the right mail_replica; a user
 *   without a copy there is not found; the iteration lists only the server's users;
 * - a login (password from the operator's table) works through password_query;
 * - the proxy query sends a login to the second copy once the first server is marked down, by the operator
 *   (state) or by the replicator's probes (health down or returning).
 */
import * as path from 'node:path'

import {afterAll, beforeAll, describe, expect, it} from 'vitest'

import type {DovecotVersion} from '../../src/dovecot/render.js'

import {renderFor} from '../../src/engine/dovecot-config/render.js'
import {type DovecotContext} from '../../src/engine/context.js'
import {MysqlStore} from '../../src/store/mysql.js'
import {startDovecot, type DovecotHost} from '../support/dovecot.js'
import {describeDovecot24} from '../support/dovecot24.js'
import {startMariaDb, type MariaDb} from '../support/mariadb.js'
import {freshDatabase, settingsFor} from '../support/mysql-databases.js'
import {contextFor, fillStore, proxyHost, whileDown} from '../support/store-cluster.js'

let db: MariaDb
let store: MysqlStore
let ctx: DovecotContext
const DOVECOT_DB_PASSWORD = 'dovecot-pw-123'

const USERS: [string, string[]][] = [
  ['alice@example.com', ['mx-a', 'mx-b']],
  ['bob@example.com', ['mx-b', 'mx-a']],
  ['dave@example.org', ['mx-b', 'mx-c']],
]

beforeAll(async () => {
  db = await startMariaDb()
  const database = await freshDatabase(db, 'dovecot')
  store = (await MysqlStore.init(settingsFor(db, database))).store
  await fillStore(
    store,
    [
      {name: 'mx-a', address: '192.0.2.1'},
      {name: 'mx-b', address: '192.0.2.2'},
      {name: 'mx-c', address: '192.0.2.3'},
    ],
    USERS,
  )
  // The operator's own users table, and the read-only user Dovecot connects as.
  await db.rootExec(
    `CREATE TABLE \`${database}\`.mailbox (username VARCHAR(255) PRIMARY KEY, password VARCHAR(255) NOT NULL);
     INSERT INTO \`${database}\`.mailbox VALUES ('alice@example.com', '{PLAIN}alice-pw'), ('bob@example.com', '{PLAIN}bob-pw');
     CREATE USER 'dovecot'@'127.0.0.1' IDENTIFIED BY '${DOVECOT_DB_PASSWORD}';
     GRANT SELECT ON \`${database}\`.* TO 'dovecot'@'127.0.0.1';`,
  )
  ctx = await contextFor(
    store,
    {kind: 'mysql', settings: settingsFor(db, database), source: 'test'} as never,
    {
      dbUser: 'dovecot',
    },
  )
  ctx.env = {MAILRING_DOVECOT_DB_PASSWORD: DOVECOT_DB_PASSWORD}
})

afterAll(async () => {
  await store?.close()
  await db?.stop()
})

function render(version: DovecotVersion, home: string, role: 'backend' | 'proxy'): string {
  ctx.settings.home = home
  const table = {table: 'mailbox', user_column: 'username'}
  ctx.config = {
    path: '/x',
    file: {path: '/x', data: {}, lineOf: () => 1},
    section: (n) => (n === 'users_table' ? table : undefined),
  }
  return renderFor(ctx, role === 'backend' ? 'mx-a' : undefined, {role, version}).rendered.text
}

/** A backend (mx-a) and a proxy of one Dovecot version, configured by the rendered file. */
async function startHosts(version: DovecotVersion): Promise<[DovecotHost, DovecotHost]> {
  if (version === '2.4') {
    // 2.4: the file brings passdb sql and userdb sql blocks; dovecot.conf includes it.
    const include = (c: {dir: string}) => `!include ${path.join(c.dir, 'mailring-sql.conf')}\n`
    return Promise.all([
      startDovecot({
        version,
        files: (c) => ({'mailring-sql.conf': render(version, `${c.dir}/home/%d/%n`, 'backend')}),
        passdb: '',
        userdb: '',
        extraConfig: include,
      }),
      startDovecot({
        version,
        files: {'mailring-sql.conf': render(version, '/var/vmail/%d/%n', 'proxy')},
        passdb: '',
        extraConfig: include,
      }),
    ])
  }
  return Promise.all([
    startDovecot({
      files: (c) => ({'dovecot-sql.conf.ext': render(version, `${c.dir}/home/%d/%n`, 'backend')}),
      passdb: (c) => `passdb {\n  driver = sql\n  args = ${path.join(c.dir, 'dovecot-sql.conf.ext')}\n}`,
      userdb: (c) => `userdb {\n  driver = sql\n  args = ${path.join(c.dir, 'dovecot-sql.conf.ext')}\n}`,
    }),
    startDovecot({
      files: {'proxy.conf.ext': render(version, '/var/vmail/%d/%n', 'proxy')},
      passdb: (c) => `passdb {\n  driver = sql\n  args = ${path.join(c.dir, 'proxy.conf.ext')}\n}`,
    }),
  ])
}

for (const version of ['2.3', '2.4'] as const)
  (version === '2.4' ? describeDovecot24 : describe)(
    `Dovecot ${version} with the MySQL store on MariaDB`,
    () => {
      let a: DovecotHost
      let proxy: DovecotHost
      beforeAll(async () => {
        ;[a, proxy] = await startHosts(version)
      })
      afterAll(async () => {
        await Promise.all([a?.stop(), proxy?.stop()])
      })

      it('finds exactly the users with a copy on the server, with the next copy as mail_replica', async () => {
        const alice = await a.doveadm(['user', '-f', 'mail_replica', 'alice@example.com'])
        expect(alice.exitCode, alice.stderr + a.readLog().slice(-1500)).toBe(0)
        expect(alice.stdout.trim()).toBe('tcp:192.0.2.2:12345')
        expect((await a.doveadm(['user', '-f', 'mail_replica', 'bob@example.com'])).stdout.trim()).toBe(
          'tcp:192.0.2.2:12345',
        )
        expect((await a.doveadm(['user', 'dave@example.org'])).exitCode).toBe(67)
        const list = (await a.doveadm(['user', '*'])).stdout.split('\n').filter((l) => l.trim() !== '')
        expect(list.sort()).toEqual(['alice@example.com', 'bob@example.com'])
      })

      it('logs in with the password from the operator table', async () => {
        const ok = await a.doveadm(['auth', 'test', 'alice@example.com', 'alice-pw'])
        expect(ok.exitCode, ok.stdout + ok.stderr).toBe(0)
        expect((await a.doveadm(['auth', 'test', 'alice@example.com', 'wrong'])).exitCode).not.toBe(0)
      })

      it('the proxy query sends the login to the second copy when the first server is down', async () => {
        const host = (user: string) => proxyHost(proxy, user)
        expect(await host('alice@example.com')).toBe('192.0.2.1')
        await whileDown(store, 'mx-a', async () => {
          expect(await host('alice@example.com')).toBe('192.0.2.2')
        })
      })

      it('and while the probes say it is down or returning (the health record, no reload)', async () => {
        const host = (user: string) => proxyHost(proxy, user)
        expect(await store.setServerHealth('mx-a', 'up', 'down', 'imap 192.0.2.1:143: refused')).toBe(true)
        try {
          expect(await host('alice@example.com')).toBe('192.0.2.2')
          expect(await store.setServerHealth('mx-a', 'down', 'returning', '')).toBe(true)
          expect(await host('alice@example.com')).toBe('192.0.2.2')
          expect(await host('bob@example.com')).toBe('192.0.2.2')
        } finally {
          await store.setServerHealth('mx-a', 'down', 'up', '')
          await store.setServerHealth('mx-a', 'returning', 'up', '')
        }
        expect(await host('alice@example.com')).toBe('192.0.2.1')
      })
    },
  )
