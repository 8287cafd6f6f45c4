/**
 * The `dovecot` section of the config file: how Dovecot's SQL configuration is rendered and installed.
 * Every problem is reported as `file:line: dovecot.key: message`.
 *
 *   dovecot:
 *     version: "2.3"                  # or "2.4"; per server: versions: {mx01: "2.4"}
 *     config_path: /etc/dovecot/dovecot-sql.conf.ext
 *     owner: root                     # owner, group and mode of the installed file
 *     group: dovecot
 *     mode: "0640"
 *     doveconf: doveconf              # command prefixes on the servers, e.g. "doveadm -c /etc/dovecot/dovecot.conf"
 *     doveadm: doveadm
 *     verify_lookup: true             # after the reload, look up one user this server holds
 *     home: /var/vmail/%d/%n
 *     uid: vmail
 *     gid: vmail
 *     default_pass_scheme: SHA512-CRYPT
 *     password_column: password       # in users_table
 *     doveadm_port: 12345             # mail_replica = tcp:<peer address>:<doveadm_port>
 *     replica_scheme: tcp             # or tcps
 *     proxy_timeout: 10               # seconds (proxy passdb); above the backend's 2 s auth_failure_delay
 *     sqlite_path: /var/lib/mailring/cluster.db    # SQLite store: the file as the servers see it
 *     db_hosts: [db1, db2]            # MySQL store: what Dovecot connects to (default: the store's host)
 *     db_name: mailring               # default: the store's database
 *     db_user: dovecot                # the database user Dovecot connects as
 *     db_password_file: /etc/mailring/dovecot-db-password   # or MAILRING_DOVECOT_DB_PASSWORD
 */
import {readFileSync} from 'node:fs'
import {dirname, isAbsolute, resolve} from 'node:path'

import {MailringError} from '../core/errors.js'
import type {ValidationIssue} from '../core/validate.js'
import type {ConfigFile} from '../config/config-file.js'
import {describeIssues} from '../config/yaml-file.js'
import {DOVECOT_VERSIONS, type DovecotVersion} from './render.js'

export interface DovecotSettings {
  version: DovecotVersion
  versions: Record<string, DovecotVersion>
  /** Explicit config_path; undefined: the default for the server's Dovecot version. */
  configPath?: string
  owner: string
  group: string
  mode: number
  doveconf: string
  doveadm: string
  verifyLookup: boolean
  home: string
  uid: string
  gid: string
  defaultPassScheme?: string
  passwordColumn: string
  doveadmPort: number
  replicaScheme: 'tcp' | 'tcps'
  proxyTimeoutSeconds: number
  sqlitePath?: string
  dbHosts?: string[]
  dbPort?: number
  dbName?: string
  dbUser?: string
  /** Where the password of db_user comes from (read only when rendering for MySQL). */
  dbPasswordFile?: string
}

export const DEFAULT_DOVECOT_SETTINGS: DovecotSettings = {
  version: '2.3',
  versions: {},
  owner: 'root',
  group: 'dovecot',
  mode: 0o640,
  doveconf: 'doveconf',
  doveadm: 'doveadm',
  verifyLookup: true,
  home: '/var/vmail/%d/%n',
  uid: 'vmail',
  gid: 'vmail',
  passwordColumn: 'password',
  doveadmPort: 12345,
  replicaScheme: 'tcp',
  // Above a backend's auth_failure_delay (2 s by default): with 2, the proxy gave up on a wrong password
  // before the backend refused it, and the client was told the account was unavailable (docs/dovecot-facts.md).
  proxyTimeoutSeconds: 10,
}

export const DEFAULT_CONFIG_PATHS: Record<DovecotVersion, string> = {
  '2.3': '/etc/dovecot/dovecot-sql.conf.ext',
  '2.4': '/etc/dovecot/conf.d/mailring-sql.conf',
}

const KEYS = [
  'version',
  'versions',
  'config_path',
  'owner',
  'group',
  'mode',
  'doveconf',
  'doveadm',
  'verify_lookup',
  'home',
  'uid',
  'gid',
  'default_pass_scheme',
  'password_column',
  'doveadm_port',
  'replica_scheme',
  'proxy_timeout',
  'sqlite_path',
  'db_hosts',
  'db_port',
  'db_name',
  'db_user',
  'db_password_file',
] as const

