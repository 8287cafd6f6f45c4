/**
 * How to reach a MySQL/MariaDB store: the `mysql://user@host:port/database` URL, the password (from the
 * environment variable MAILRING_DB_PASSWORD or the config file's `db_password_file`, never from argv or
 * the URL) and TLS (the config file's `db_tls` section). Exported for every part of mailring that
 * connects to the same database, e.g. rendering Dovecot's connect string.
 */
import {readFileSync, statSync} from 'node:fs'
import {dirname, resolve} from 'node:path'

import {ExitCode, MailringError} from '../core/errors.js'
import type {ConfigFile} from '../config/config-file.js'
import {readPasswordFile} from '../config/secret-file.js'
import {describeIssues} from '../config/yaml-file.js'

export const DEFAULT_MYSQL_PORT = 3306
export const PASSWORD_ENV = 'MAILRING_DB_PASSWORD'

export interface MysqlTls {
  /** Absolute paths of PEM files; ca alone is the usual case (server certificate checked against it). */
  ca?: string
  cert?: string
  key?: string
  /** Check the server's certificate and host name (default true). */
  verify: boolean
}

export interface MysqlSettings {
  host: string
  port: number
  user: string
  database: string
  /** The password; undefined when none was given (the server may still accept the user). */
  password?: string
  /** Where the password came from, for messages: "MAILRING_DB_PASSWORD", the file, or "none". */
  passwordSource: string
  tls?: MysqlTls
  /** mysql://user@host:port/database: safe to print, never holds a password. */
  location: string
}

export interface ParsedMysqlUrl {
  host: string
  port: number
  user: string
  database: string
}

function urlError(message: string): MailringError {
  return new MailringError(message, {code: 'store_url', exitCode: ExitCode.store})
}

/** A URL without its password, for messages. */
export function redactUrl(url: string): string {
  return url.replace(/\/\/([^:/@]*):[^@/]*@/, '//$1:***@')
}

/** Parses `mysql://user@host[:port]/database` (also `mariadb://`); refuses a password in it. */
export function parseMysqlUrl(url: string, source: string): ParsedMysqlUrl {
  const match =
    /^(?:mysql|mariadb):\/\/(?:([^@/]*)@)?(\[[^\]]+\]|[^:/?#]*)(?::(\d*))?(?:\/([^?#]*))?(\?[^#]*)?$/i.exec(
      url,
    )
  const example = 'mysql://mailring@db.example.net:3306/mailring'
  if (!match) throw urlError(`${source}: "${redactUrl(url)}" is not a MySQL URL: use e.g. ${example}.`)
  const [, userInfo, host, port, database, query] = match
  if (userInfo?.includes(':')) {
    throw urlError(
      `${source}: the store URL holds a password ("${redactUrl(url)}"): passwords never go into URLs or onto the command line; give it in the environment variable ${PASSWORD_ENV} or in a file named by db_password_file in the config file.`,
    )
  }
  const user = decodeURIComponent(userInfo ?? '')
  if (user === '') throw urlError(`${source}: "${redactUrl(url)}" names no user: use e.g. ${example}.`)
  if (!host) throw urlError(`${source}: "${redactUrl(url)}" names no host: use e.g. ${example}.`)
  const db = decodeURIComponent(database ?? '')
  if (db === '' || db.includes('/'))
    throw urlError(`${source}: "${redactUrl(url)}" names no database: use e.g. ${example}.`)
  if (query !== undefined && query !== '?') {
    throw urlError(
      `${source}: "${redactUrl(url)}": the store URL takes no parameters; TLS goes into the config file's db_tls section.`,
    )
  }
  const portNumber = port === undefined || port === '' ? DEFAULT_MYSQL_PORT : Number(port)
  if (!Number.isInteger(portNumber) || portNumber < 1 || portNumber > 65535)
    throw urlError(`${source}: "${redactUrl(url)}": port ${port} is not a TCP port.`)
  return {host: host.replace(/^\[(.*)\]$/, '$1'), port: portNumber, user, database: db}
}

export interface ResolveMysqlOptions {
  url: string
  /** Where the URL came from, for messages ("--db", "MAILRING_DB", "FILE:LINE: db"). */
  source: string
  env?: NodeJS.ProcessEnv
  /** The config file in force, for db_password_file and db_tls. */
  config?: ConfigFile
}

