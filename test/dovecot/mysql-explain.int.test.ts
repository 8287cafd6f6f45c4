/**
 * The queries of the RENDERED Dovecot 2.3 file (a backend's password_query, user_query and iterate_query, and
 * the proxy's password_query), run through EXPLAIN on a REAL MariaDB (test/support/mariadb.ts) holding a few
 * thousand users: Dovecot's variables are filled in the way Dovecot fills them (lower-cased for %L..., the
 * value SQL-escaped), and no query may read mailring_users or mailring_copies (or the operator's users
 * table) by a full table scan. The MySQL counterpart of the SQLite EXPLAIN QUERY PLAN test in render.test.ts.
 */
import mysql from 'mysql2/promise'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'

import {renderFor} from '../../src/engine/dovecot-config/render.js'
import {type DovecotContext} from '../../src/engine/context.js'
import {MysqlStore} from '../../src/store/mysql.js'
import {startMariaDb, type MariaDb} from '../support/mariadb.js'
import {freshDatabase, settingsFor} from '../support/mysql-databases.js'
import {contextFor, fillStore} from '../support/store-cluster.js'

const SERVERS = ['mx-a', 'mx-b', 'mx-c', 'mx-d'].map((name, i) => ({name, address: `192.0.2.${i + 1}`}))
const USER_COUNT = 4000
const USERS: [string, string[]][] = Array.from({length: USER_COUNT}, (_, i) => {
  const first = i % SERVERS.length
  return [
    `user${i}@domain${i % 37}.example`,
    [SERVERS[first]!.name, SERVERS[(first + 1 + (i % 3)) % SERVERS.length]!.name],
  ]
})
/** A user with a copy on mx-a (the rendered server), given with upper-case letters as a client might. */
const LOGIN = 'User4@Domain4.Example'

let db: MariaDb
let store: MysqlStore
let conn: mysql.Connection
let ctx: DovecotContext

beforeAll(async () => {
  db = await startMariaDb()
  const database = await freshDatabase(db, 'explain')
  const settings = settingsFor(db, database)
  store = (await MysqlStore.init(settings)).store
  await fillStore(store, SERVERS, USERS)
  conn = await mysql.createConnection({
    host: db.host,
    port: db.port,
    user: db.user,
    password: db.password,
    database,
    multipleStatements: true,
  })
  // The operator's own users table (where passwords live), as large as the store.
  await conn.query('CREATE TABLE mailbox (username VARCHAR(255) PRIMARY KEY, password VARCHAR(255) NOT NULL)')
  await conn.query('INSERT INTO mailbox (username, password) VALUES ?', [
    USERS.map(([user]) => [user, '{PLAIN}pw']),
  ])
  await conn.query('ANALYZE TABLE mailring_users, mailring_copies, mailring_servers, mailbox')
  ctx = await contextFor(store, {kind: 'mysql', settings, source: 'test'} as never, {dbUser: 'dovecot'})
  ctx.env = {MAILRING_DOVECOT_DB_PASSWORD: 'dovecot-pw-123'}
  const table = {table: 'mailbox', user_column: 'username'}
  ctx.config = {
    path: '/x',
    file: {path: '/x', data: {}, lineOf: () => 1},
    section: (n) => (n === 'users_table' ? table : undefined),
  }
})

afterAll(async () => {
  await conn?.end()
  await store?.close()
  await db?.stop()
})

/** The value of `key = ...` in a rendered 2.3 file (each query is on one line). */
function setting(text: string, key: string): string {
  const match = new RegExp(`^${key} = (.*)$`, 'm').exec(text)
  expect(match, `${key} in\n${text}`).not.toBeNull()
  return match![1]!
}

/**
 * Dovecot 2.3's expansion of a query for `user`: %u %n %d (the whole name, the part before "@", the part
 * after it), %L... lower-cased, %% a percent sign; each value escaped for SQL by the driver.
 */
function expand(query: string, user: string): string {
  const at = user.indexOf('@')
  const values: Record<string, string> = {
    u: user,
    n: at < 0 ? user : user.slice(0, at),
    d: at < 0 ? '' : user.slice(at + 1),
  }
  return query.replace(/%(%|L?[und])/g, (_m, v: string) => {
    if (v === '%') return '%'
    const value = v.startsWith('L') ? values[v[1]!]!.toLowerCase() : values[v]!
    // mysql_real_escape_string, as Dovecot's driver does: the result stays inside the query's quotes.
    return conn.escape(value).slice(1, -1)
  })
}