const ACCOUNT = /^[A-Za-z_][A-Za-z0-9_-]{0,31}$|^[0-9]{1,10}$/

/** Parses the `dovecot` section (undefined: all defaults). Relative paths are relative to the config file. */
export function parseDovecotSettings(config: ConfigFile | undefined): DovecotSettings {
  const settings: DovecotSettings = {...DEFAULT_DOVECOT_SETTINGS, versions: {}}
  const raw = config?.section('dovecot')
  if (raw === undefined || raw === null || config === undefined) return settings
  const issues: ValidationIssue[] = []
  const problem = (key: string | (string | number)[], message: string) =>
    issues.push({path: ['dovecot', ...(Array.isArray(key) ? key : [key])], message})
  if (typeof raw !== 'object' || Array.isArray(raw)) {
    throw new MailringError(
      describeIssues(config.file, [{path: ['dovecot'], message: 'dovecot is a mapping of settings'}]),
    )
  }
  const r = raw as Record<string, unknown>
  const base = dirname(config.path)
  for (const key of Object.keys(r)) {
    if (!(KEYS as readonly string[]).includes(key))
      problem(key, `unknown key "${key}" (expected one of ${KEYS.join(', ')})`)
  }
  const text = (key: string, check?: (v: string) => string | undefined): string | undefined => {
    const v = r[key]
    if (v === undefined || v === null) return undefined
    const s = typeof v === 'number' ? String(v) : v
    if (typeof s !== 'string' || s.trim() === '' || /[\n\r]/.test(s)) {
      problem(key, `${key} must be a non-empty text on one line`)
      return undefined
    }
    const error = check?.(s)
    if (error) {
      problem(key, error)
      return undefined
    }
    return s
  }
  const path = (key: string): string | undefined => {
    const p = text(key)
    return p === undefined ? undefined : isAbsolute(p) ? p : resolve(base, p)
  }
  const int = (key: string, min: number, max: number): number | undefined => {
    const v = r[key]
    if (v === undefined || v === null) return undefined
    if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) {
      problem(key, `${key} must be a whole number from ${min} to ${max}`)
      return undefined
    }
    return v
  }
  const version = (v: unknown, key: (string | number)[]): DovecotVersion | undefined => {
    const s = typeof v === 'number' ? v.toFixed(1) : v
    if (!DOVECOT_VERSIONS.includes(s as DovecotVersion)) {
      problem(key, `a Dovecot version is "2.3" or "2.4" (got ${JSON.stringify(v)})`)
      return undefined
    }
    return s as DovecotVersion
  }

  if (r.version !== undefined) settings.version = version(r.version, ['version']) ?? settings.version
  if (r.versions !== undefined) {
    if (typeof r.versions !== 'object' || r.versions === null || Array.isArray(r.versions)) {
      problem('versions', 'versions maps server names to "2.3" or "2.4", e.g. {mx01: "2.4"}')
    } else {
      for (const [name, v] of Object.entries(r.versions)) {
        const parsed = version(v, ['versions', name])
        if (parsed) settings.versions[name] = parsed
      }
    }
  }
  const configPath = text('config_path', (v) =>
    v.startsWith('/') ? undefined : 'config_path must be an absolute path on the servers',
  )
  if (configPath) settings.configPath = configPath
  const account = (v: string) => (ACCOUNT.test(v) ? undefined : 'must be a user or group name, or a number')
  settings.owner = text('owner', account) ?? settings.owner
  settings.group = text('group', account) ?? settings.group
  // A YAML number cannot be trusted as a mode: 0o640 arrives as 416, which would read as octal 0416.
  if (typeof r.mode === 'number')
    problem('mode', `write the mode in quotes, e.g. mode: "0640" (got ${r.mode})`)
  const mode =
    typeof r.mode === 'number'
      ? undefined
      : text('mode', (v) =>
          /^0?[0-7]{3}$/.test(v) ? undefined : 'mode is octal permission bits in quotes, e.g. "0640"',
        )
  if (mode) settings.mode = parseInt(mode, 8)
  settings.doveconf = text('doveconf') ?? settings.doveconf
  settings.doveadm = text('doveadm') ?? settings.doveadm
  if (r.verify_lookup !== undefined) {
    if (typeof r.verify_lookup !== 'boolean') problem('verify_lookup', 'verify_lookup is true or false')
    else settings.verifyLookup = r.verify_lookup
  }
  settings.home = text('home') ?? settings.home
  settings.uid = text('uid', account) ?? settings.uid
  settings.gid = text('gid', account) ?? settings.gid
  const scheme = text('default_pass_scheme')
  if (scheme) settings.defaultPassScheme = scheme
  settings.passwordColumn = text('password_column') ?? settings.passwordColumn
  settings.doveadmPort = int('doveadm_port', 1, 65535) ?? settings.doveadmPort
  const replicaScheme = text('replica_scheme', (v) =>
    v === 'tcp' || v === 'tcps' ? undefined : 'replica_scheme is tcp or tcps',
  )
  if (replicaScheme) settings.replicaScheme = replicaScheme as 'tcp' | 'tcps'
  settings.proxyTimeoutSeconds = int('proxy_timeout', 1, 600) ?? settings.proxyTimeoutSeconds
  const sqlitePath = text('sqlite_path', (v) =>
    v.startsWith('/') ? undefined : 'sqlite_path must be an absolute path on the servers',
  )
  if (sqlitePath) settings.sqlitePath = sqlitePath
  if (r.db_hosts !== undefined) {
    const hosts = typeof r.db_hosts === 'string' ? [r.db_hosts] : r.db_hosts
    if (!Array.isArray(hosts) || hosts.length === 0 || !hosts.every((h) => typeof h === 'string' && h !== ''))
      problem('db_hosts', 'db_hosts is a host name or a list of them')
    else settings.dbHosts = hosts as string[]
  }
  const dbPort = int('db_port', 1, 65535)
  if (dbPort) settings.dbPort = dbPort
  const dbName = text('db_name')
  if (dbName) settings.dbName = dbName
  const dbUser = text('db_user')
  if (dbUser) settings.dbUser = dbUser
  const passwordFile = path('db_password_file')
  if (passwordFile) settings.dbPasswordFile = passwordFile

  if (issues.length > 0)
    throw new MailringError(describeIssues(config.file, issues), {code: 'invalid_config'})
  return settings
}

