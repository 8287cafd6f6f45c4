import {dirname, isAbsolute, join, resolve} from 'node:path'

import {ExitCode, MailringError} from '../core/errors.js'
import {homeOf, locateConfigFile, readConfigFile, type ConfigFile} from '../config/config-file.js'
import {describeIssues} from '../config/yaml-file.js'
import {redactUrl, resolveMysqlSettings, type MysqlSettings} from './mysql-settings.js'
import type {Store} from './store.js'

/**
 * Where the store is, first match wins (docs/operators-guide.md, "Where the store is"):
 *   1. --db URL
 *   2. the MAILRING_DB environment variable
 *   3. key `db` of a config file: --config FILE, else MAILRING_CONFIG, else ./mailring.yaml, else
 *      $XDG_CONFIG_HOME/mailring/config.yaml (~/.config/mailring/config.yaml)
 *   4. the embedded default, $XDG_DATA_HOME/mailring/cluster.db (~/.local/share/mailring/cluster.db)
 */
export type StoreLocation = SqliteLocation | MysqlLocation

export interface SqliteLocation {
  kind: 'sqlite'
  /** Absolute path of the SQLite file. */
  path: string
  /** Where the choice came from, for messages: "--db", "MAILRING_DB", "config FILE", "default". */
  source: string
}

export interface MysqlLocation {
  kind: 'mysql'
  /** Host, port, user, database, password and TLS (src/store/mysql-settings.ts). */
  settings: MysqlSettings
  source: string
}

export interface LocateOptions {
  /** --db as given (oclif also fills it from MAILRING_DB). */
  db?: string
  /** --config as given (oclif also fills it from MAILRING_CONFIG). */
  config?: string
  env?: NodeJS.ProcessEnv
  cwd?: string
}

export function locateStore(options: LocateOptions = {}): StoreLocation {
  const env = options.env ?? process.env
  const cwd = options.cwd ?? process.cwd()
  // The config file also holds the password file and TLS of a MySQL store given by --db or MAILRING_DB.
  const config = (): ConfigFile | undefined => {
    const path = locateConfigFile(options.config, env, cwd)
    return path === undefined ? undefined : readConfigFile(path)
  }
  if (options.db !== undefined && options.db !== '') {
    const source = env.MAILRING_DB === options.db ? 'MAILRING_DB' : '--db'
    return parseStoreUrl(options.db, source, cwd, {env, config})
  }
  if (env.MAILRING_DB) return parseStoreUrl(env.MAILRING_DB, 'MAILRING_DB', cwd, {env, config})

  const configPath = locateConfigFile(options.config, env, cwd)
  if (configPath) {
    const fromConfig = dbFromConfig(readConfigFile(configPath), env)
    if (fromConfig) return fromConfig
  }
  const dataHome =
    env.XDG_DATA_HOME && isAbsolute(env.XDG_DATA_HOME)
      ? env.XDG_DATA_HOME
      : join(homeOf(env), '.local', 'share')
  return {kind: 'sqlite', path: join(dataHome, 'mailring', 'cluster.db'), source: 'default'}
}

/** `sqlite:PATH` (relative to `base`) or `mysql://user@host:port/database` (password and TLS apart). */
export function parseStoreUrl(
  url: string,
  source: string,
  base: string,
  context: {env?: NodeJS.ProcessEnv; config?: () => ConfigFile | undefined} = {},
): StoreLocation {
  if (url.startsWith('sqlite:')) {
    let path = url.slice('sqlite:'.length)
    if (path.startsWith('//')) path = path.slice(2)
    if (path === '') throw storeUrlError(`${source}: "sqlite:" needs a file path, e.g. sqlite:./cluster.db`)
    return {kind: 'sqlite', path: resolve(base, path), source}
  }
  if (/^(mysql|mariadb):\/\//i.test(url)) {
    const config = context.config?.()
    return {
      kind: 'mysql',
      settings: resolveMysqlSettings({
        url,
        source,
        env: context.env ?? process.env,
        ...(config ? {config} : {}),
      }),
      source,
    }
  }
  if (!/^[a-z][a-z0-9+.-]*:/i.test(url) || /^[a-z]:[\\/]/i.test(url)) {
    // A bare path, the commonest slip: bad input (exit 1), with the URL that was meant.
    throw new MailringError(
      `${source}: "${url}" is a file path, not a store URL: use sqlite:${url} (or mysql://USER@HOST:PORT/DATABASE).`,
      {code: 'store_url', exitCode: ExitCode.error},
    )
  }
  throw storeUrlError(
    `${source}: "${redactUrl(url)}" is not a store URL: use sqlite:PATH (e.g. sqlite:./cluster.db) or mysql://USER@HOST:PORT/DATABASE.`,
  )
}

// The store drivers are imported when a store is opened, not with this module: mysql2 and better-sqlite3
// cost most of a command's start-up, and commands that take --topology open no store at all.

/** Opens the located store, which `mailring init` created. */
export async function openStore(location: StoreLocation): Promise<Store> {
  if (location.kind === 'mysql') return (await import('./mysql.js')).MysqlStore.open(location.settings)
  return (await import('./sqlite.js')).SqliteStore.open(location.path)
}

/** Creates and initialises the store (mailring init); finds it when it exists already. */
export async function initStore(
  location: StoreLocation,
  options: {copies?: number} = {},
): Promise<{store: Store; created: boolean}> {
  if (location.kind === 'mysql')
    return (await import('./mysql.js')).MysqlStore.init(location.settings, options)
  return (await import('./sqlite.js')).SqliteStore.init(location.path, options)
}

function dbFromConfig(config: ConfigFile, env: NodeJS.ProcessEnv): StoreLocation | undefined {
  const path = config.path
  const db = config.section('db')
  if (db === undefined || db === null) return undefined
  if (typeof db !== 'string' || db === '') {
    throw new MailringError(
      describeIssues(config.file, [
        {
          path: ['db'],
          message:
            'db must be a store URL, e.g. sqlite:./cluster.db or mysql://mailring@db.example.net/mailring',
        },
      ]),
    )
  }
  const line = config.file.lineOf(['db'])
  // A relative path in a config file is relative to the file, not to wherever mailring runs.
  return parseStoreUrl(db, `${path}${line === undefined ? '' : `:${line}`}: db`, dirname(path), {
    env,
    config: () => config,
  })
}

function storeUrlError(message: string): MailringError {
  return new MailringError(message, {code: 'store_url', exitCode: ExitCode.store})
}
