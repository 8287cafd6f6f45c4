/**
 * Opening an SSH connection: ~/.ssh/config (ssh-config.ts), the host key checked against known_hosts
 * (known-hosts.ts; accept-new appends), public key authentication with ssh-agent and the key files, and a
 * retry after a transient failure. SshConnection (ssh.ts) wraps the client this hands over.
 */
import * as fs from 'node:fs/promises'

import ssh2 from 'ssh2'
import type {
  AnyAuthMethod,
  AuthenticationType,
  ConnectConfig,
  NextAuthHandler,
  ParsedKey,
  ServerHostKeyAlgorithm,
} from 'ssh2'

import {MailringError} from '../core/errors.js'
import {
  appendKnownHost,
  knownKeyTypes,
  loadKnownHosts,
  verifyHostKey,
  type HostKeyVerification,
  type KnownHostEntry,
  type KnownHosts,
} from './known-hosts.js'
import {
  cached,
  resolveSshHost,
  type HostKeyPolicy,
  type ResolveOptions,
  type ResolvedHost,
} from './ssh-config.js'
import {connectError, displayPath, errorCode, errorLevel, hostKeyError, message} from './ssh-errors.js'
import {coalesceWrites, signWithoutQuery} from './ssh2-patches.js'

const {Client, utils} = ssh2

/** OpenSSH's MaxSessions default; one session stays free for SFTP (reading a file when a command failed). */
export const MAX_SESSIONS = 10
const DEFAULT_MAX_CHANNELS = 4
const DEFAULT_READY_TIMEOUT_MS = 20_000

/** ssh2's host key algorithms, in its default order. */
const HOST_KEY_ALGORITHMS: readonly ServerHostKeyAlgorithm[] = [
  'ssh-ed25519',
  'ecdsa-sha2-nistp256',
  'ecdsa-sha2-nistp384',
  'ecdsa-sha2-nistp521',
  'rsa-sha2-512',
  'rsa-sha2-256',
  'ssh-rsa',
]

export interface SshConnectOptions {
  /** A Host alias from ~/.ssh/config, or a host name or address. */
  host: string
  /** Override the port, user, or key files (like ssh's -p, -l, -i: they win over ~/.ssh/config). */
  port?: number
  user?: string
  identityFiles?: string[]
  /** Use ssh-agent: true (default) uses the configured agent (IdentityAgent or SSH_AUTH_SOCK); a path; false. */
  agent?: boolean | string
  /** Default: from StrictHostKeyChecking, else 'strict'. */
  hostKeyPolicy?: HostKeyPolicy
  /** known_hosts files to read; accept-new appends to the first. Default: UserKnownHostsFile + GlobalKnownHostsFile. */
  knownHostsFiles?: string[]
  /** Handshake timeout including the TCP connect; default ConnectTimeout from ssh config, else 20 s. */
  readyTimeoutMs?: number
  /** Concurrent command channels on this connection (1-9, default 4); reading a file (SFTP) uses one more. */
  maxChannels?: number
  /** Keepalive interval; a server that misses 3 in a row is considered gone. Default 15 s; 0 disables. */
  keepaliveIntervalMs?: number
  /** Connection attempts for transient failures (timeouts, resets, unreachable); default 2. */
  connectAttempts?: number
  /** Delay before retrying; default 1 s. */
  retryDelayMs?: number
  /** How ~/.ssh/config is read (paths, home folder, environment). */
  resolve?: Omit<ResolveOptions, 'user' | 'port' | 'identityFiles' | 'cache'>
  /**
   * Shared by the connections of one run (new SshRunCache()): the ssh config, known_hosts and key files are
   * then read and parsed once per run, not once per server; changes to them during the run are not seen.
   */
  cache?: SshRunCache
  /** Receives notes worth showing in verbose output (skipped keys, added host keys, ignored options). */
  onNote?: (message: string) => void
}

