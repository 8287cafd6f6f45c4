/**
 * Rendering, pure: the 2.3 and 2.4 forms, the proxy passdb, validation/escaping of every value placed into
 * SQL or configuration text, secret masking, the unified diff; and (on a real SQLite store) that the
 * queries run on the store's indexes, checked with EXPLAIN QUERY PLAN.
 */
import * as path from 'node:path'

import Database from 'better-sqlite3'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'

import {MailringError} from '../../src/core/errors.js'
import {
  maskSecrets,
  renderDovecotSql,
  renderQueries,
  templateToDovecot,
  type RenderInput,
} from '../../src/dovecot/render.js'
import {unifiedDiff} from '../../src/dovecot/unified-diff.js'
import {SqliteStore} from '../../src/store/sqlite.js'
import {makeTempDir, removeDir} from '../support/proc.js'
import {fillStore} from '../support/store-cluster.js'

const MYSQL: RenderInput = {
  server: 'mx01',
  role: 'backend',
  version: '2.3',
  connection: {
    dialect: 'mysql',
    hosts: ['db1', 'db2'],
    dbname: 'mailring',
    user: 'dovecot',
    password: 's3cret!',
  },
  usersTable: {table: 'mailbox', userColumn: 'username', passwordColumn: 'password'},
  home: '/var/vmail/%d/%n',
  uid: 'vmail',
  gid: 'vmail',
  defaultPassScheme: 'SHA512-CRYPT',
  replica: {scheme: 'tcp', port: 12345},
  proxyTimeoutSeconds: 2,
}
const SQLITE: RenderInput = {...MYSQL, connection: {dialect: 'sqlite', path: '/var/lib/mailring/cluster.db'}}
delete (SQLITE as Partial<RenderInput>).usersTable

function refused(input: RenderInput, pattern: RegExp): void {
  expect(() => renderDovecotSql(input)).toThrow(MailringError)
  expect(() => renderDovecotSql(input)).toThrow(pattern)
}

describe('Dovecot 2.3 dovecot-sql.conf.ext', () => {
  it('MySQL: connect string with every host, password only in the file, queries for this server', () => {
    const {text, secrets, notes} = renderDovecotSql(MYSQL)
    expect(text).toContain('driver = mysql\n')
    expect(text).toContain('connect = host=db1 host=db2 dbname=mailring user=dovecot password=s3cret!\n')
    expect(text).toContain('default_pass_scheme = SHA512-CRYPT\n')
    expect(text).toMatch(
      /^password_query = SELECT t.`username` AS user, t.`password` AS password FROM `mailbox` t WHERE t.`username` = '%Lu'$/m,
    )
    expect(text).toMatch(
      /^user_query = SELECT u.address AS user, '\/var\/vmail\/%d\/%n' AS home, 'vmail' AS uid/m,
    )
    expect(text).toContain("c.server_id = (SELECT id FROM mailring_servers WHERE name = 'mx01')")
    expect(text).toContain("CONCAT('tcp:', s2.address, ':12345')")
    expect(text).toMatch(
      /^iterate_query = SELECT u.address AS user FROM mailring_copies c .*name = 'mx01'\) AND m.state IN \('switched', 'caught-up'\)$/m,
    )
    expect(secrets).toEqual(['s3cret!'])
    expect(notes).toEqual([])
    expect(maskSecrets(text, secrets)).not.toContain('s3cret!')
    expect(maskSecrets(text, secrets)).toContain('password=********')
  })

  it('SQLite: the store file, || concatenation, and no password_query without a users table (said so)', () => {
    const {text, secrets, notes} = renderDovecotSql(SQLITE)
    expect(text).toContain('driver = sqlite\nconnect = /var/lib/mailring/cluster.db\n')
    expect(text).toContain("'tcp:' || s2.address || ':12345'")
    expect(text).not.toContain('password_query')
    expect(secrets).toEqual([])
    expect(notes[0]).toMatch(/No password_query/)
  })

  it('local and domain columns; tcps replicas; a port on the database', () => {
    const text = renderDovecotSql({
      ...MYSQL,
      connection: {
        ...(MYSQL.connection as Extract<RenderInput['connection'], {dialect: 'mysql'}>),
        port: 3307,
      },
      usersTable: {table: 'mail.users', localColumn: 'local', domainColumn: 'dom', passwordColumn: 'pw'},
      replica: {scheme: 'tcps', port: 4000},
    }).text
    expect(text).toContain('port=3307')
    expect(text).toContain(
      "password_query = SELECT CONCAT(t.`local`, '@', t.`dom`) AS user, t.`pw` AS password FROM `mail`.`users` t WHERE t.`local` = '%Ln' AND t.`dom` = '%Ld'",
    )
    expect(text).toContain("CONCAT('tcps:', s2.address, ':4000')")
  })

  it('proxy passdb: the first copy not down and healthy, proxy_timeout, nopassword (the backend checks it)', () => {
    const {text} = renderDovecotSql({...MYSQL, role: 'proxy', server: undefined, proxyTimeoutSeconds: 5})
    expect(text).toMatch(
      /^password_query = SELECT u.address AS user, NULL AS password, 'Y' AS nopassword, 'Y' AS proxy, s.address AS host, '5' AS proxy_timeout .*LEFT JOIN mailring_server_health h ON h.server_id = s.id WHERE u.address = '%Lu' ORDER BY \(s.state = 'down' OR COALESCE\(h.health, 'up'\) <> 'up'\), c.position LIMIT 1$/m,
    )
    expect(text).not.toContain('user_query')
    expect(text).toMatch(/LMTP/)
  })
})

