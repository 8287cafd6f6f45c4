/**
 * The `ssh` section of the config file: how mailring reaches the servers. Everything else (port, user,
 * keys, known_hosts, StrictHostKeyChecking) comes from the OpenSSH client configuration, as for `ssh HOST`:
 * the SSH target of a server is its `address` from the store, looked up in ~/.ssh/config (or `config_file`).
 *
 *   ssh:
 *     config_file: ~/.ssh/config       # an OpenSSH client config; "none": read none
 *     known_hosts: [~/.ssh/known_hosts] # instead of UserKnownHostsFile/GlobalKnownHostsFile
 *     user: root                       # wins over User in the ssh config, like ssh -l
 *     identity_file: ~/.ssh/mailring   # wins over IdentityFile, like ssh -i
 *     connect_timeout: 20              # seconds, handshake included
 */
import {homedir} from 'node:os'
import {dirname, isAbsolute, resolve} from 'node:path'

import {MailringError} from '../core/errors.js'
import type {ValidationIssue} from '../core/validate.js'
import type {ConfigFile} from '../config/config-file.js'
import {describeIssues} from '../config/yaml-file.js'

export interface SshSettings {
  /** Path of the OpenSSH client config; undefined: ~/.ssh/config; false: none. */
  configFile?: string | false
  knownHostsFiles?: string[]
  user?: string
  identityFiles?: string[]
  connectTimeoutMs?: number
}

const KEYS = ['config_file', 'known_hosts', 'user', 'identity_file', 'connect_timeout']

export function parseSshSettings(config: ConfigFile | undefined, home = homedir()): SshSettings {
  const settings: SshSettings = {}
  const raw = config?.section('ssh')
  if (raw === undefined || raw === null || config === undefined) return settings
  const issues: ValidationIssue[] = []
  const problem = (key: string, message: string) => issues.push({path: ['ssh', key], message})
  if (typeof raw !== 'object' || Array.isArray(raw)) {
    throw new MailringError(
      describeIssues(config.file, [{path: ['ssh'], message: 'ssh is a mapping of settings'}]),
    )
  }
  const r = raw as Record<string, unknown>
  const base = dirname(config.path)
  const toPath = (p: string) =>
    p === '~' || p.startsWith('~/') ? home + p.slice(1) : isAbsolute(p) ? p : resolve(base, p)
  for (const key of Object.keys(r)) {
    if (!KEYS.includes(key)) problem(key, `unknown key "${key}" (expected one of ${KEYS.join(', ')})`)
  }
  const paths = (key: string): string[] | undefined => {
    const v = r[key]
    if (v === undefined || v === null) return undefined
    const list = typeof v === 'string' ? [v] : v
    if (!Array.isArray(list) || list.length === 0 || !list.every((p) => typeof p === 'string' && p !== '')) {
      problem(key, `${key} is a path or a list of paths`)
      return undefined
    }
    return (list as string[]).map(toPath)
  }
  if (r.config_file !== undefined && r.config_file !== null) {
    if (typeof r.config_file !== 'string' || r.config_file === '')
      problem('config_file', 'config_file is the path of an OpenSSH client config, or "none"')
    else settings.configFile = r.config_file === 'none' ? false : toPath(r.config_file)
  }
  const knownHosts = paths('known_hosts')
  if (knownHosts) settings.knownHostsFiles = knownHosts
  const identities = paths('identity_file')
  if (identities) settings.identityFiles = identities
  if (r.user !== undefined && r.user !== null) {
    if (typeof r.user !== 'string' || !/^[A-Za-z_][A-Za-z0-9._-]{0,31}$/.test(r.user))
      problem('user', 'user is a login name')
    else settings.user = r.user
  }
  if (r.connect_timeout !== undefined && r.connect_timeout !== null) {
    const t = r.connect_timeout
    if (typeof t !== 'number' || !Number.isFinite(t) || t <= 0 || t > 600)
      problem('connect_timeout', 'connect_timeout is a number of seconds (at most 600)')
    else settings.connectTimeoutMs = Math.round(t * 1000)
  }
  if (issues.length > 0)
    throw new MailringError(describeIssues(config.file, issues), {code: 'invalid_config'})
  return settings
}