/** What the connections of one run share: see SshConnectOptions.cache. */
export class SshRunCache {
  readonly files = new Map<string, Promise<unknown>>()
}

interface AuthCandidate {
  description: string
  method: AnyAuthMethod
}

/**
 * The identity files as auth attempts. Encrypted keys are skipped (mailring never asks for passphrases: load
 * such a key into ssh-agent), as are unreadable and unparsable ones; each skip is a note.
 */
async function loadIdentities(
  files: readonly string[],
  user: string,
  note: (m: string) => void,
  cache: Map<string, Promise<unknown>> | undefined,
): Promise<AuthCandidate[]> {
  const out: AuthCandidate[] = []
  for (const file of files) {
    const loaded = await cached(cache, `identity\0${file}`, () => loadIdentity(file))
    if ('skip' in loaded) {
      note(`skipping key ${displayPath(file)}: ${loaded.skip}`)
      continue
    }
    out.push({
      description: `key ${displayPath(file)} (${loaded.key.type})`,
      method: {type: 'publickey', username: user, key: loaded.key},
    })
  }
  return out
}

/** One identity file's private key, or why it is skipped. */
async function loadIdentity(file: string): Promise<{key: ParsedKey} | {skip: string}> {
  let data: Buffer
  try {
    data = await fs.readFile(file)
  } catch (error) {
    return {skip: message(error)}
  }
  const parsed = utils.parseKey(data)
  if (parsed instanceof Error) {
    if (/encrypted/i.test(parsed.message))
      return {skip: 'it is encrypted (add it to ssh-agent with ssh-add to use it)'}
    return {skip: parsed.message}
  }
  const key: ParsedKey | undefined = Array.isArray(parsed) ? parsed[0] : parsed
  if (!key || !key.isPrivateKey()) return {skip: 'not a private key'}
  return {key}
}

/** The host key algorithms with those already known for the host first (as OpenSSH orders them). */
function hostKeyAlgorithmOrder(knownTypes: readonly string[]): ServerHostKeyAlgorithm[] {
  const preferred: ServerHostKeyAlgorithm[] = []
  for (const type of knownTypes) {
    const algos = type === 'ssh-rsa' ? ['rsa-sha2-512', 'rsa-sha2-256', 'ssh-rsa'] : [type]
    for (const a of HOST_KEY_ALGORITHMS) {
      if (algos.includes(a) && !preferred.includes(a)) preferred.push(a)
    }
  }
  return [...preferred, ...HOST_KEY_ALGORITHMS.filter((a) => !preferred.includes(a))]
}

const TRANSIENT_CODES = new Set([
  'ECONNRESET',
  'ETIMEDOUT',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'EAI_AGAIN',
  'EPIPE',
])

function isTransient(error: unknown): boolean {
  const cause = error instanceof MailringError ? error.cause : error
  if (errorLevel(cause) === 'client-timeout') return true
  const code = errorCode(cause)
  return typeof code === 'string' && TRANSIENT_CODES.has(code)
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms))
}

/** A client that is connected and authenticated, and how to name its server. */
export interface ConnectedClient {
  client: InstanceType<typeof Client>
  target: ResolvedHost
  /** `alias (hostName)` or the host name, plus `:port` when not 22. */
  label: string
  hostKey: {type: string; fingerprint: string}
  maxChannels: number
}

/**
 * Opens and authenticates an ssh2 Client (retrying transient failures); throws a one-line MailringError
 * when it cannot. `wrap` is called at once when the client is ready, before any other event of it.
 */
