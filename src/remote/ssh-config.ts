/**
 * Resolves how to reach a server from the operator's OpenSSH client configuration (~/.ssh/config), so that
 * mailring connects where, as whom and with which keys `ssh HOST` would.
 *
 * Read: HostName, User, Port, IdentityFile, IdentitiesOnly, IdentityAgent, UserKnownHostsFile,
 * GlobalKnownHostsFile, StrictHostKeyChecking, HashKnownHosts, HostKeyAlias, ConnectTimeout, and Include
 * (inlined, relative to ~/.ssh). `Match exec` is never run (the block is treated as not matching).
 * ProxyJump and ProxyCommand are refused with a clear error rather than silently bypassed.
 */
import * as fs from 'node:fs/promises'
import * as os from 'node:os'
import * as path from 'node:path'

import SSHConfig from 'ssh-config'

import {MailringError} from '../core/errors.js'
import {defaultKnownHostsFiles, wildcardMatch} from './known-hosts.js'

export type HostKeyPolicy = 'strict' | 'accept-new'

export interface ResolvedHost {
  /** The name mailring was given (a Host alias or a real host name). */
  alias: string
  /** The host to connect to (HostName, else the alias). */
  hostName: string
  port: number
  user: string
  /** Private key files to offer, in order; only files that exist. */
  identityFiles: string[]
  /** IdentitiesOnly yes: offer only identityFiles, not the agent's keys. */
  identitiesOnly: boolean
  /** The ssh-agent socket (IdentityAgent, else SSH_AUTH_SOCK); undefined: no agent. */
  agentSocket?: string
  /** Where accept-new records keys (the first one) and where known keys are looked up. */
  userKnownHostsFiles: string[]
  globalKnownHostsFiles: string[]
  /** The name known_hosts lookups use instead of the host name (HostKeyAlias). */
  hostKeyAlias?: string
  /** StrictHostKeyChecking as configured (lowercased), if it is. */
  strictHostKeyChecking?: string
  /**
   * The policy that follows from StrictHostKeyChecking: `accept-new` for accept-new, and also for no/off
   * (mailring never connects to a host whose known key changed); `strict` otherwise (yes, ask, unset).
   */
  hostKeyPolicy: HostKeyPolicy
  hashKnownHosts: boolean
  /** ConnectTimeout, in milliseconds. */
  connectTimeoutMs?: number
  /** Things worth telling the operator in verbose output (missing identity files, ignored options). */
  notes: string[]
}

export interface ResolveOptions {
  /** Path of the user's ssh config file; default ~/.ssh/config. `false`: none. */
  configPath?: string | false
  /** Path of the system-wide ssh config, read after the user's (first value wins); default /etc/ssh/ssh_config. */
  systemConfigPath?: string | false
  /** Home folder for `~`; default os.homedir(). */
  home?: string
  /** Environment for SSH_AUTH_SOCK and `${VAR}`; default process.env. */
  env?: NodeJS.ProcessEnv
  /** The local user name (default: the current user); also the default remote user. */
  localUser?: string
  /** Overrides, like ssh's command-line options: they win over the config file. */
  user?: string
  port?: number
  identityFiles?: string[]
  /**
   * Where a run of many connections keeps the config files it read and parsed, so that each is read once
   * per run rather than once per server (changes to them during the run are not seen).
   */
  cache?: Map<string, Promise<unknown>>
}

const DEFAULT_IDENTITY_FILES = ['id_ed25519', 'id_ecdsa', 'id_rsa']
const MAX_INCLUDE_DEPTH = 16

function currentUser(env: NodeJS.ProcessEnv): string {
  try {
    return os.userInfo().username
  } catch {
    return env.USER ?? env.LOGNAME ?? 'root'
  }
}

export interface TokenContext {
  /** %h: the remote host name. */
  host: string
  /** %n: the original name given on the command line. */
  originalHost: string
  /** %p */
  port: number
  /** %r: the remote user. */
  remoteUser: string
  /** %u: the local user. */
  localUser: string
  /** %d: the local home folder. */
  home: string
}

/**
 * Expands `~`, `${VAR}` and the ssh_config(5) tokens %% %h %n %p %r %u %d %l %L %i in a path-like value.
 * An unknown token is an error: guessing could point at the wrong key or known_hosts file.
 */
export function expandSshPath(
  value: string,
  ctx: TokenContext,
  env: NodeJS.ProcessEnv = process.env,
): string {
  let out = value
  if (out === '~' || out.startsWith('~/')) out = ctx.home + out.slice(1)
  out = out.replace(/\$\{([A-Za-z_][A-Za-z0-9_]*)\}/g, (_m, name: string) => {
    const v = env[name]
    if (v === undefined)
      throw new MailringError(`ssh config: environment variable ${name} in "${value}" is not set.`)
    return v
  })
  const localHost = os.hostname()
  return out.replace(/%(.)/g, (_m, token: string) => {
    switch (token) {
      case '%':
        return '%'
      case 'h':
        return ctx.host
      case 'n':
        return ctx.originalHost
      case 'p':
        return String(ctx.port)
      case 'r':
        return ctx.remoteUser
      case 'u':
        return ctx.localUser
      case 'd':
        return ctx.home
      case 'l':
        return localHost
      case 'L':
        return localHost.split('.')[0] ?? localHost
      case 'i':
        return String(typeof process.getuid === 'function' ? process.getuid() : 0)
      default:
        throw new MailringError(
          `ssh config: the token %${token} in "${value}" is not supported by mailring; write the path out.`,
          {code: 'ssh_config'},
        )
    }
  })
}