/** The Dovecot version of one server: `versions[name]`, else `version`. */
export function versionOf(settings: DovecotSettings, server: string): DovecotVersion {
  return settings.versions[server] ?? settings.version
}

export function configPathOf(settings: DovecotSettings, version: DovecotVersion): string {
  return settings.configPath ?? DEFAULT_CONFIG_PATHS[version]
}

/**
 * The password of the database user Dovecot connects as: MAILRING_DOVECOT_DB_PASSWORD, else the first
 * line of dovecot.db_password_file. Never from the command line.
 */
export function dovecotDbPassword(settings: DovecotSettings, env: NodeJS.ProcessEnv = process.env): string {
  const fromEnv = env.MAILRING_DOVECOT_DB_PASSWORD
  if (fromEnv !== undefined && fromEnv !== '') return fromEnv
  if (settings.dbPasswordFile === undefined) {
    throw new MailringError(
      'The password of the database user Dovecot connects as is not set: put it in a file named by dovecot.db_password_file in the config file (or set MAILRING_DOVECOT_DB_PASSWORD).',
      {code: 'invalid_config'},
    )
  }
  let content: string
  try {
    content = readFileSync(settings.dbPasswordFile, 'utf8')
  } catch (error) {
    throw new MailringError(
      `Cannot read dovecot.db_password_file ${settings.dbPasswordFile}: ${(error as Error).message}.`,
      {code: 'invalid_config'},
    )
  }
  const password = content.split(/\r?\n/)[0] ?? ''
  if (password === '')
    throw new MailringError(`dovecot.db_password_file ${settings.dbPasswordFile} is empty.`, {
      code: 'invalid_config',
    })
  return password
}
