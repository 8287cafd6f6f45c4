/**
 * The `replicator` section of the config file: how `mailring replicator` listens, how Dovecot reaches it,
 * and its timings (docs/decisions/0004-replicator.md). Every problem is reported as
 * `file:line: replicator.key: message`.
 *
 *   replicator:
 *     listen: 127.0.0.1:8425          # POST /events, GET /metrics, GET /healthz (HOST:PORT, [IPv6]:PORT)
 *     url: http://10.0.0.5:8425       # how Dovecot reaches it (default: http://<listen>)
 *     secret_file: /etc/mailring/replicator.secret   # mode 0600; or MAILRING_REPLICATOR_SECRET
 *     debounce: 500ms                 # a user is due this long after its last change ...
 *     max_delay: 5s                   # ... but no later than this after its first
 *     full_sync_interval: 24h         # every user is synced once per interval anyway
 *     per_server: 4                   # syncs in flight touching one server
 *     probe_interval: 500ms
 *     probe_timeout: 1s
 *     down_after: 2                   # failed probes
 *     up_after: 3                     # good probes
 *
 * Like the other sections, only the secret has an environment variable (MAILRING_REPLICATOR_SECRET); the
 * rest is the config file's.
 */
import {isIP} from 'node:net'
import {dirname, isAbsolute, resolve} from 'node:path'

import {parseDuration} from '../../core/duration.js'
import {MailringError} from '../../core/errors.js'
import type {ValidationIssue} from '../../core/validate.js'
import type {ConfigFile} from '../../config/config-file.js'
import {readPasswordFile} from '../../config/secret-file.js'
import {describeIssues} from '../../config/yaml-file.js'

export const REPLICATOR_SECRET_ENV = 'MAILRING_REPLICATOR_SECRET'

export interface ListenAddress {
  /** An IP address or host name (IPv6 without brackets). */
  host: string
  port: number
}

export interface ReplicatorSettings {
  listen: ListenAddress
  /** Explicit url; undefined: http://<listen> (see replicatorUrl). */
  url?: string
  secretFile?: string
  debounceMs: number
  maxDelayMs: number
  fullSyncIntervalMs: number
  perServer: number
}

export const DEFAULT_REPLICATOR_SETTINGS: ReplicatorSettings = {
  listen: {host: '127.0.0.1', port: 8425},
  debounceMs: 500,
  maxDelayMs: 5_000,
  fullSyncIntervalMs: 24 * 3_600_000,
  perServer: 4,
}

const KEYS = [
  'listen',
  'url',
  'secret_file',
  'debounce',
  'max_delay',
  'full_sync_interval',
  'per_server',
  'probe_interval',
  'probe_timeout',
  'down_after',
  'up_after',
  'probe_ports',
  'probe_ports_by_server',
]

const HOST_NAME = /^[A-Za-z0-9](?:[A-Za-z0-9.-]{0,251}[A-Za-z0-9])?$/

/** HOST:PORT or [IPv6]:PORT, or the reason it is not one. */
export function parseListen(text: string): ListenAddress | string {
  const m = /^\[([0-9A-Fa-f:.]+)\]:(\d{1,5})$/.exec(text) ?? /^([^:[\]]+):(\d{1,5})$/.exec(text)
  if (!m) return `listen is HOST:PORT or [IPv6]:PORT, e.g. 127.0.0.1:8425 (got ${JSON.stringify(text)})`
  const host = m[1]!
  const port = Number(m[2])
  if (port < 1 || port > 65535) return `the port is from 1 to 65535 (got ${port})`
  if (text.startsWith('[') ? isIP(host) !== 6 : isIP(host) === 0 && !HOST_NAME.test(host))
    return `"${host}" is not an IP address or host name`
  return {host, port}
}