/** Everything needed to connect: URL, password (env, then db_password_file), TLS (db_tls). */
export function resolveMysqlSettings(options: ResolveMysqlOptions): MysqlSettings {
  const env = options.env ?? process.env
  const parsed = parseMysqlUrl(options.url, options.source)
  const location = `mysql://${encodeURIComponent(parsed.user)}@${parsed.host.includes(':') ? `[${parsed.host}]` : parsed.host}:${parsed.port}/${parsed.database}`
  let password: string | undefined
  let passwordSource = 'none'
  const fromEnv = env[PASSWORD_ENV]
  if (fromEnv !== undefined && fromEnv !== '') {
    password = fromEnv
    passwordSource = PASSWORD_ENV
  } else if (options.config) {
    const file = passwordFileFromConfig(options.config)
    if (file !== undefined) {
      password = readPasswordFile(file, ExitCode.store)
      passwordSource = file
    }
  }
  const tls = options.config ? tlsFromConfig(options.config) : undefined
  return {
    ...parsed,
    ...(password === undefined ? {} : {password}),
    passwordSource,
    ...(tls ? {tls} : {}),
    location,
  }
}

function configIssue(config: ConfigFile, path: (string | number)[], message: string): MailringError {
  return new MailringError(describeIssues(config.file, [{path, message}]), {
    code: 'invalid_config',
    exitCode: ExitCode.store,
  })
}

function passwordFileFromConfig(config: ConfigFile): string | undefined {
  const value = config.section('db_password_file')
  if (value === undefined || value === null) return undefined
  if (typeof value !== 'string' || value === '')
    throw configIssue(config, ['db_password_file'], 'db_password_file must be a file path')
  return resolve(dirname(config.path), value)
}

const TLS_KEYS = ['ca', 'cert', 'key', 'verify']

function tlsFromConfig(config: ConfigFile): MysqlTls | undefined {
  const value = config.section('db_tls')
  if (value === undefined || value === null) return undefined
  if (typeof value !== 'object' || Array.isArray(value))
    throw configIssue(
      config,
      ['db_tls'],
      'db_tls is a mapping: ca, cert, key (file paths), verify (true|false)',
    )
  const record = value as Record<string, unknown>
  const unknown = Object.keys(record).find((key) => !TLS_KEYS.includes(key))
  if (unknown !== undefined)
    throw configIssue(
      config,
      ['db_tls', unknown],
      `unknown key "${unknown}" (expected one of ${TLS_KEYS.join(', ')})`,
    )
  const tls: MysqlTls = {verify: true}
  if (record.verify !== undefined) {
    if (typeof record.verify !== 'boolean')
      throw configIssue(config, ['db_tls', 'verify'], 'verify must be true or false')
    tls.verify = record.verify
  }
  for (const key of ['ca', 'cert', 'key'] as const) {
    const path = record[key]
    if (path === undefined || path === null) continue
    if (typeof path !== 'string' || path === '')
      throw configIssue(config, ['db_tls', key], `${key} must be the path of a PEM file`)
    const absolute = resolve(dirname(config.path), path)
    try {
      if (!statSync(absolute).isFile()) throw new Error('not a file')
    } catch (error) {
      const reason =
        (error as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file' : (error as Error).message
      throw configIssue(config, ['db_tls', key], `cannot read ${absolute}: ${reason}`)
    }
    tls[key] = absolute
  }
  if ((tls.cert === undefined) !== (tls.key === undefined))
    throw configIssue(config, ['db_tls'], 'cert and key go together: give both or neither')
  return tls
}

/** The TLS options of mysql2 (and Node's tls) for these settings. */
export function mysqlSslOptions(tls: MysqlTls): {
  ca?: string
  cert?: string
  key?: string
  rejectUnauthorized: boolean
} {
  const read = (path: string | undefined): string | undefined =>
    path === undefined ? undefined : readFileSync(path, 'utf8')
  const ca = read(tls.ca)
  const cert = read(tls.cert)
  const key = read(tls.key)
  return {
    ...(ca === undefined ? {} : {ca}),
    ...(cert === undefined ? {} : {cert}),
    ...(key === undefined ? {} : {key}),
    rejectUnauthorized: tls.verify,
  }
}
