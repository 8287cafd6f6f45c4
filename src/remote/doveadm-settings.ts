/**
 * The `doveadm` section of the config file: how mailring talks to each server's doveadm. Every problem is
 * reported as `file:line: doveadm.key: message`.
 *
 *   doveadm:
 *     transport: http                  # http: the doveadm HTTP API; ssh: the doveadm command over SSH
 *     transports: {mx03: ssh}          # per server, where the HTTP API is not enabled
 *     http_port: 8080                  # service doveadm { inet_listener http { port = 8080 } }
 *     http_ports: {mx07: 8081}         # per server, where it differs
 *     https: false
 *     password_file: /etc/mailring/doveadm-password   # mode 0600; or MAILRING_DOVEADM_PASSWORD
 *     timeout: 60                      # seconds per request
 *     retries: 3                       # after a temporary failure, with back-off
 *     per_server: 4                    # requests in flight to one server
 *     lock_timeout: 60                 # doveadm sync -l: seconds to wait for the user's lock
 *
 * The doveadm port the servers sync with each other over (doveadm sync tcp:HOST:PORT) is dovecot.doveadm_port.
 */
import {dirname, isAbsolute, resolve} from 'node:path'

import {MailringError} from '../core/errors.js'
import type {ValidationIssue} from '../core/validate.js'
import type {ConfigFile} from '../config/config-file.js'
import {readPasswordFile} from '../config/secret-file.js'
import {describeIssues} from '../config/yaml-file.js'

export type DoveadmTransportKind = 'http' | 'ssh'
export const DOVEADM_PASSWORD_ENV = 'MAILRING_DOVEADM_PASSWORD'

export interface DoveadmSettings {
  transport: DoveadmTransportKind
  transports: Record<string, DoveadmTransportKind>
  httpPort: number
  httpPorts: Record<string, number>
  https: boolean
  passwordFile?: string
  timeoutMs: number
  retries: number
  perServer: number
  lockSeconds: number
}

export const DEFAULT_DOVEADM_SETTINGS: DoveadmSettings = {
  transport: 'http',
  transports: {},
  httpPort: 8080,
  httpPorts: {},
  https: false,
  timeoutMs: 60_000,
  retries: 3,
  perServer: 4,
  lockSeconds: 60,
}

const KEYS = [
  'transport',
  'transports',
  'http_port',
  'http_ports',
  'https',
  'password_file',
  'timeout',
  'retries',
  'per_server',
  'lock_timeout',
]
const KINDS: readonly string[] = ['http', 'ssh']

export function parseDoveadmSettings(config: ConfigFile | undefined): DoveadmSettings {
  const settings: DoveadmSettings = {...DEFAULT_DOVEADM_SETTINGS, transports: {}, httpPorts: {}}
  const raw = config?.section('doveadm')
  if (raw === undefined || raw === null || config === undefined) return settings
  if (typeof raw !== 'object' || Array.isArray(raw))
    throw new MailringError(
      describeIssues(config.file, [{path: ['doveadm'], message: 'doveadm is a mapping of settings'}]),
      {code: 'invalid_config'},
    )
  const r = raw as Record<string, unknown>
  const issues: ValidationIssue[] = []
  const problem = (path: (string | number)[], message: string) =>
    issues.push({path: ['doveadm', ...path], message})
  for (const key of Object.keys(r))
    if (!KEYS.includes(key)) problem([key], `unknown key "${key}" (expected one of ${KEYS.join(', ')})`)
  const whole = (key: string, min: number, max: number, what: string): number | undefined => {
    const v = r[key]
    if (v === undefined || v === null) return undefined
    if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) {
      problem([key], `${key} is ${what}, from ${min} to ${max} (got ${JSON.stringify(v)})`)
      return undefined
    }
    return v
  }
  const kind = (path: (string | number)[], v: unknown): DoveadmTransportKind | undefined => {
    if (typeof v === 'string' && KINDS.includes(v)) return v as DoveadmTransportKind
    problem(path, `a transport is http or ssh (got ${JSON.stringify(v)})`)
    return undefined
  }
  if (r.transport !== undefined && r.transport !== null)
    settings.transport = kind(['transport'], r.transport) ?? 'http'
  if (r.transports !== undefined && r.transports !== null) {
    if (typeof r.transports !== 'object' || Array.isArray(r.transports))
      problem(['transports'], 'transports maps server names to http or ssh, e.g. {mx03: ssh}')
    else
      for (const [server, v] of Object.entries(r.transports as Record<string, unknown>)) {
        const k = kind(['transports', server], v)
        if (k) settings.transports[server] = k
      }
  }
  settings.httpPort = whole('http_port', 1, 65535, 'a TCP port') ?? settings.httpPort
  if (r.http_ports !== undefined && r.http_ports !== null) {
    if (typeof r.http_ports !== 'object' || Array.isArray(r.http_ports))
      problem(['http_ports'], 'http_ports maps server names to ports, e.g. {mx07: 8081}')
    else
      for (const [server, v] of Object.entries(r.http_ports as Record<string, unknown>)) {
        if (typeof v === 'number' && Number.isInteger(v) && v >= 1 && v <= 65535)
          settings.httpPorts[server] = v
        else
          problem(
            ['http_ports', server],
            `a port is a whole number from 1 to 65535 (got ${JSON.stringify(v)})`,
          )
      }
  }
  if (r.https !== undefined && r.https !== null) {
    if (typeof r.https !== 'boolean') problem(['https'], 'https is true or false')
    else settings.https = r.https
  }
  if (r.password_file !== undefined && r.password_file !== null) {
    if (typeof r.password_file !== 'string' || r.password_file === '')
      problem(['password_file'], 'password_file is the path of a file holding the doveadm password')
    else
      settings.passwordFile = isAbsolute(r.password_file)
        ? r.password_file
        : resolve(dirname(config.path), r.password_file)
  }
  const timeout = whole('timeout', 1, 3600, 'a number of seconds')
  if (timeout !== undefined) settings.timeoutMs = timeout * 1000
  settings.retries = whole('retries', 0, 10, 'a count') ?? settings.retries
  settings.perServer = whole('per_server', 1, 64, 'a count of requests') ?? settings.perServer
  settings.lockSeconds = whole('lock_timeout', 1, 3600, 'a number of seconds') ?? settings.lockSeconds
  if (issues.length > 0)
    throw new MailringError(describeIssues(config.file, issues), {code: 'invalid_config'})
  return settings
}

export function httpPortOf(settings: DoveadmSettings, server: string): number {
  return settings.httpPorts[server] ?? settings.httpPort
}

export function transportOf(settings: DoveadmSettings, server: string): DoveadmTransportKind {
  return settings.transports[server] ?? settings.transport
}

/**
 * The doveadm password: MAILRING_DOVEADM_PASSWORD, else the first line of doveadm.password_file (mode
 * 0600). Never from the command line, never printed.
 */
export function doveadmPassword(settings: DoveadmSettings, env: NodeJS.ProcessEnv = process.env): string {
  const fromEnv = env[DOVEADM_PASSWORD_ENV]
  if (fromEnv !== undefined && fromEnv !== '') return fromEnv
  if (settings.passwordFile === undefined)
    throw new MailringError(
      `The doveadm password is not set: set ${DOVEADM_PASSWORD_ENV}, or name a file holding it (mode 0600) with doveadm.password_file in the config file.`,
      {code: 'invalid_config'},
    )
  return readPasswordFile(settings.passwordFile)
}
