/**
 * One SSH connection to one server, built on ssh2's Client: host key verification against known_hosts,
 * public key authentication (ssh-agent and key files), and commands with timeouts. Every step mailring
 * takes on a server is a command (exec); SFTP only reads a file, when a command could not run, to name the
 * file's problem. A caller opens one SshConnection per server and runs every step over it.
 *
 * Secrets are never put into messages: not key material, not passphrases, not stdin, and of a command only
 * its `label` (default: its first word), since command lines can carry credentials.
 */
import * as fs from 'node:fs/promises'
import type {Socket} from 'node:net'
import * as os from 'node:os'

import ssh2 from 'ssh2'
import type {
  AnyAuthMethod,
  AuthenticationType,
  ClientChannel,
  ConnectConfig,
  NextAuthHandler,
  ParsedKey,
  ServerHostKeyAlgorithm,
  SFTPWrapper,
} from 'ssh2'

import {MailringError} from '../core/errors.js'
import {
  appendKnownHost,
  fingerprintSha256,
  knownKeyTypes,
  loadKnownHosts,
  verifyHostKey,
  type HostKeyVerification,
  type KnownHostEntry,
  type KnownHosts,
} from './known-hosts.js'
import {Semaphore} from './pool.js'
import {
  cached,
  resolveSshHost,
  type HostKeyPolicy,
  type ResolveOptions,
  type ResolvedHost,
} from './ssh-config.js'

const {Client, utils} = ssh2

/** OpenSSH's MaxSessions default; one session stays free for SFTP (reading a file when a command failed). */
const MAX_SESSIONS = 10
const DEFAULT_MAX_CHANNELS = 4
const DEFAULT_READY_TIMEOUT_MS = 20_000
const DEFAULT_COMMAND_TIMEOUT_MS = 120_000
const DEFAULT_MAX_OUTPUT_BYTES = 64 * 1024 * 1024
/** After a timeout: how long a channel the server has not closed yet still counts toward maxChannels. */
const CHANNEL_RELEASE_GRACE_MS = 5_000

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

export interface ExecOptions {
  /** Written to the command's standard input, which is then closed. Without it, stdin is closed at once. */
  stdin?: string | Buffer
  /**
   * A conversation instead of `stdin`: stdin stays open, and each time the command's stdout grows this is
   * called with all of it so far, until it returns what to write to stdin (which is then closed); undefined:
   * wait for more. E.g. a command prints a file, and what it is sent next depends on it, without a second
   * command (and its round trips). If it throws, stdin is closed at once and exec rejects with its error.
   * Ignored when `stdin` is given.
   */
  respond?: (stdout: Buffer) => string | Buffer | undefined
  /**
   * After this the channel is closed and the command killed; default 120 s. See `remoteKill` for how the
   * command is killed on the server.
   */
  timeoutMs?: number
  /**
   * Make sure a timed-out command dies on the server (default true): the command runs as
   * `timeout -s KILL <timeout + 1 s> "$SHELL" -c '<command>'` (coreutils or busybox `timeout`; without it,
   * as is), since OpenSSH refuses the SSH "signal" request for root logins (root sessions run without
   * privilege separation) and closing the channel does not end a command that produces no output. The
   * command still runs in the login shell, with the same stdin, stdout, stderr and exit status.
   * false: the command string is sent as it is, and a timeout only sends the signal request and closes.
   */
  remoteKill?: boolean
  /** Names the command in error messages instead of its first word. */
  label?: string
  /** Environment variables (sshd accepts only the names its AcceptEnv lists). */
  env?: Record<string, string>
  /** Output kept per stream; the rest is read and dropped (`truncated` says so). Default 64 MiB. */
  maxOutputBytes?: number
}

export interface ExecResult {
  stdout: string
  stderr: string
  /** The exit status; null when the command was ended by a signal or the server sent no status. */
  exitCode: number | null
  /** The signal that ended the command, e.g. `SIGTERM`. */
  signal?: string
  /** Some output was dropped (maxOutputBytes). */
  truncated?: boolean
}

/** SFTP status codes (ssh2's utils.sftp.STATUS_CODE). */
const SFTP_NO_SUCH_FILE = 2
const SFTP_PERMISSION_DENIED = 3

function displayPath(file: string): string {
  const home = os.homedir()
  return home && file.startsWith(home + '/') ? '~' + file.slice(home.length) : file
}