export async function connectClient<T>(
  options: SshConnectOptions,
  wrap: (connected: ConnectedClient) => T,
): Promise<T> {
  const note = options.onNote ?? (() => {})
  const cache = options.cache?.files
  const target = await resolveSshHost(options.host, {
    ...options.resolve,
    ...(cache ? {cache} : {}),
    user: options.user,
    port: options.port,
    identityFiles: options.identityFiles,
  })
  for (const n of target.notes) note(n)
  const maxChannels = options.maxChannels ?? DEFAULT_MAX_CHANNELS
  if (!Number.isInteger(maxChannels) || maxChannels < 1 || maxChannels > MAX_SESSIONS - 1) {
    throw new MailringError(`maxChannels must be between 1 and ${MAX_SESSIONS - 1}, not ${maxChannels}.`)
  }

  const knownHostsFiles = options.knownHostsFiles ?? [
    ...target.userKnownHostsFiles,
    ...target.globalKnownHostsFiles,
  ]
  // With a run cache, the connections share one KnownHosts (accept-new adds to it and to the file).
  const knownHosts = await cached(cache, `known_hosts\0${knownHostsFiles.join('\0')}`, () =>
    loadKnownHosts(knownHostsFiles),
  )
  for (const p of knownHosts.problems) note(`${displayPath(p.file)} line ${p.line} ignored: ${p.reason}`)

  // The identity files are read once; ssh2 gets fresh auth attempts on each try.
  const keys = await loadIdentities(target.identityFiles, target.user, note, cache)
  let agent: string | undefined
  if (options.agent === undefined || options.agent === true) agent = target.agentSocket
  else if (typeof options.agent === 'string') agent = options.agent

  const attempts = Math.max(1, options.connectAttempts ?? 2)
  for (let attempt = 1; ; attempt++) {
    try {
      return await connectOnce(
        wrap,
        options,
        target,
        knownHosts,
        knownHostsFiles,
        keys,
        agent,
        maxChannels,
        note,
      )
    } catch (error) {
      if (attempt >= attempts || !isTransient(error)) throw error
      note(`${message(error)} Retrying (attempt ${attempt + 1} of ${attempts}).`)
      await sleep(options.retryDelayMs ?? 1000)
    }
  }
}