interface PlanRow {
  id: number
  select_type: string
  table: string | null
  type: string | null
  key: string | null
  /** A number, or its decimal text (mysql2 returns EXPLAIN's rows as text). */
  rows: number | string | null
  Extra: string | null
}

async function explain(query: string): Promise<PlanRow[]> {
  const [rows] = await conn.query(`EXPLAIN ${query}`)
  return rows as PlanRow[]
}

/** The rows of a plan that read a large table in full (type ALL, or a full index scan, over many rows). */
function fullScans(plan: PlanRow[]): PlanRow[] {
  return plan.filter((r) => (r.type === 'ALL' || r.type === 'index') && Number(r.rows ?? 0) > 50)
}

describe('the rendered 2.3 queries on MariaDB use the indexes (EXPLAIN)', () => {
  it('(the check sees a full scan when there is one)', async () => {
    const plan = await explain("SELECT address FROM mailring_users WHERE LOWER(domain) = 'domain4.example'")
    expect(fullScans(plan).map((r) => r.table)).toEqual(['mailring_users'])
  })

  it('backend: password_query, user_query and iterate_query scan no large table', async () => {
    const text = renderFor(ctx, 'mx-a', {role: 'backend', version: '2.3'}).rendered.text
    const queries = {
      password_query: setting(text, 'password_query'),
      user_query: setting(text, 'user_query'),
      iterate_query: setting(text, 'iterate_query'),
    }
    for (const [key, query] of Object.entries(queries)) {
      const sql = expand(query, LOGIN)
      expect(sql, key).not.toMatch(/%[A-Za-z]/)
      const plan = await explain(sql)
      expect(fullScans(plan), `${key}: ${sql}\n${JSON.stringify(plan, null, 1)}`).toEqual([])
    }
    const userPlan = await explain(expand(queries.user_query, LOGIN))
    expect(userPlan.find((r) => r.table === 'u')).toMatchObject({
      type: expect.stringMatching(/^(const|eq_ref|ref)$/),
    })
    const iteratePlan = await explain(expand(queries.iterate_query, LOGIN))
    expect(iteratePlan.find((r) => r.table === 'c')?.type).toMatch(/^(const|eq_ref|ref)$/)
  })

  it('proxy: the password_query scans no large table', async () => {
    const text = renderFor(ctx, undefined, {role: 'proxy', version: '2.3'}).rendered.text
    const sql = expand(setting(text, 'password_query'), LOGIN)
    const plan = await explain(sql)
    expect(fullScans(plan), `${sql}\n${JSON.stringify(plan, null, 1)}`).toEqual([])
    expect(plan.find((r) => r.table === 'u')?.type).toMatch(/^(const|eq_ref|ref)$/)
    // The health of each copy's server: by its primary key (LEFT JOIN, no row = up).
    expect(plan.find((r) => r.table === 'h')?.type).toMatch(/^(const|eq_ref|ref)$/)
  })

  it('and the expanded queries give the right answers', async () => {
    const text = renderFor(ctx, 'mx-a', {role: 'backend', version: '2.3'}).rendered.text
    const [user] = (await conn.query(expand(setting(text, 'user_query'), LOGIN)))[0] as Record<
      string,
      string
    >[]
    expect(user).toMatchObject({user: 'user4@domain4.example', home: '/var/vmail/Domain4.Example/User4'})
    // user4: first copy on mx-a, second on mx-(0 + 1 + 4 % 3) = mx-c.
    expect(user!.mail_replica).toBe('tcp:192.0.2.3:12345')
    const [pass] = (await conn.query(expand(setting(text, 'password_query'), LOGIN)))[0] as Record<
      string,
      string
    >[]
    expect(pass).toMatchObject({user: 'user4@domain4.example', password: '{PLAIN}pw'})
    const listed = (await conn.query(expand(setting(text, 'iterate_query'), LOGIN)))[0] as unknown[]
    expect(listed).toHaveLength(USERS.filter(([, copies]) => copies.includes('mx-a')).length)
    // A quote in the login name stays inside the literal.
    const [none] = (await conn.query(expand(setting(text, 'user_query'), "x' OR '1'='1")))[0] as unknown[]
    expect(none).toBeUndefined()
  })
})
