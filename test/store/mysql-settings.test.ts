import {chmodSync, mkdirSync, mkdtempSync, rmSync, writeFileSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'

import {afterEach, beforeEach, describe, expect, it} from 'vitest'

import {ExitCode, MailringError} from '../../src/core/errors.js'
import {readConfigFile} from '../../src/config/config-file.js'
import {locateStore, type MysqlLocation} from '../../src/store/open.js'
import {parseMysqlUrl, resolveMysqlSettings} from '../../src/store/mysql-settings.js'
import {usersTableFromConfig} from '../../src/store/users-table-config.js'

function caught(work: () => unknown): MailringError {
  try {
    work()
  } catch (error) {
    expect(error).toBeInstanceOf(MailringError)
    return error as MailringError
  }
  throw new Error('did not throw')
}

describe('MySQL connection settings', () => {
  let dir: string
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'mailring-mysql-settings-'))
  })
  afterEach(() => rmSync(dir, {recursive: true, force: true}))

  const config = (text: string): string => {
    const path = join(dir, 'mailring.yaml')
    writeFileSync(path, text)
    return path
  }

  it('parses mysql:// and mariadb:// URLs with a default port', () => {
    expect(parseMysqlUrl('mysql://mailring@db.example.net/mail', '--db')).toEqual({
      host: 'db.example.net',
      port: 3306,
      user: 'mailring',
      database: 'mail',
    })
    expect(parseMysqlUrl('mariadb://m@[::1]:3307/x', '--db')).toMatchObject({host: '::1', port: 3307})
    expect(() => parseMysqlUrl('mysql://db.example.net/mail', '--db')).toThrow(/names no user/)
    expect(() => parseMysqlUrl('mysql://m@db.example.net', '--db')).toThrow(/names no database/)
    expect(() => parseMysqlUrl('mysql://m@db.example.net/x?ssl=1', '--db')).toThrow(/db_tls/)
  })

  it('refuses a password in the URL without printing it, pointing to MAILRING_DB_PASSWORD', () => {
    const error = caught(() =>
      locateStore({db: 'mysql://admin:hunter2@db.example.net/mailring', env: {}, cwd: dir}),
    )
    expect(error.exitCode).toBe(ExitCode.store)
    expect(error.message).not.toContain('hunter2')
    expect(error.message).toMatch(
      /^--db: the store URL holds a password .*MAILRING_DB_PASSWORD.*db_password_file/,
    )
  })

  it('takes the password from MAILRING_DB_PASSWORD first, then from db_password_file', () => {
    const secret = join(dir, 'db.pass')
    writeFileSync(secret, 's3cret-from-file\n', {mode: 0o600})
    chmodSync(secret, 0o600)
    const path = config('db: mysql://mailring@127.0.0.1:3307/mailring\ndb_password_file: db.pass\n')
    const fromFile = locateStore({config: path, env: {}, cwd: dir}) as MysqlLocation
    expect(fromFile.kind).toBe('mysql')
    expect(fromFile.settings).toMatchObject({
      password: 's3cret-from-file',
      passwordSource: secret,
      port: 3307,
    })
    expect(fromFile.settings.location).toBe('mysql://mailring@127.0.0.1:3307/mailring')
    const fromEnv = locateStore({
      config: path,
      env: {MAILRING_DB_PASSWORD: 'env-secret'},
      cwd: dir,
    }) as MysqlLocation
    expect(fromEnv.settings).toMatchObject({password: 'env-secret', passwordSource: 'MAILRING_DB_PASSWORD'})
    // --db with the config file's password file.
    const viaFlag = locateStore({db: 'mysql://other@db/x', config: path, env: {}, cwd: dir}) as MysqlLocation
    expect(viaFlag.settings).toMatchObject({user: 'other', password: 's3cret-from-file'})
  })

  it('refuses a password file readable by others, naming it and chmod 600', () => {
    const secret = join(dir, 'db.pass')
    writeFileSync(secret, 'x\n')
    chmodSync(secret, 0o644)
    const path = config('db: mysql://mailring@db/mailring\ndb_password_file: db.pass\n')
    const error = caught(() => locateStore({config: path, env: {}, cwd: dir}))
    expect(error.exitCode).toBe(ExitCode.store)
    expect(error.message).toBe(
      `The password file ${secret} is readable by group or others (mode 644): run \`chmod 600 ${secret}\`.`,
    )
  })

  it('reads db_tls and names file, line and key of a bad entry', () => {
    mkdirSync(join(dir, 'tls'))
    writeFileSync(join(dir, 'tls', 'ca.pem'), 'CA')
    const good = readConfigFile(config('db: mysql://m@db/x\ndb_tls:\n  ca: tls/ca.pem\n  verify: false\n'))
    expect(resolveMysqlSettings({url: 'mysql://m@db/x', source: 'db', env: {}, config: good}).tls).toEqual({
      ca: join(dir, 'tls', 'ca.pem'),
      verify: false,
    })
    const missing = readConfigFile(config('db: mysql://m@db/x\ndb_tls:\n  ca: tls/none.pem\n'))
    expect(() =>
      resolveMysqlSettings({url: 'mysql://m@db/x', source: 'db', env: {}, config: missing}),
    ).toThrow(
      `${join(dir, 'mailring.yaml')}:3: db_tls.ca: cannot read ${join(dir, 'tls', 'none.pem')}: no such file`,
    )
    const bad = readConfigFile(config('db: mysql://m@db/x\ndb_tls:\n  verify: maybe\n'))
    expect(() => resolveMysqlSettings({url: 'mysql://m@db/x', source: 'db', env: {}, config: bad})).toThrow(
      /mailring\.yaml:3: db_tls\.verify: verify must be true or false/,
    )
  })

  it('reads users_table with one address column or local and domain columns', () => {
    expect(
      usersTableFromConfig(readConfigFile(config('users_table: {table: users, user_column: email}\n'))),
    ).toEqual({
      table: 'users',
      userColumn: 'email',
      source: `${join(dir, 'mailring.yaml')}:1: users_table`,
    })
    expect(
      usersTableFromConfig(
        readConfigFile(
          config('users_table:\n  table: mailbox\n  local_column: local_part\n  domain_column: domain\n'),
        ),
      ),
    ).toMatchObject({table: 'mailbox', localColumn: 'local_part', domainColumn: 'domain'})
    expect(() =>
      usersTableFromConfig(readConfigFile(config('users_table:\n  table: "users; DROP"\n'))),
    ).toThrow(/mailring\.yaml:2: users_table\.table: table must be a table or column name/)
    expect(() => usersTableFromConfig(readConfigFile(config('users_table:\n  table: users\n')))).toThrow(
      // The mapping as a whole lacks the column: named at its key's line.
      /mailring\.yaml:1: users_table: users_table needs user_column/,
    )
  })
})