/** Parses the `replicator` section (undefined: all defaults). Relative paths are relative to the config file. */
export function parseReplicatorSettings(config: ConfigFile | undefined): ReplicatorSettings {
  const settings: ReplicatorSettings = {...DEFAULT_REPLICATOR_SETTINGS}
  const raw = config?.section('replicator')
  if (raw === undefined || raw === null || config === undefined) return settings
  if (typeof raw !== 'object' || Array.isArray(raw))
    throw new MailringError(
      describeIssues(config.file, [{path: ['replicator'], message: 'replicator is a mapping of settings'}]),
      {code: 'invalid_config'},
    )
  const r = raw as Record<string, unknown>
  const issues: ValidationIssue[] = []
  const problem = (key: string, message: string) => issues.push({path: ['replicator', key], message})
  for (const key of Object.keys(r))
    if (!KEYS.includes(key)) problem(key, `unknown key "${key}" (expected one of ${KEYS.join(', ')})`)
  const present = (key: string) => r[key] !== undefined && r[key] !== null
  const text = (key: string, what: string): string | undefined => {
    if (!present(key)) return undefined
    const v = r[key]
    if (typeof v !== 'string' || v.trim() === '' || /[\r\n]/.test(v)) {
      problem(key, `${key} is ${what}`)
      return undefined
    }
    return v
  }
  const duration = (key: string, minMs: number, maxMs: number): number | undefined => {
    if (!present(key)) return undefined
    const v = r[key]
    let ms: number | undefined
    if (typeof v === 'string') {
      try {
        ms = parseDuration(v, key)
      } catch {
        ms = undefined
      }
    }
    if (ms === undefined || ms < minMs || ms > maxMs) {
      problem(
        key,
        `${key} is a duration from ${formatMs(minMs)} to ${formatMs(maxMs)}, e.g. 500ms, 5s, 24h (got ${JSON.stringify(v)})`,
      )
      return undefined
    }
    return ms
  }
  const count = (key: string, min: number, max: number): number | undefined => {
    if (!present(key)) return undefined
    const v = r[key]
    if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) {
      problem(key, `${key} is a whole number from ${min} to ${max} (got ${JSON.stringify(v)})`)
      return undefined
    }
    return v
  }

  const listen = text('listen', 'HOST:PORT, e.g. 127.0.0.1:8425')
  if (listen !== undefined) {
    const parsed = parseListen(listen)
    if (typeof parsed === 'string') problem('listen', parsed)
    else settings.listen = parsed
  }
  const url = text('url', 'the URL Dovecot reaches the replicator at, e.g. http://10.0.0.5:8425')
  if (url !== undefined) {
    const error = urlProblem(url)
    if (error) problem('url', error)
    else settings.url = url
  }
  const secretFile = text('secret_file', 'the path of a file holding the shared secret (mode 0600)')
  if (secretFile !== undefined)
    settings.secretFile = isAbsolute(secretFile) ? secretFile : resolve(dirname(config.path), secretFile)
  settings.debounceMs = duration('debounce', 0, 3_600_000) ?? settings.debounceMs
  settings.maxDelayMs = duration('max_delay', 0, 24 * 3_600_000) ?? settings.maxDelayMs
  settings.fullSyncIntervalMs =
    duration('full_sync_interval', 60_000, 365 * 86_400_000) ?? settings.fullSyncIntervalMs
  settings.perServer = count('per_server', 1, 64) ?? settings.perServer
  // The probe keys (probe_*, down_after, up_after) are parsed by probe-settings.ts.
  if (issues.length === 0 && settings.maxDelayMs < settings.debounceMs)
    problem(
      present('max_delay') ? 'max_delay' : 'debounce',
      `max_delay (${formatMs(settings.maxDelayMs)}) must not be shorter than debounce (${formatMs(settings.debounceMs)})`,
    )
  if (issues.length > 0)
    throw new MailringError(describeIssues(config.file, issues), {code: 'invalid_config'})
  return settings
}

function formatMs(ms: number): string {
  if (ms % 86_400_000 === 0 && ms > 0) return `${ms / 86_400_000}d`
  if (ms % 3_600_000 === 0 && ms > 0) return `${ms / 3_600_000}h`
  if (ms % 60_000 === 0 && ms > 0) return `${ms / 60_000}m`
  if (ms % 1_000 === 0 && ms > 0) return `${ms / 1_000}s`
  return `${ms}ms`
}

function urlProblem(url: string): string | undefined {
  let parsed: URL
  try {
    parsed = new URL(url)
  } catch {
    return `url is an http:// or https:// URL, e.g. http://10.0.0.5:8425 (got ${JSON.stringify(url)})`
  }
  if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:')
    return `url starts with http:// or https:// (got ${JSON.stringify(url)})`
  if (parsed.username !== '' || parsed.password !== '')
    return 'url holds no user or password: the secret comes from secret_file'
  if ((parsed.pathname !== '/' && parsed.pathname !== '') || parsed.search !== '' || parsed.hash !== '')
    return 'url has no path: Dovecot posts to <url>/events'
  return undefined
}

/** How Dovecot reaches the replicator: `url`, else http://<listen> (refused for a wildcard address). */
export function replicatorUrl(settings: ReplicatorSettings): string {
  if (settings.url !== undefined) return settings.url.replace(/\/$/, '')
  const {host, port} = settings.listen
  if (host === '0.0.0.0' || host === '::')
    throw new MailringError(
      `replicator.listen is ${host}, an address Dovecot cannot post to: set replicator.url to the address the servers reach the replicator at, e.g. http://10.0.0.5:${port}.`,
      {code: 'invalid_config'},
    )
  return `http://${isIP(host) === 6 ? `[${host}]` : host}:${port}`
}

/**
 * The secret Dovecot sends with each notification: MAILRING_REPLICATOR_SECRET, else the first line of
 * replicator.secret_file (mode 0600). Never from the command line, never printed.
 */
export function replicatorSecret(settings: ReplicatorSettings, env: NodeJS.ProcessEnv = process.env): string {
  const fromEnv = env[REPLICATOR_SECRET_ENV]
  if (fromEnv !== undefined && fromEnv !== '') return fromEnv
  if (settings.secretFile === undefined)
    throw new MailringError(
      `The replicator secret is not set: set ${REPLICATOR_SECRET_ENV}, or name a file holding it (mode 0600) with replicator.secret_file in the config file (make one with \`openssl rand -hex 32\`).`,
      {code: 'invalid_config'},
    )
  return readPasswordFile(settings.secretFile)
}