function connectOnce<T>(
  wrap: (connected: ConnectedClient) => T,
  options: SshConnectOptions,
  target: ResolvedHost,
  knownHosts: KnownHosts,
  knownHostsFiles: readonly string[],
  keys: readonly AuthCandidate[],
  agent: string | undefined,
  maxChannels: number,
  note: (m: string) => void,
): Promise<T> {
  const {hostName, port, user} = target
  const label = `${target.alias === hostName ? hostName : `${target.alias} (${hostName})`}${port === 22 ? '' : `:${port}`}`
  // HostKeyAlias replaces host and port in known_hosts lookups, as in OpenSSH.
  const lookupHost = target.hostKeyAlias ?? hostName
  const lookupPort = target.hostKeyAlias ? 22 : port
  const policy = options.hostKeyPolicy ?? target.hostKeyPolicy
  const appendTo = options.knownHostsFiles?.[0] ?? target.userKnownHostsFiles[0]
  const readyTimeout = options.readyTimeoutMs ?? target.connectTimeoutMs ?? DEFAULT_READY_TIMEOUT_MS

  const candidates: AuthCandidate[] = []
  if (agent) candidates.push({description: 'ssh-agent', method: {type: 'agent', username: user, agent}})
  candidates.push(...keys)
  if (candidates.length === 0) {
    return Promise.reject(
      new MailringError(
        `No SSH key to log in to ${label} as ${user}: ssh-agent is not available (SSH_AUTH_SOCK) and no usable key file was found (${
          target.identityFiles.length > 0
            ? target.identityFiles.map(displayPath).join(', ')
            : '~/.ssh/id_ed25519, id_ecdsa, id_rsa'
        }): create one with ssh-keygen, or set IdentityFile in ~/.ssh/config.`,
        {code: 'ssh_no_key'},
      ),
    )
  }

  return new Promise((resolve, reject) => {
    const client = new Client()
    let settled = false
    let hostKeyProblem: MailringError | undefined
    let verified: HostKeyVerification | undefined
    const tried: string[] = []
    let serverMethods: AuthenticationType[] | undefined
    const queue = [...candidates]

    const fail = (error: unknown) => {
      if (settled) return
      settled = true
      client.removeAllListeners('ready')
      client.end()
      reject(
        hostKeyProblem ??
          connectError(error, {
            label,
            hostName,
            port,
            user,
            readyTimeout,
            tried,
            serverMethods,
          }),
      )
    }

    const hostVerifier = (key: Buffer, verify: (ok: boolean) => void): void => {
      const v = verifyHostKey(knownHosts, lookupHost, lookupPort, key)
      verified = v
      if (v.status === 'trusted') return verify(true)
      if (v.status === 'unknown' && policy === 'accept-new' && v.otherKeys.length === 0) {
        if (!appendTo) {
          hostKeyProblem = new MailringError(
            `Cannot accept the new host key of ${label} (${v.keyType} ${v.fingerprint}): no known_hosts file is configured (UserKnownHostsFile none).`,
            {code: 'ssh_host_key_unknown'},
          )
          return verify(false)
        }
        appendKnownHost(appendTo, lookupHost, lookupPort, key, {hash: target.hashKnownHosts}).then(
          (entry: KnownHostEntry) => {
            knownHosts.entries.push(entry)
            note(`added the host key of ${label} (${v.keyType} ${v.fingerprint}) to ${displayPath(appendTo)}`)
            verify(true)
          },
          (error: unknown) => {
            hostKeyProblem = error instanceof MailringError ? error : new MailringError(message(error))
            verify(false)
          },
        )
        return
      }
      hostKeyProblem = hostKeyError(v, {
        label,
        lookupHost,
        lookupPort,
        policy,
        appendTo,
        knownHostsFiles,
      })
      verify(false)
    }

    const authHandler = (
      methodsLeft: AuthenticationType[],
      _partial: boolean,
      next: NextAuthHandler,
    ): void => {
      // ssh2 passes null before the first attempt.
      if (methodsLeft) serverMethods = methodsLeft
      // Agent and key file attempts are all "publickey" to the server.
      const candidate = !methodsLeft || methodsLeft.includes('publickey') ? queue.shift() : undefined
      if (!candidate) return next(false as unknown as AuthenticationType)
      tried.push(candidate.description)
      next(candidate.method)
    }

    const config: ConnectConfig = {
      host: hostName,
      port,
      username: user,
      readyTimeout,
      keepaliveInterval: options.keepaliveIntervalMs ?? 15_000,
      keepaliveCountMax: 3,
      hostVerifier,
      authHandler,
      algorithms: {
        serverHostKey: hostKeyAlgorithmOrder(knownKeyTypes(knownHosts, lookupHost, lookupPort)),
      },
    }

    client.once('ready', () => {
      if (settled) return
      settled = true
      client.removeListener('error', onError)
      client.removeListener('close', onCloseBeforeReady)
      resolve(
        wrap({
          client,
          target,
          label,
          hostKey: {type: verified?.keyType ?? 'unknown', fingerprint: verified?.fingerprint ?? 'unknown'},
          maxChannels,
        }),
      )
    })
    const onCloseBeforeReady = () => fail(new Error('Connection closed before the SSH handshake completed'))
    const onError = (error: unknown) => {
      // ssh2 reports an unusable agent as an 'error' but goes on with the next method.
      if (errorLevel(error) === 'agent') {
        const last = tried.pop()
        tried.push(`${last ?? 'ssh-agent'} (unusable: ${message(error)})`)
        note(`ssh-agent ${agent ?? ''} is not usable: ${message(error)}`)
        return
      }
      fail(error)
    }
    client.on('error', onError)
    client.once('close', onCloseBeforeReady)
    try {
      client.connect(config)
      signWithoutQuery(client)
      coalesceWrites(client)
      // No Nagle: ssh2 often sends a request as two small writes, and with Nagle the second waits for the
      // server's delayed ACK (up to 40 ms on Linux) on every round trip, on loopback as over a network.
      client.setNoDelay(true)
    } catch (error) {
      fail(error)
    }
  })
}
