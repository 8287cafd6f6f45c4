/**
 * Every variant of the rendered 2.4 file, parsed by REAL Dovecot 2.4's doveconf (the test bed's root): MySQL
 * with several hosts, a port and a password full of configuration punctuation, a default password scheme,
 * the operator's users table by address or by local part and domain, SQLite, and the proxy passdb. doveconf
 * reads the included file's SQL settings (it does not connect), so what it prints back is what Dovecot 2.4
 * will use.
 */
import * as fs from 'node:fs'
import * as path from 'node:path'

import {afterAll, beforeAll, expect, it} from 'vitest'

import {renderDovecotSql, type RenderInput} from '../../src/dovecot/render.js'
import {describeDovecot24, writeRootWrapper} from '../support/dovecot24.js'
import {makeTempDir, removeDir, run} from '../support/proc.js'

const PASSWORD = 'a{b}c=d;e!f&g<h>|i'

const BASE: RenderInput = {
  server: 'mx01',
  role: 'backend',
  version: '2.4',
  connection: {
    dialect: 'mysql',
    hosts: ['db1', '192.0.2.7'],
    port: 3307,
    dbname: 'mailring',
    user: 'dovecot',
    password: PASSWORD,
  },
  usersTable: {table: 'mail.users', localColumn: 'local', domainColumn: 'dom', passwordColumn: 'pw'},
  home: '/var/vmail/%Ld/%Ln',
  uid: 'vmail',
  gid: '5000',
  defaultPassScheme: 'SHA512-CRYPT',
  replica: {scheme: 'tcps', port: 4000},
  proxyTimeoutSeconds: 5,
}

describeDovecot24("the rendered 2.4 file as Dovecot 2.4's doveconf reads it", () => {
  let dir: string
  let wrapper: string

  beforeAll(() => {
    dir = makeTempDir('mr-render24')
    wrapper = path.join(dir, 'dovecot-2.4')
    writeRootWrapper(wrapper)
  })

  afterAll(() => {
    if (dir) removeDir(dir)
  })

  /** `doveconf -n -P` of a minimal dovecot.conf that includes the rendered text. */
  async function doveconf(name: string, text: string): Promise<string> {
    const file = path.join(dir, `${name}.conf`)
    fs.writeFileSync(file, text)
    const conf = path.join(dir, `${name}-dovecot.conf`)
    fs.writeFileSync(
      conf,
      ['dovecot_config_version = 2.4.1', 'dovecot_storage_version = 2.4.1', `!include ${file}`, ''].join(
        '\n',
      ),
    )
    const r = await run(wrapper, ['doveconf', '-n', '-P', '-c', conf])
    expect(r.exitCode, `${name}: ${r.stderr}`).toBe(0)
    expect(r.stderr).toBe('')
    return r.stdout
  }

  it('MySQL: a block per host with port, database, user and the password as written', async () => {
    const out = await doveconf('mysql', renderDovecotSql(BASE).text)
    expect(out).toMatch(/^sql_driver = mysql$/m)
    for (const host of ['db1', '192.0.2.7']) {
      const block = new RegExp(`^mysql ${host.replace(/\./g, '\\.')} \\{\\n([\\s\\S]*?)\\n\\}$`, 'm').exec(
        out,
      )?.[1]
      expect(block, out).toBe(
        ['  dbname = mailring', `  password = ${PASSWORD}`, '  port = 3307', '  user = dovecot'].join('\n'),
      )
    }
    expect(out).toMatch(/^passdb_default_password_scheme = SHA512-CRYPT$/m)
    expect(out).toMatch(
      /^passdb sql \{\n {2}query = SELECT CONCAT\(t\.`local`, '@', t\.`dom`\).*'%\{user\|username\|lower\}'/m,
    )
    expect(out).toMatch(
      /^userdb sql \{\n {2}iterate_query = SELECT .*\n {2}query = SELECT .*'\/var\/vmail\/%\{user\|domain\|lower\}\/%\{user\|username\|lower\}' AS home/m,
    )
    expect(out).toContain("CONCAT('tcps:', s2.address, ':4000')")
  })

  it('SQLite, the users table by address, no default scheme', async () => {
    const out = await doveconf(
      'sqlite',
      renderDovecotSql({
        ...BASE,
        connection: {dialect: 'sqlite', path: '/var/lib/mailring/cluster.db'},
        usersTable: {table: 'users', userColumn: 'address', passwordColumn: 'pw'},
        defaultPassScheme: undefined,
      }).text,
    )
    expect(out).toMatch(/^sql_driver = sqlite$/m)
    expect(out).toMatch(/^sqlite_path = \/var\/lib\/mailring\/cluster\.db$/m)
    expect(out).not.toMatch(/default_password_scheme/)
    expect(out).toMatch(/^passdb sql \{\n {2}query = SELECT t\."address" AS user/m)
  })

  it('the proxy passdb, and nothing else', async () => {
    const out = await doveconf('proxy', renderDovecotSql({...BASE, role: 'proxy', server: undefined}).text)
    expect(out).toMatch(
      /^passdb sql \{\n {2}query = SELECT .*'Y' AS proxy, s\.address AS host, '5' AS proxy_timeout/m,
    )
    expect(out).not.toMatch(/^userdb sql/m)
  })
})
