import {mkdirSync, mkdtempSync, rmSync, writeFileSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'

import {afterEach, beforeEach, describe, expect, it} from 'vitest'

import {ExitCode, MailringError} from '../../src/core/errors.js'
import {locateStore as locateAny, type LocateOptions, type SqliteLocation} from '../../src/store/open.js'

/** These tests locate SQLite stores (MySQL locations: test/store/mysql-settings.test.ts). */
const locateStore = (options: LocateOptions): SqliteLocation => locateAny(options) as SqliteLocation

describe('where the store is', () => {
  let dir: string
  let cwd: string
  let env: NodeJS.ProcessEnv
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'mailring-open-'))
    cwd = join(dir, 'work')
    mkdirSync(cwd)
    env = {HOME: join(dir, 'home'), XDG_CONFIG_HOME: join(dir, 'config'), XDG_DATA_HOME: join(dir, 'data')}
  })
  afterEach(() => rmSync(dir, {recursive: true, force: true}))

  const userConfig = (text: string): void => {
    mkdirSync(join(dir, 'config', 'mailring'), {recursive: true})
    writeFileSync(join(dir, 'config', 'mailring', 'config.yaml'), text)
  }

  it('defaults to $XDG_DATA_HOME/mailring/cluster.db, else ~/.local/share', () => {
    expect(locateStore({env, cwd})).toEqual({
      kind: 'sqlite',
      path: join(dir, 'data', 'mailring', 'cluster.db'),
      source: 'default',
    })
    expect(locateStore({env: {HOME: join(dir, 'home')}, cwd}).path).toBe(
      join(dir, 'home', '.local', 'share', 'mailring', 'cluster.db'),
    )
  })

  it('takes --db first, then MAILRING_DB, then a config file, then the default', () => {
    userConfig('db: sqlite:from-user-config.db\n')
    writeFileSync(join(cwd, 'mailring.yaml'), 'db: sqlite:from-local-config.db\n')
    writeFileSync(join(dir, 'explicit.yaml'), 'db: sqlite:from-explicit-config.db\n')
    const withEnv = {...env, MAILRING_DB: 'sqlite:/srv/env.db'}
    expect(locateStore({db: 'sqlite:flag.db', env: withEnv, cwd})).toMatchObject({
      path: join(cwd, 'flag.db'),
      source: '--db',
    })
    expect(locateStore({env: withEnv, cwd, config: join(dir, 'explicit.yaml')})).toMatchObject({
      path: '/srv/env.db',
      source: 'MAILRING_DB',
    })
    expect(locateStore({env, cwd, config: join(dir, 'explicit.yaml')}).path).toBe(
      join(dir, 'from-explicit-config.db'),
    )
    expect(locateStore({env: {...env, MAILRING_CONFIG: join(dir, 'explicit.yaml')}, cwd}).path).toBe(
      join(dir, 'from-explicit-config.db'),
    )
    expect(locateStore({env, cwd})).toMatchObject({
      path: join(cwd, 'from-local-config.db'),
      source: `${join(cwd, 'mailring.yaml')}:1: db`,
    })
    rmSync(join(cwd, 'mailring.yaml'))
    expect(locateStore({env, cwd}).path).toBe(join(dir, 'config', 'mailring', 'from-user-config.db'))
  })

  it('passes over a config file without a db key', () => {
    userConfig('# nothing here yet\n')
    expect(locateStore({env, cwd}).source).toBe('default')
  })

  it('names file, line and key of a bad db entry', () => {
    userConfig('# mailring\n\ndb: 42\n')
    expect(() => locateStore({env, cwd})).toThrow(
      `${join(dir, 'config', 'mailring', 'config.yaml')}:3: db: db must be a store URL, e.g. sqlite:./cluster.db or mysql://mailring@db.example.net/mailring`,
    )
    userConfig('db: mysql://admin:secret@db.example.net/mailring\n')
    expect(() => locateStore({env, cwd})).toThrow(
      /config\.yaml:1: db: the store URL holds a password \("mysql:\/\/admin:\*\*\*@db\.example\.net\/mailring"\)/,
    )
  })

  it('names a misspelt key of the config file', () => {
    userConfig('# mailring\ndb: sqlite:x.db\ndovecto: {}\n')
    expect(() => locateStore({env, cwd})).toThrow(
      `${join(dir, 'config', 'mailring', 'config.yaml')}:3: dovecto: unknown key "dovecto"`,
    )
  })

  it('refuses unknown URLs with exit code 4, without echoing a password', () => {
    let error: unknown
    try {
      locateStore({db: 'postgres://admin:hunter2@db/x', env, cwd})
    } catch (caught) {
      error = caught
    }
    expect(error).toBeInstanceOf(MailringError)
    expect((error as MailringError).exitCode).toBe(ExitCode.store)
    expect((error as MailringError).message).toBe(
      '--db: "postgres://admin:***@db/x" is not a store URL: use sqlite:PATH (e.g. sqlite:./cluster.db) or mysql://USER@HOST:PORT/DATABASE.',
    )
    expect(() => locateStore({db: 'sqlite:', env, cwd})).toThrow(
      '--db: "sqlite:" needs a file path, e.g. sqlite:./cluster.db',
    )
  })

  it('refuses a --config file that does not exist', () => {
    expect(() => locateStore({env, cwd, config: 'missing.yaml'})).toThrow(
      'Cannot read config file missing.yaml: no such file.',
    )
  })
})