async function exists(file: string): Promise<boolean> {
  try {
    await fs.access(file)
    return true
  } catch {
    return false
  }
}

/**
 * Reads a config file with its Include directives inlined. Relative paths are relative to `includeBase`
 * (~/.ssh for the user's file, /etc/ssh for the system file).
 */
async function readConfigText(file: string, home: string, includeBase: string, depth = 0): Promise<string> {
  if (depth > MAX_INCLUDE_DEPTH) {
    throw new MailringError(`ssh config: Include nested more than ${MAX_INCLUDE_DEPTH} deep at ${file}.`, {
      code: 'ssh_config',
    })
  }
  let text: string
  try {
    text = await fs.readFile(file, 'utf8')
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return ''
    throw new MailringError(`Cannot read ssh config ${file}: ${(error as Error).message}.`, {
      code: 'ssh_config',
      cause: error,
    })
  }
  const out: string[] = []
  for (const line of text.split('\n')) {
    const m = /^\s*include\s*[ =]\s*(.+?)\s*$/i.exec(line)
    if (!m) {
      out.push(line)
      continue
    }
    for (const arg of (m[1] ?? '').split(/\s+/)) {
      let p = arg.replace(/^"(.*)"$/, '$1')
      if (p === '~' || p.startsWith('~/')) p = home + p.slice(1)
      else if (!path.isAbsolute(p)) p = path.join(includeBase, p)
      for (const included of await globFiles(p)) {
        out.push(await readConfigText(included, home, includeBase, depth + 1))
      }
    }
  }
  return out.join('\n')
}

/** Files matching a path whose last component may contain `*` or `?`, sorted (as glob(3) returns them). */
async function globFiles(pattern: string): Promise<string[]> {
  const base = path.basename(pattern)
  if (!/[*?]/.test(base)) return [pattern]
  const dir = path.dirname(pattern)
  try {
    const names = await fs.readdir(dir)
    return names
      .filter((n) => !n.startsWith('.') && wildcardMatch(base, n))
      .sort()
      .map((n) => path.join(dir, n))
  } catch {
    return []
  }
}

function first(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value[0] : value
}

function list(value: string | string[] | undefined): string[] {
  if (value === undefined) return []
  return Array.isArray(value) ? value : value.split(/\s+/).filter(Boolean)
}

function yes(value: string | string[] | undefined): boolean {
  return first(value)?.toLowerCase() === 'yes'
}

/** `load()`, or what an earlier call with the same key gave in this cache (a failure is not kept). */
export function cached<T>(
  cache: Map<string, Promise<unknown>> | undefined,
  key: string,
  load: () => Promise<T>,
): Promise<T> {
  if (!cache) return load()
  let entry = cache.get(key) as Promise<T> | undefined
  if (!entry) {
    entry = load()
    cache.set(key, entry)
    entry.catch(() => cache.delete(key))
  }
  return entry
}

/** The user's and the system's config files, parsed as one (undefined when neither is read). */
async function readConfig(
  configPath: string | false,
  systemPath: string | false,
  home: string,
): Promise<{parsed: SSHConfig; matchExec: boolean} | undefined> {
  const texts: string[] = []
  if (configPath !== false) texts.push(await readConfigText(configPath, home, path.join(home, '.ssh')))
  if (systemPath !== false) texts.push(await readConfigText(systemPath, home, path.dirname(systemPath)))
  if (texts.length === 0) return undefined
  // A Host block does not end at the end of a file; `Host *` resets to "applies to every host".
  const text = texts.join('\nHost *\n')
  try {
    return {parsed: SSHConfig.parse(text), matchExec: /^\s*match\b.*\bexec\b/im.test(text)}
  } catch (error) {
    throw new MailringError(`Cannot parse ssh config: ${(error as Error).message}.`, {
      code: 'ssh_config',
      cause: error,
    })
  }
}

