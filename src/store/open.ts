import {dirname, isAbsolute, join, resolve} from 'node:path'

import {ExitCode, MailringError} from '../core/errors.js'
import {homeOf, locateConfigFile, readConfigFile} from '../config/config-file.js'
import {describeIssues} from '../config/yaml-file.js'
import {SqliteStore} from './sqlite.js'
import type {Store} from './store.js'

/**
 * Where the store is, first match wins (docs/operators-guide.md, "Where the store is"):
 *   1. --db URL
 *   2. the MAILRING_DB environment variable
 *   3. key `db` of a config file: --config FILE, else MAILRING_CONFIG, else ./mailring.yaml, else
 *      $XDG_CONFIG_HOME/mailring/config.yaml (~/.config/mailring/config.yaml)
 *   4. the embedded default, $XDG_DATA_HOME/mailring/cluster.db (~/.local/share/mailring/cluster.db)
 */
export interface StoreLocation {
  kind: 'sqlite'
  /** Absolute path of the SQLite file. */
  path: string
  /** Where the choice came from, for messages: "--db", "MAILRING_DB", "config FILE", "default". */
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
  if (options.db !== undefined && options.db !== '') {
    const source = env.MAILRING_DB === options.db ? 'MAILRING_DB' : '--db'
    return parseStoreUrl(options.db, source, cwd)
  }
  if (env.MAILRING_DB) return parseStoreUrl(env.MAILRING_DB, 'MAILRING_DB', cwd)

  const configPath = locateConfigFile(options.config, env, cwd)
  if (configPath) {
    const fromConfig = dbFromConfig(configPath)
    if (fromConfig) return fromConfig
  }
  const dataHome =
    env.XDG_DATA_HOME && isAbsolute(env.XDG_DATA_HOME)
      ? env.XDG_DATA_HOME
      : join(homeOf(env), '.local', 'share')
  return {kind: 'sqlite', path: join(dataHome, 'mailring', 'cluster.db'), source: 'default'}
}

/** `sqlite:PATH` (relative to `base`); `mysql://` is recognised and refused until the MySQL store exists. */
export function parseStoreUrl(url: string, source: string, base: string): StoreLocation {
  if (url.startsWith('sqlite:')) {
    let path = url.slice('sqlite:'.length)
    if (path.startsWith('//')) path = path.slice(2)
    if (path === '') throw storeUrlError(`${source}: "sqlite:" needs a file path, e.g. sqlite:./cluster.db`)
    return {kind: 'sqlite', path: resolve(base, path), source}
  }
  if (/^(mysql|mariadb):\/\//i.test(url)) {
    throw storeUrlError(
      `${source}: MySQL/MariaDB stores are not supported yet (they come in the next release); use sqlite:PATH or leave the store unset for the embedded default.`,
    )
  }
  throw storeUrlError(
    `${source}: "${redact(url)}" is not a store URL: use sqlite:PATH (e.g. sqlite:./cluster.db).`,
  )
}

/** Opens the located store, which `mailring init` created. */
export async function openStore(location: StoreLocation): Promise<Store> {
  return SqliteStore.open(location.path)
}

/** Creates and initialises the store (mailring init); finds it when it exists already. */
export async function initStore(
  location: StoreLocation,
  options: {copies?: number} = {},
): Promise<{store: Store; created: boolean}> {
  return SqliteStore.init(location.path, options)
}

function dbFromConfig(path: string): StoreLocation | undefined {
  const config = readConfigFile(path)
  const db = config.section('db')
  if (db === undefined || db === null) return undefined
  if (typeof db !== 'string' || db === '') {
    throw new MailringError(
      describeIssues(config.file, [
        {path: ['db'], message: 'db must be a store URL, e.g. sqlite:./cluster.db'},
      ]),
    )
  }
  const line = config.file.lineOf(['db'])
  // A relative path in a config file is relative to the file, not to wherever mailring runs.
  return parseStoreUrl(db, `${path}${line === undefined ? '' : `:${line}`}: db`, dirname(path))
}

/** A URL without its password, for messages. */
function redact(url: string): string {
  return url.replace(/\/\/([^:/@]*):[^@/]*@/, '//$1:***@')
}

function storeUrlError(message: string): MailringError {
  return new MailringError(message, {code: 'store_url', exitCode: ExitCode.store})
}