describe('Dovecot 2.4 form', () => {
  it('an includable file: inline sql_driver, a mysql block per host, passdb sql and userdb sql', () => {
    const {text} = renderDovecotSql({...MYSQL, version: '2.4'})
    // dovecot.conf must set these itself, first, and 2.4 refuses them set again (test/dovecot/dovecot-sql24).
    expect(text).not.toMatch(/^dovecot_(config|storage)_version/m)
    expect(text.split('\n')[0]).toMatch(/^# Generated by mailring/)
    expect(text).toContain('sql_driver = mysql\n')
    expect(text).toContain('mysql db1 {\n  dbname = mailring\n  user = dovecot\n  password = "s3cret!"\n}\n')
    expect(text).toContain('mysql db2 {')
    expect(text).toContain('passdb_default_password_scheme = SHA512-CRYPT')
    expect(text).toMatch(/passdb sql \{\n {2}query = SELECT .* = '%\{user\|lower\}'\n\}/)
    expect(text).toMatch(/userdb sql \{\n {2}query = SELECT .*\n {2}iterate_query = SELECT .*\n\}/)
    expect(text).toContain("'/var/vmail/%{user|domain}/%{user|username}' AS home")
    expect(text).not.toMatch(/%[LunD]\b/)
  })

  it('SQLite: sqlite_path', () => {
    expect(renderDovecotSql({...SQLITE, version: '2.4'}).text).toContain(
      'sql_driver = sqlite\nsqlite_path = /var/lib/mailring/cluster.db\n',
    )
  })

  it('translates templates, lower-case variants included', () => {
    expect(templateToDovecot('/m/%Ld/%Ln/%u', '2.4')).toBe(
      '/m/%{user|domain|lower}/%{user|username|lower}/%{user}',
    )
    expect(templateToDovecot('/m/%d/%n', '2.3')).toBe('/m/%d/%n')
  })
})

describe('validation and escaping: nothing unchecked reaches SQL or configuration text', () => {
  it('refuses server names, identifiers and templates that could break out of a literal', () => {
    refused({...MYSQL, server: "mx01' OR '1'='1"}, /not a valid server name/)
    refused({...MYSQL, server: 'mx01\nuser_query = x'}, /not a valid server name/)
    refused(
      {...MYSQL, usersTable: {table: 'users; DROP TABLE x', userColumn: 'u', passwordColumn: 'p'}},
      /identifier/,
    )
    refused({...MYSQL, usersTable: {table: 't', userColumn: 'u`x', passwordColumn: 'p'}}, /identifier/)
    refused({...MYSQL, usersTable: {table: 't', passwordColumn: 'p'}}, /user_column/)
    refused({...MYSQL, home: "/var/vmail/%d' || (SELECT 1) || '"}, /home .* may hold only/)
    refused({...MYSQL, home: '/var/vmail/%{user}'}, /may hold only/)
    refused({...MYSQL, home: '/var/vmail/%h'}, /may hold only/)
    refused({...MYSQL, home: '/var/vmail/$SET:x'}, /may hold only/)
    refused({...MYSQL, uid: "0' AS uid, 'x"}, /uid/)
    refused({...MYSQL, defaultPassScheme: 'PLAIN\ndriver = x'}, /password scheme/)
    refused({...MYSQL, replica: {scheme: 'tcp', port: 0}}, /port/)
    refused({...MYSQL, role: 'proxy', proxyTimeoutSeconds: 0}, /proxy_timeout/)
  })

  it('refuses connection values Dovecot cannot carry', () => {
    const my = MYSQL.connection as Extract<RenderInput['connection'], {dialect: 'mysql'}>
    refused({...MYSQL, connection: {...my, password: 'two words'}}, /password/)
    refused({...MYSQL, connection: {...my, password: ''}}, /password/)
    refused({...MYSQL, connection: {...my, hosts: ['db1 dbname=evil']}}, /host/)
    refused({...MYSQL, connection: {...my, hosts: []}}, /at least one host/)
    refused({...MYSQL, connection: {...my, dbname: 'a b'}}, /identifier/)
    refused({...MYSQL, connection: {...my, user: 'a b'}}, /user/)
    refused({...SQLITE, connection: {dialect: 'sqlite', path: 'relative.db'}}, /absolute/)
    refused({...SQLITE, connection: {dialect: 'sqlite', path: '/a b.db'}}, /absolute/)
  })

  it('quotes a 2.4 password with quotes and backslashes escaped', () => {
    const my = MYSQL.connection as Extract<RenderInput['connection'], {dialect: 'mysql'}>
    // 2.4 quotes the value; 2.3 refuses what it cannot carry, so both are checked by the same rule.
    refused({...MYSQL, version: '2.4', connection: {...my, password: 'a"b'}}, /password/)
  })

  it('user input reaches the queries only through Dovecot variables', () => {
    const q = renderQueries(MYSQL)
    for (const query of [q.passwordQuery!, q.userQuery!]) {
      const literals = query.match(/'[^']*'/g) ?? []
      for (const literal of literals)
        expect(literal).toMatch(
          /^'(%Lu|%Ln|%Ld|mx01|vmail|\/var\/vmail\/%d\/%n|tcp:|:12345|@|copying|verified|switched|caught-up)'$/,
        )
    }
  })
})

describe('unified diff', () => {
  it('prints hunks with context like diff -u, and nothing for equal texts', () => {
    const a = ['1', '2', '3', '4', '5', '6', '7', '8', '9', '10'].join('\n') + '\n'
    const b = ['1', '2', '3', '4', 'five', '6', '7', '8', '9', '10', '11'].join('\n') + '\n'
    expect(unifiedDiff(a, a, {fromLabel: 'x', toLabel: 'y'})).toBe('')
    expect(unifiedDiff(a, b, {fromLabel: 'old', toLabel: 'new'})).toBe(
      [
        '--- old',
        '+++ new',
        '@@ -2,9 +2,10 @@',
        ' 2',
        ' 3',
        ' 4',
        '-5',
        '+five',
        ' 6',
        ' 7',
        ' 8',
        ' 9',
        ' 10',
        '+11',
        '',
      ].join('\n'),
    )
    expect(unifiedDiff('', 'a\n', {fromLabel: 'x', toLabel: 'y'})).toBe('--- x\n+++ y\n@@ -0,0 +1 @@\n+a\n')
  })
})

describe('the queries use the store indexes (SQLite, EXPLAIN QUERY PLAN)', () => {
  let dir: string
  let db: Database.Database
  beforeAll(async () => {
    dir = makeTempDir('mr-explain')
    const file = path.join(dir, 'cluster.db')
    const store = (await SqliteStore.init(file)).store
    await fillStore(
      store,
      [
        {name: 'mx01', address: '192.0.2.1'},
        {name: 'mx02', address: '192.0.2.2'},
      ],
      Array.from({length: 200}, (_, i): [string, string[]] => [
        `u${i}@example.com`,
        i % 2 ? ['mx01', 'mx02'] : ['mx02', 'mx01'],
      ]),
    )
    await store.close()
    db = new Database(file)
    db.exec('ANALYZE')
  })
  afterAll(() => {
    db?.close()
    if (dir) removeDir(dir)
  })

  function plan(query: string): string[] {
    const sql = query.replace(/%Lu/g, 'u1@example.com').replace(/%L?[nd]/g, 'x')
    return (db.prepare(`EXPLAIN QUERY PLAN ${sql}`).all() as {detail: string}[]).map((r) => r.detail)
  }

  it('user_query, iterate_query and the proxy query never scan a table', () => {
    const backend = renderQueries(SQLITE)
    const proxy = renderQueries({...SQLITE, role: 'proxy'})
    for (const query of [backend.userQuery!, backend.iterateQuery!, proxy.passwordQuery!]) {
      const details = plan(query)
      expect(
        details.filter((d) => /^SCAN /.test(d) && !/USING (COVERING )?INDEX/.test(d)),
        details.join('\n'),
      ).toEqual([])
    }
    expect(plan(backend.userQuery!).join('\n')).toMatch(/SEARCH u USING (COVERING )?INDEX .*address/)
    expect(plan(backend.iterateQuery!).join('\n')).toMatch(
      /SEARCH c USING (COVERING )?INDEX mailring_copies_server/,
    )
  })

  it('and give the right answers on the store itself', () => {
    const q = renderQueries(SQLITE)
    const row = db
      .prepare(q.userQuery!.replace('%Lu', 'u1@example.com').replace(/%[nd]/g, 'x'))
      .get() as Record<string, string>
    expect(row).toMatchObject({user: 'u1@example.com', mail_replica: 'tcp:192.0.2.2:12345', uid: 'vmail'})
    const users = db.prepare(q.iterateQuery!).pluck().all()
    expect(users).toHaveLength(200)
  })

  it('the proxy query skips a copy whose server is down or not up by health (no record: up)', async () => {
    const query = renderQueries({...SQLITE, role: 'proxy'}).passwordQuery!
    const host = (user: string) =>
      (db.prepare(query.replace('%Lu', user)).get() as {host: string} | undefined)?.host
    // u1: [mx01, mx02]; u2: [mx02, mx01].
    expect([host('u1@example.com'), host('u2@example.com')]).toEqual(['192.0.2.1', '192.0.2.2'])
    const store = await SqliteStore.open(path.join(dir, 'cluster.db'))
    try {
      for (const [expected, next, hosts] of [
        ['up', 'down', ['192.0.2.2', '192.0.2.2']],
        ['down', 'returning', ['192.0.2.2', '192.0.2.2']],
        ['returning', 'up', ['192.0.2.1', '192.0.2.2']],
      ] as const) {
        expect(await store.setServerHealth('mx01', expected, next, '')).toBe(true)
        expect([host('u1@example.com'), host('u2@example.com')], next).toEqual(hosts)
      }
      // Every copy unhealthy: still the first copy.
      await store.setServerHealth('mx01', 'up', 'down', '')
      await store.setServerHealth('mx02', 'up', 'down', '')
      expect([host('u1@example.com'), host('u2@example.com')]).toEqual(['192.0.2.1', '192.0.2.2'])
    } finally {
      await store.setServerHealth('mx01', 'down', 'up', '')
      await store.setServerHealth('mx02', 'down', 'up', '')
      await store.close()
    }
  })
})