/** Resolves a server name the way `ssh NAME` would, from ~/.ssh/config and the OpenSSH defaults. */
export async function resolveSshHost(alias: string, options: ResolveOptions = {}): Promise<ResolvedHost> {
  const env = options.env ?? process.env
  const home = options.home ?? os.homedir()
  const localUser = options.localUser ?? currentUser(env)
  const configPath = options.configPath === undefined ? path.join(home, '.ssh', 'config') : options.configPath
  const systemPath = options.systemConfigPath === undefined ? '/etc/ssh/ssh_config' : options.systemConfigPath
  const notes: string[] = []

  const config = await cached(options.cache, `ssh-config\0${configPath}\0${systemPath}\0${home}`, () =>
    readConfig(configPath, systemPath, home),
  )
  let computed: Record<string, string | string[]> = {}
  if (config) {
    computed = config.parsed.compute({Host: alias}, {ignoreCase: true, matchExec: false})
    if (config.matchExec) notes.push('ssh config: "Match exec" blocks are not evaluated.')
  }
  const get = (name: string): string | string[] | undefined => computed[name.toLowerCase()]

  for (const option of ['ProxyJump', 'ProxyCommand']) {
    const v = first(get(option))
    if (v !== undefined && v.toLowerCase() !== 'none') {
      throw new MailringError(
        `ssh config sets ${option} for ${alias}, which mailring does not support: make the server reachable directly, or give its address instead of ${alias}.`,
        {code: 'ssh_config'},
      )
    }
  }

  const portText = options.port !== undefined ? String(options.port) : first(get('Port'))
  const port = portText === undefined ? 22 : Number(portText)
  if (!Number.isInteger(port) || port < 1 || port > 65535) {
    throw new MailringError(`ssh config: invalid Port ${portText} for ${alias}.`, {code: 'ssh_config'})
  }
  const user = options.user ?? first(get('User')) ?? localUser
  const rawHostName = first(get('HostName'))
  const hostName = rawHostName
    ? rawHostName.replace(/%([%h])/g, (_m, t: string) => (t === '%' ? '%' : alias))
    : alias
  const ctx: TokenContext = {host: hostName, originalHost: alias, port, remoteUser: user, localUser, home}
  const expand = (v: string) => expandSshPath(v, ctx, env)

  // Identity files: explicit ones (overrides, then config) replace OpenSSH's defaults; an explicit empty
  // list means none.
  const configured =
    options.identityFiles ?? list(get('IdentityFile')).filter((f) => f.toLowerCase() !== 'none')
  const explicit = options.identityFiles !== undefined || configured.length > 0
  const candidates = explicit
    ? configured.map(expand)
    : DEFAULT_IDENTITY_FILES.map((f) => path.join(home, '.ssh', f))
  const identityFiles: string[] = []
  for (const file of candidates) {
    if (identityFiles.includes(file)) continue
    if (await exists(file)) identityFiles.push(file)
    else if (explicit) notes.push(`identity file ${file} does not exist.`)
  }

  const identitiesOnly = yes(get('IdentitiesOnly'))
  let agentSocket: string | undefined
  const identityAgent = first(get('IdentityAgent'))
  if (identityAgent === undefined || identityAgent === 'SSH_AUTH_SOCK')
    agentSocket = env.SSH_AUTH_SOCK || undefined
  else if (identityAgent.toLowerCase() !== 'none') {
    agentSocket =
      identityAgent.startsWith('$') && !identityAgent.startsWith('${')
        ? env[identityAgent.slice(1)] || undefined
        : expand(identityAgent)
  }
  if (identitiesOnly) agentSocket = undefined

  const defaults = defaultKnownHostsFiles(home)
  const userFiles = list(get('UserKnownHostsFile')).filter((f) => f.toLowerCase() !== 'none')
  const globalFiles = list(get('GlobalKnownHostsFile')).filter((f) => f.toLowerCase() !== 'none')
  const userKnownHostsFiles = get('UserKnownHostsFile') === undefined ? defaults.user : userFiles.map(expand)
  const globalKnownHostsFiles =
    get('GlobalKnownHostsFile') === undefined ? defaults.global : globalFiles.map(expand)

  const strict = first(get('StrictHostKeyChecking'))?.toLowerCase()
  const hostKeyPolicy: HostKeyPolicy =
    strict === 'accept-new' || strict === 'no' || strict === 'off' ? 'accept-new' : 'strict'
  if (strict === 'no' || strict === 'off') {
    notes.push(
      `StrictHostKeyChecking ${strict} is treated as accept-new: a changed host key is always refused.`,
    )
  }

  const resolved: ResolvedHost = {
    alias,
    hostName,
    port,
    user,
    identityFiles,
    identitiesOnly,
    userKnownHostsFiles,
    globalKnownHostsFiles,
    hostKeyPolicy,
    hashKnownHosts: yes(get('HashKnownHosts')),
    notes,
  }
  if (agentSocket) resolved.agentSocket = agentSocket
  const alias_ = first(get('HostKeyAlias'))
  if (alias_) resolved.hostKeyAlias = alias_
  if (strict) resolved.strictHostKeyChecking = strict
  const timeout = first(get('ConnectTimeout'))
  if (timeout !== undefined && /^\d+$/.test(timeout) && Number(timeout) > 0) {
    resolved.connectTimeoutMs = Number(timeout) * 1000
  }
  return resolved
}