function errorCode(error: unknown): string | number | undefined {
  return (error as {code?: string | number} | undefined)?.code
}

function errorLevel(error: unknown): string | undefined {
  return (error as {level?: string} | undefined)?.level
}

function message(error: unknown): string {
  return error instanceof Error ? error.message : String(error)
}

function seconds(ms: number): string {
  return ms % 1000 === 0 ? `${ms / 1000} s` : `${(ms / 1000).toFixed(1)} s`
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

export class SshConnection {
  /** `alias (hostName)` or the host name, plus `:port` when not 22: how messages name the server. */
  readonly label: string
  /** The host key the server presented, verified. */
  readonly hostKey: {type: string; fingerprint: string}

  private readonly channels: Semaphore
  private sftpSession: Promise<SFTPWrapper> | undefined
  private closed = false
  private closeError: Error | undefined
  private readonly pending = new Set<(error: Error) => void>()

  private constructor(
    private readonly client: InstanceType<typeof Client>,
    readonly target: ResolvedHost,
    label: string,
    hostKey: {type: string; fingerprint: string},
    maxChannels: number,
  ) {
    this.label = label
    this.hostKey = hostKey
    this.channels = new Semaphore(maxChannels)
    client.on('error', (error: Error) => {
      this.closeError ??= error
    })
    client.on('close', () => {
      this.closed = true
      this.sftpSession = undefined
      const error = new MailringError(
        `The SSH connection to ${this.label} was lost${this.closeError ? ` (${this.closeError.message})` : ''}.`,
        {code: 'ssh_connection_lost', cause: this.closeError},
      )
      for (const reject of [...this.pending]) reject(error)
      this.pending.clear()
    })
  }

  /** Opens and authenticates a connection; throws a one-line MailringError when it cannot. */
  static async connect(options: SshConnectOptions): Promise<SshConnection> {
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
        return await SshConnection.connectOnce(
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

  private static connectOnce(
    options: SshConnectOptions,
    target: ResolvedHost,
    knownHosts: KnownHosts,
    knownHostsFiles: readonly string[],
    keys: readonly AuthCandidate[],
    agent: string | undefined,
    maxChannels: number,
    note: (m: string) => void,
  ): Promise<SshConnection> {
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
      let hostKeyError: MailringError | undefined
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
          hostKeyError ??
            SshConnection.mapConnectError(error, {
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
            hostKeyError = new MailringError(
              `Cannot accept the new host key of ${label} (${v.keyType} ${v.fingerprint}): no known_hosts file is configured (UserKnownHostsFile none).`,
              {code: 'ssh_host_key_unknown'},
            )
            return verify(false)
          }
          appendKnownHost(appendTo, lookupHost, lookupPort, key, {hash: target.hashKnownHosts}).then(
            (entry: KnownHostEntry) => {
              knownHosts.entries.push(entry)
              note(
                `added the host key of ${label} (${v.keyType} ${v.fingerprint}) to ${displayPath(appendTo)}`,
              )
              verify(true)
            },
            (error: unknown) => {
              hostKeyError = error instanceof MailringError ? error : new MailringError(message(error))
              verify(false)
            },
          )
          return
        }
        hostKeyError = SshConnection.hostKeyError(v, {
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
          new SshConnection(
            client,
            target,
            label,
            {type: verified?.keyType ?? 'unknown', fingerprint: verified?.fingerprint ?? 'unknown'},
            maxChannels,
          ),
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

  private static hostKeyError(
    v: HostKeyVerification,
    ctx: {
      label: string
      lookupHost: string
      lookupPort: number
      policy: HostKeyPolicy
      appendTo: string | undefined
      knownHostsFiles: readonly string[]
    },
  ): MailringError {
    const key = `${v.keyType} ${v.fingerprint}`
    const file = displayPath(ctx.appendTo ?? ctx.knownHostsFiles[0] ?? '~/.ssh/known_hosts')
    const at = (e: KnownHostEntry) => `line ${e.line} of ${displayPath(e.file)}`
    const scan = `ssh-keyscan ${ctx.lookupPort === 22 ? '' : `-p ${ctx.lookupPort} `}${ctx.lookupHost} >> ${file}`
    switch (v.status) {
      case 'revoked':
        return new MailringError(
          `The host key of ${ctx.label} (${key}) is revoked by ${at(v.matchedLine!)}: connection refused.`,
          {code: 'ssh_host_key_revoked'},
        )
      case 'changed': {
        const old = v.matchedLine!
        return new MailringError(
          `WARNING: the host key of ${ctx.label} changed: it presented ${key}, known_hosts has ${fingerprintOf(old)}: possible man-in-the-middle attack, connection refused; if the change is expected, check the new fingerprint and remove the old ${at(old)} (ssh-keygen -R ${ctx.lookupPort === 22 ? ctx.lookupHost : `'[${ctx.lookupHost}]:${ctx.lookupPort}'`} -f ${displayPath(old.file)}).`,
          {code: 'ssh_host_key_changed'},
        )
      }
      default: {
        if (v.otherKeys.length > 0) {
          const other = v.otherKeys[0]!
          return new MailringError(
            `WARNING: ${ctx.label} presented a ${key} host key, but known_hosts has a ${other.keyType} key for it (${at(other)}) and no ${v.keyType} key: possible man-in-the-middle attack, connection refused even with --accept-new; if the server's keys changed, check the fingerprint and replace that line.`,
            {code: 'ssh_host_key_changed'},
          )
        }
        const ca =
          v.certAuthorities.length > 0
            ? ` (${at(v.certAuthorities[0]!)} trusts a certificate authority for this host, but mailring does not verify host certificates: add the host key itself)`
            : ''
        return new MailringError(
          `The host key of ${ctx.label} is unknown (${key})${ca}: check that fingerprint on the server (ssh-keygen -lf /etc/ssh/ssh_host_${keyFileStem(v.keyType)}_key.pub), then run \`${scan}\`, or connect with --accept-new.`,
          {code: 'ssh_host_key_unknown'},
        )
      }
    }
  }

  private static mapConnectError(
    error: unknown,
    ctx: {
      label: string
      hostName: string
      port: number
      user: string
      readyTimeout: number
      tried: readonly string[]
      serverMethods: AuthenticationType[] | undefined
    },
  ): MailringError {
    const code = errorCode(error)
    const level = errorLevel(error)
    const text = message(error)
    const make = (msg: string, c: string) => new MailringError(msg, {code: c, cause: error})
    if (level === 'client-authentication') {
      const methods = ctx.serverMethods?.length ? `; the server accepts: ${ctx.serverMethods.join(', ')}` : ''
      return make(
        `Authentication failed for ${ctx.user}@${ctx.label}: tried ${ctx.tried.length ? ctx.tried.join(', ') : 'nothing'}${methods}. Add your public key to ~${ctx.user}/.ssh/authorized_keys on the server, or use the right key (IdentityFile, ssh-agent).`,
        'ssh_auth',
      )
    }
    if (level === 'client-timeout' || code === 'ETIMEDOUT') {
      return make(
        `Timed out after ${seconds(ctx.readyTimeout)} connecting to ${ctx.label} over SSH: check the address, the port and firewalls.`,
        'ssh_timeout',
      )
    }
    switch (code) {
      case 'ECONNREFUSED':
        return make(
          `Connection to ${ctx.label} refused: is sshd running there, and listening on port ${ctx.port}?`,
          'ssh_connection_refused',
        )
      case 'ENOTFOUND':
      case 'EAI_AGAIN':
      case 'EAI_NONAME':
        return make(
          `Cannot resolve the host name ${ctx.hostName} (${String(code)}): check the server's address and DNS.`,
          'ssh_dns',
        )
      case 'EHOSTUNREACH':
      case 'ENETUNREACH':
        return make(
          `${ctx.label} is unreachable (${String(code)}): check the address and the network route.`,
          'ssh_unreachable',
        )
      case 'ECONNRESET':
        return make(
          `${ctx.label} closed the connection during the SSH handshake: is this an SSH server, and does it accept connections from here?`,
          'ssh_connection',
        )
    }
    if (level === 'handshake' || level === 'protocol') {
      return make(`SSH handshake with ${ctx.label} failed: ${text}.`, 'ssh_handshake')
    }
    return make(`SSH connection to ${ctx.label} failed: ${text.replace(/\.$/, '')}.`, 'ssh_connection')
  }

  // -------------------------------------------------------------------------------------------------------
  // Commands

  /**
   * Runs a command, collecting stdout and stderr; a non-zero exit is a result, not an error. At most
   * `maxChannels` commands run at once on this connection; the others wait for a free channel (the wait does
   * not count toward the timeout). On timeout the promise rejects at once; the channel stays counted until
   * the server has closed it (or 5 s have passed).
   */
  async exec(command: string, options: ExecOptions = {}): Promise<ExecResult> {
    const label = options.label ?? command.trim().split(/\s+/)[0] ?? command
    const timeoutMs = options.timeoutMs ?? DEFAULT_COMMAND_TIMEOUT_MS
    const limit = options.maxOutputBytes ?? DEFAULT_MAX_OUTPUT_BYTES
    this.assertOpen()
    const release = await this.channels.acquire()
    let channelGone: Promise<void> | undefined
    try {
      this.assertOpen()
      const stream = await this.tracked<ClientChannel>((resolve, reject) => {
        const remote = options.remoteKill === false ? command : withRemoteTimeout(command, timeoutMs)
        this.client.exec(remote, options.env ? {env: options.env} : {}, (error, channel) => {
          if (error) reject(this.channelError(error, `run \`${label}\``))
          else resolve(channel)
        })
      })
      // The channel permit is returned when the server has closed the channel, not when we stop waiting.
      channelGone = new Promise<void>((resolve) => {
        const grace = () => setTimeout(resolve, CHANNEL_RELEASE_GRACE_MS).unref()
        // (ssh2 also closes every channel when the connection ends.)
        stream.once('close', () => resolve())
        stream.once('mailring-abandoned', grace)
      })
      return await this.tracked<ExecResult>((resolve, reject) => {
        const out: Buffer[] = []
        const err: Buffer[] = []
        let outBytes = 0
        let errBytes = 0
        let truncated = false
        let exitCode: number | null = null
        let signal: string | undefined
        let done = false

        const collect = (chunks: Buffer[], size: number, chunk: Buffer): number => {
          if (size + chunk.length <= limit) chunks.push(chunk)
          else {
            truncated = true
            if (size < limit) chunks.push(chunk.subarray(0, limit - size))
          }
          return size + chunk.length
        }
        // Both streams must be read, or the window fills and the channel never closes.
        stream.on('data', (chunk: Buffer) => {
          outBytes = collect(out, outBytes, chunk)
        })
        stream.stderr.on('data', (chunk: Buffer) => {
          errBytes = collect(err, errBytes, chunk)
        })
        stream.on('exit', (code: number | null, sig?: string) => {
          exitCode = code
          if (sig) signal = sig
        })
        const timer = setTimeout(() => {
          if (done) return
          done = true
          killRemote(stream)
          stream.close()
          stream.emit('mailring-abandoned')
          reject(
            new MailringError(
              `Command \`${label}\` on ${this.label} timed out after ${seconds(timeoutMs)} and was killed.`,
              {code: 'ssh_command_timeout'},
            ),
          )
        }, timeoutMs)
        stream.on('close', () => {
          if (done) return
          done = true
          clearTimeout(timer)
          const result: ExecResult = {
            stdout: Buffer.concat(out).toString('utf8'),
            stderr: Buffer.concat(err).toString('utf8'),
            exitCode,
          }
          if (signal) result.signal = signal
          if (truncated) result.truncated = true
          resolve(result)
        })
        stream.on('error', (error: Error) => {
          if (done) return
          done = true
          clearTimeout(timer)
          stream.close()
          stream.emit('mailring-abandoned')
          reject(this.channelError(error, `run \`${label}\``))
        })
        stream.stdin.on('error', () => {}) // EPIPE-like: the command did not read its input
        if (options.stdin !== undefined && options.stdin.length > 0) stream.end(options.stdin)
        else if (options.respond) {
          const respond = options.respond
          let answered = false
          stream.on('data', () => {
            if (answered || done) return
            let reply: string | Buffer | undefined
            try {
              reply = respond(Buffer.concat(out))
            } catch (error) {
              answered = true
              done = true
              clearTimeout(timer)
              stream.end()
              reject(error)
              return
            }
            if (reply === undefined) return
            answered = true
            if (reply.length > 0) stream.end(reply)
            else stream.end()
          })
        } else stream.end()
      })
    } finally {
      if (channelGone) void channelGone.then(release)
      else release()
    }
  }

  // -------------------------------------------------------------------------------------------------------
  // Reading a file (SFTP): only to name a file's problem when a command could not run

  /** A file's content, or undefined if it does not exist. */
  async readFile(path: string): Promise<Buffer | undefined> {
    const sftp = await this.sftp()
    try {
      return await this.tracked<Buffer>((resolve, reject) =>
        sftp.readFile(path, (error: Error | null | undefined, data: Buffer) =>
          error ? reject(error) : resolve(data),
        ),
      )
    } catch (error) {
      if (errorCode(error) === SFTP_NO_SUCH_FILE) return undefined
      throw this.sftpError(error, `read ${path}`)
    }
  }

  /** Closes the connection (waiting up to 5 s for it to end cleanly). */
  async close(): Promise<void> {
    if (this.closed) return
    await new Promise<void>((resolve) => {
      const timer = setTimeout(() => {
        this.client.destroy()
        resolve()
      }, 5_000)
      this.client.once('close', () => {
        clearTimeout(timer)
        resolve()
      })
      this.client.end()
    })
  }

  /**
   * Ends the connection without waiting for the server to close its side (one round trip less than close();
   * for when every result is in). The socket closes in the background; a lost connection is no error here.
   */
  end(): void {
    if (this.closed) return
    this.client.end()
    setTimeout(() => this.client.destroy(), 5_000).unref()
  }

  get isOpen(): boolean {
    return !this.closed
  }

  // -------------------------------------------------------------------------------------------------------

  private sftp(): Promise<SFTPWrapper> {
    this.assertOpen()
    if (!this.sftpSession) {
      const session = this.tracked<SFTPWrapper>((resolve, reject) => {
        this.client.sftp((error, sftp) => {
          if (error) {
            reject(
              new MailringError(
                `Cannot open SFTP on ${this.label}: ${error.message} (is "Subsystem sftp" enabled in its sshd_config?).`,
                {code: 'ssh_sftp', cause: error},
              ),
            )
            return
          }
          sftp.on('close', () => {
            if (this.sftpSession === session) this.sftpSession = undefined
          })
          resolve(sftp)
        })
      })
      session.catch(() => {
        if (this.sftpSession === session) this.sftpSession = undefined
      })
      this.sftpSession = session
    }
    return this.sftpSession
  }

  /** A promise that also rejects if the connection is lost meanwhile. */
  private tracked<T>(
    executor: (resolve: (value: T) => void, reject: (error: unknown) => void) => void,
  ): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      const onLost = (error: Error) => reject(error)
      this.pending.add(onLost)
      executor(
        (value) => {
          this.pending.delete(onLost)
          resolve(value)
        },
        (error) => {
          this.pending.delete(onLost)
          reject(error)
        },
      )
    })
  }

  private assertOpen(): void {
    if (this.closed) {
      throw new MailringError(`The SSH connection to ${this.label} is closed.`, {code: 'ssh_connection_lost'})
    }
  }

  private channelError(error: Error, what: string): MailringError {
    if (error instanceof MailringError) return error
    return new MailringError(`Cannot ${what} on ${this.label}: ${error.message}.`, {
      code: 'ssh_channel',
      cause: error,
    })
  }

  /** `action` names the operation and its paths: "read /etc/dovecot/dovecot.conf". */
  private sftpError(error: unknown, action: string): MailringError {
    if (error instanceof MailringError) return error
    const who = `${this.target.user}@${this.label}`
    if (errorCode(error) === SFTP_PERMISSION_DENIED) {
      return new MailringError(`Permission denied: cannot ${action} on ${who}.`, {
        code: 'ssh_permission_denied',
        cause: error,
      })
    }
    if (errorCode(error) === SFTP_NO_SUCH_FILE) {
      return new MailringError(`Cannot ${action} on ${who}: no such file or directory.`, {
        code: 'ssh_no_such_file',
        cause: error,
      })
    }
    return new MailringError(`Cannot ${action} on ${who}: ${message(error).replace(/\.$/, '')}.`, {
      code: 'ssh_sftp',
      cause: error,
    })
  }
}

function fingerprintOf(entry: KnownHostEntry): string {
  return `${entry.keyType} ${fingerprintSha256(entry.key)}`
}

/** Single-quotes a string for a POSIX shell. */
export function shellQuote(text: string): string {
  return `'${text.replace(/'/g, `'\\''`)}'`
}

/** The command wrapped so that the server kills it (its whole process group) a second after our timeout. */
function withRemoteTimeout(command: string, timeoutMs: number): string {
  const secs = Math.ceil(timeoutMs / 1000) + 1
  const quoted = shellQuote(command)
  return `if command -v timeout >/dev/null 2>&1; then exec timeout -s KILL ${secs} "$SHELL" -c ${quoted}; else exec "$SHELL" -c ${quoted}; fi`
}

/**
 * Sends signal KILL to a command. OpenSSH (7.9+) delivers it to the command's process group; older servers
 * ignore it, and then closing the channel is all we can do. ssh2's Channel.signal() silently does nothing once
 * stdin has been ended (it checks `writable`), which is always the case here, so the request is sent through
 * the channel's protocol object when it is there.
 */
function killRemote(stream: ClientChannel): void {
  const ch = stream as unknown as {
    outgoing?: {id?: number; state?: string}
    _client?: {_protocol?: {signal?: (id: number, signal: string) => void}}
  }
  try {
    const protocol = ch._client?._protocol
    if (
      (ch.outgoing?.state === 'open' || ch.outgoing?.state === 'eof') &&
      typeof ch.outgoing.id === 'number' &&
      typeof protocol?.signal === 'function'
    ) {
      protocol.signal(ch.outgoing.id, 'KILL')
    } else {
      stream.signal('KILL')
    }
  } catch {
    // the channel is closing already
  }
}

/**
 * The SSH packets ssh2 writes in one go (e.g. NEWKEYS and the service request; a channel's request, its data
 * and its EOF) leave in one write instead of one each: the socket is corked at the first write of a tick and
 * uncorked on the next tick. Fewer system calls and TCP segments here, and fewer wake-ups of the server for
 * the same round trips. When ssh2's socket is not where expected, nothing changes.
 */
function coalesceWrites(client: InstanceType<typeof Client>): void {
  const sock = (client as unknown as {_sock?: Socket})._sock
  if (!sock || typeof sock.cork !== 'function' || typeof sock.uncork !== 'function') return
  const write = sock.write
  let corked = false
  sock.write = function (this: Socket, ...args: Parameters<Socket['write']>) {
    if (!corked) {
      corked = true
      this.cork()
      process.nextTick(() => {
        corked = false
        this.uncork()
      })
    }
    return write.apply(this, args)
  } as Socket['write']
}

/** The hash of a public key signature algorithm, as ssh2 signs with it (see its getKeyAlgos). */
function signatureHash(keyAlgo: string | undefined): string | undefined {
  if (keyAlgo === 'rsa-sha2-256') return 'sha256'
  if (keyAlgo === 'rsa-sha2-512') return 'sha512'
  if (keyAlgo === 'ssh-rsa') return 'sha1'
  return undefined
}

/**
 * Public key authentication with a key file in one round trip instead of two: ssh2 first asks whether the
 * server would accept the key (a request without signature, answered by PK_OK) and only then sends the signed
 * request; RFC 4252 (7) lets a client send the signed request at once, and the server answers it with success
 * or failure as it answers the query (a failure goes on to the next key, as before). Done by giving ssh2's
 * authPK a signer when it is called for a private key without one; keys from ssh-agent (public halves: the
 * agent signs) keep the query. When ssh2's internals are not as expected, nothing changes.
 */
function signWithoutQuery(client: InstanceType<typeof Client>): void {
  type Signer = (data: Buffer, done: (signature: Buffer) => void) => void
  type AuthPK = (user: string, key: unknown, keyAlgo?: string | Signer, sign?: Signer) => void
  const proto = (client as unknown as {_protocol?: {authPK?: AuthPK}})._protocol
  const original = proto?.authPK
  if (!proto || typeof original !== 'function') return
  proto.authPK = function (user, key, keyAlgo, sign) {
    const parsed = key as Partial<ParsedKey> | undefined
    if (
      sign !== undefined ||
      typeof keyAlgo === 'function' ||
      typeof parsed?.isPrivateKey !== 'function' ||
      !parsed.isPrivateKey() ||
      typeof parsed.sign !== 'function'
    ) {
      return original.call(this, user, key, keyAlgo, sign)
    }
    const privateKey = parsed as ParsedKey
    const signed: Signer = (data, done) => {
      const signature = privateKey.sign(data, signatureHash(keyAlgo))
      // Cannot sign: ask first after all, and ssh2 reports the error when it signs after PK_OK.
      if (signature instanceof Error) original.call(this, user, key, keyAlgo)
      else done(signature)
    }
    return original.call(this, user, key, keyAlgo, signed)
  }
}

function keyFileStem(keyType: string): string {
  if (keyType === 'ssh-ed25519') return 'ed25519'
  if (keyType.startsWith('ecdsa-')) return 'ecdsa'
  if (keyType === 'ssh-rsa') return 'rsa'
  return '*'
}
