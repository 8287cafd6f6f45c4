/**
 * The doveadm HTTP API (`POST /doveadm/v1`, basic auth `doveadm:<doveadm_password>`): several commands in
 * one request, each answered by its tag. Seen on Dovecot 2.3.19: a command's answer is
 * `["doveadmResponse", ROWS_OR_OBJECT, TAG]` or `["error", {"type": "exitCode", "exitCode": N}, TAG]`; a wrong
 * password is HTTP 401; a body that is not a JSON array is HTTP 400.
 *
 * Temporary failures are retried with back-off: the connection refused or reset, a timeout, HTTP 5xx, and
 * commands that exit 75. A wrong password or an answer that is not doveadm's is never retried. The number
 * of requests in flight per server is bounded by one semaphore per server for the whole process, so that
 * sync, verify and (later) the replicator running together still respect it. Single calls that wait for
 * a free request slot travel together: when a slot frees, every call queued by then (up to MAX_BATCH)
 * goes in one request, so a check of many users costs few round trips.
 */
import * as http from 'node:http'
import * as https from 'node:https'

import {errorText, MailringError} from '../core/errors.js'
import {
  type DoveadmCommand,
  DOVEADM_EXIT,
  httpRequestEntry,
  outcomeOfExit,
  type Row,
} from '../dovecot/doveadm.js'
import type {DoveadmCallOptions, DoveadmReply, DoveadmTransport} from './doveadm.js'
import {Semaphore} from './pool.js'

export interface DoveadmHttpOptions {
  /** The server's name, for messages. */
  name: string
  host: string
  port: number
  https?: boolean
  /** doveadm_password of the server. Never printed. */
  password: string
  /** Per request (default 60 s). */
  timeoutMs?: number
  /** Further attempts after a temporary failure (default 3). */
  retries?: number
  /** The first back-off; doubled each time (default 200 ms). */
  backoffMs?: number
  /** Requests in flight to this server at once, shared by the whole process (default 4). */
  perServer?: number
}

const limiters = new Map<string, Semaphore>()

/**
 * Servers that answer only the first mail command of a request: a doveadm server process drops to the mail
 * user after its first mail command, and then cannot ask auth-userdb again unless the socket is owned by
 * that user (seen on 2.3.19: the others exit 75, "Auth client doesn't have permissions to do a PASS
 * lookup"). Found once per process; such servers then get one command per request.
 */
const oneCommandPerRequest = new Set<string>()

const counters = {requests: 0, commands: 0, waitMs: 0}
let inFlight = 0
let busySince = 0

/**
 * HTTP requests sent, the commands they carried, and the time during which at least one request was
 * waiting for its answer (overlapping requests count once), in this process so far: for benchmarks and
 * metrics.
 */
export function doveadmHttpCounters(): {requests: number; commands: number; waitMs: number} {
  const now = performance.now()
  return {...counters, waitMs: counters.waitMs + (inFlight > 0 ? now - busySince : 0)}
}

/** Commands in one request at most (each answer is small; a batch is answered when its slowest command is). */
const MAX_BATCH = 32

interface QueuedCall {
  command: DoveadmCommand
  options: DoveadmCallOptions
  resolve: (reply: DoveadmReply) => void
  reject: (error: unknown) => void
}

/** One semaphore per server address for the whole process; the first caller sets its size. */
function limiterFor(key: string, size: number): Semaphore {
  let limiter = limiters.get(key)
  if (!limiter) {
    limiter = new Semaphore(size)
    limiters.set(key, limiter)
  }
  return limiter
}

/** A failure of the request as a whole: every command in it gets no answer. */
class RequestFailure extends Error {
  constructor(
    message: string,
    readonly temporary: boolean,
    readonly code: string,
  ) {
    super(message)
  }
}

export class HttpDoveadm implements DoveadmTransport {
  readonly label: string
  private readonly url: string
  private readonly authorization: string
  private readonly limiter: Semaphore
  private tags = 0
  private readonly queue: QueuedCall[] = []

  constructor(private readonly o: DoveadmHttpOptions) {
    const host = o.host.includes(':') ? `[${o.host}]` : o.host
    this.url = `${o.https ? 'https' : 'http'}://${host}:${o.port}/doveadm/v1`
    this.label = `${o.name} (${host}:${o.port})`
    this.authorization = 'Basic ' + Buffer.from(`doveadm:${o.password}`).toString('base64')
    this.limiter = limiterFor(this.url, o.perServer ?? 4)
  }

  /** One command; it may travel with others queued for this server at the same time. */
  run(command: DoveadmCommand, options: DoveadmCallOptions = {}): Promise<DoveadmReply> {
    return new Promise((resolve, reject) => {
      this.queue.push({command, options, resolve, reject})
      void this.sendQueued()
    })
  }

  /** Waits for a request slot, then sends whatever is queued by then (nothing, if others took it). */
  private async sendQueued(): Promise<void> {
    const release = await this.limiter.acquire()
    const batch = this.queue.splice(0, oneCommandPerRequest.has(this.url) ? 1 : MAX_BATCH)
    try {
      if (batch.length === 0) return
      // Calls of one batch share its time-out and retries: the most patient of them.
      const timeouts = batch.map((c) => c.options.timeoutMs ?? this.o.timeoutMs ?? 60_000)
      const retries = batch.map((c) => c.options.retries ?? this.o.retries ?? 3)
      const replies = await this.send(
        batch.map((c) => c.command),
        {timeoutMs: Math.max(...timeouts), retries: Math.max(...retries)},
      )
      batch.forEach((c, i) => c.resolve(replies[i] as DoveadmReply))
    } catch (error) {
      for (const c of batch) c.reject(error)
    } finally {
      release()
    }
  }

  /**
   * Sends the commands in one request and returns one reply each, in order. Commands answered with a
   * temporary failure (75) are sent again, together, after a back-off. Throws a MailringError when the
   * server cannot be reached, refuses the password, or answers something that is not doveadm's.
   */
  async runBatch(
    commands: readonly DoveadmCommand[],
    options: DoveadmCallOptions = {},
  ): Promise<DoveadmReply[]> {
    const release = await this.limiter.acquire()
    try {
      return await this.send(commands, options)
    } finally {
      release()
    }
  }

  /** runBatch, holding a request slot already (kept through the retries' back-off). */
  private async send(
    commands: readonly DoveadmCommand[],
    options: DoveadmCallOptions,
  ): Promise<DoveadmReply[]> {
    const replies: (DoveadmReply | undefined)[] = commands.map(() => undefined)
    let pending = commands.map((_, i) => i)
    const retries = options.retries ?? this.o.retries ?? 3
    let backoff = this.o.backoffMs ?? 200
    for (let attempt = 0; ; attempt++) {
      let answers: DoveadmReply[]
      try {
        answers = await this.post(
          pending.map((i) => commands[i] as DoveadmCommand),
          options.timeoutMs ?? this.o.timeoutMs ?? 60_000,
        )
      } catch (error) {
        if (error instanceof RequestFailure) {
          if (error.temporary && attempt < retries) {
            await sleep(backoff)
            backoff *= 2
            continue
          }
          throw new MailringError(`doveadm on ${this.label}: ${error.message}`, {
            code: error.code,
            cause: error,
          })
        }
        throw error
      }
      const again: number[] = []
      pending.forEach((index, k) => {
        const answer = answers[k] as DoveadmReply
        replies[index] = answer
        if (answer.outcome === 'temporary') again.push(index)
      })
      if (pending.length > 1 && answers[0]?.outcome !== 'temporary' && again.length === pending.length - 1) {
        // Only the first command was served: this server takes one per request (see oneCommandPerRequest).
        oneCommandPerRequest.add(this.url)
        for (const index of again)
          replies[index] = (await this.send([commands[index] as DoveadmCommand], options))[0]
        again.length = 0
      }
      if (again.length === 0 || attempt >= retries) break
      pending = again
      await sleep(backoff)
      backoff *= 2
    }
    return replies as DoveadmReply[]
  }

  /**
   * One POST with node:http (a third of fetch's CPU per request, measured in bench/sync.ts; Dovecot closes
   * every connection after its answer, so there is no connection to reuse).
   */
  private request(body: string, timeoutMs: number): Promise<{status: number; text: string}> {
    return new Promise((resolve, reject) => {
      const req = (this.o.https ? https : http).request(
        this.url,
        {
          method: 'POST',
          headers: {
            Authorization: this.authorization,
            'Content-Type': 'application/json',
            'Content-Length': Buffer.byteLength(body),
          },
          timeout: timeoutMs,
        },
        (res) => {
          const chunks: Buffer[] = []
          res.on('data', (chunk: Buffer) => chunks.push(chunk))
          res.on('end', () =>
            resolve({status: res.statusCode ?? 0, text: Buffer.concat(chunks).toString('utf8')}),
          )
          res.on('error', (error) => reject(networkFailure(error)))
        },
      )
      req.on('timeout', () => {
        req.destroy()
        reject(new RequestFailure(`no answer within ${timeoutMs / 1000} s`, true, 'doveadm_unreachable'))
      })
      req.on('error', (error) => reject(networkFailure(error)))
      req.end(body)
    })
  }

  private async post(commands: readonly DoveadmCommand[], timeoutMs: number): Promise<DoveadmReply[]> {
    const base = this.tags
    this.tags += commands.length
    const body = JSON.stringify(commands.map((c, i) => httpRequestEntry(c, `c${base + i}`)))
    counters.requests++
    counters.commands += commands.length
    if (inFlight++ === 0) busySince = performance.now()
    const {status, text} = await this.request(body, timeoutMs).finally(() => {
      if (--inFlight === 0) counters.waitMs += performance.now() - busySince
    })
    if (status === 401 || status === 403)
      throw new RequestFailure(
        `the doveadm password was refused (HTTP ${status}): set MAILRING_DOVEADM_PASSWORD or doveadm.password_file to the servers' doveadm_password`,
        false,
        'doveadm_auth',
      )
    if (status >= 500)
      throw new RequestFailure(`the server failed (HTTP ${status})`, true, 'doveadm_unreachable')
    if (status !== 200)
      throw new RequestFailure(
        `unexpected HTTP ${status}: is this the doveadm HTTP API (service doveadm { inet_listener http })?`,
        false,
        'doveadm_garbage',
      )
    return parseBatchAnswer(text, commands, base)
  }
}

function networkFailure(error: unknown): RequestFailure {
  const code = (error as NodeJS.ErrnoException).code
  const what =
    code === 'ECONNREFUSED'
      ? 'connection refused (is Dovecot running, with the doveadm HTTP listener on this port?)'
      : code === 'EHOSTUNREACH' || code === 'ENETUNREACH'
        ? 'host unreachable'
        : code === 'ENOTFOUND'
          ? 'unknown host name'
          : code === 'ECONNRESET' || code === 'EPIPE'
            ? 'the connection was closed without an answer'
            : errorText(error)
  // A host name that does not resolve will not start resolving on a retry.
  return new RequestFailure(what, code !== 'ENOTFOUND', 'doveadm_unreachable')
}

/** One reply per command from the API's answer, matched by tag; anything else is not doveadm's answer. */
function parseBatchAnswer(text: string, commands: readonly DoveadmCommand[], base: number): DoveadmReply[] {
  const garbage = (why: string) =>
    new RequestFailure(
      `the answer is not doveadm's (${why}): is this the doveadm HTTP API?`,
      false,
      'doveadm_garbage',
    )
  let data: unknown
  try {
    data = JSON.parse(text)
  } catch {
    throw garbage('not JSON')
  }
  if (!Array.isArray(data)) throw garbage('not a list')
  const byTag = new Map<string, unknown[]>()
  for (const entry of data) {
    if (Array.isArray(entry) && typeof entry[2] === 'string') byTag.set(entry[2], entry)
  }
  return commands.map((command, i) => {
    const entry = byTag.get(`c${base + i}`)
    if (!entry) throw garbage(`no answer to ${command.method}`)
    const [kind, payload] = entry
    if (kind === 'doveadmResponse') {
      const rows = Array.isArray(payload)
        ? (payload as unknown[]).filter((r): r is Row => r !== null && typeof r === 'object')
        : payload !== null && typeof payload === 'object'
          ? (payload as Record<string, unknown>)
          : []
      return {outcome: 'ok', exitCode: 0, rows, message: ''}
    }
    if (kind === 'error') {
      const p = (payload ?? {}) as {type?: unknown; exitCode?: unknown}
      if (p.type === 'unknownMethod')
        return {
          outcome: 'failed',
          exitCode: DOVEADM_EXIT.usage,
          rows: [],
          message: `this Dovecot has no doveadm ${command.words.join(' ')} command`,
        }
      const exitCode = typeof p.exitCode === 'number' ? p.exitCode : 1
      const outcome = outcomeOfExit(exitCode)
      return {outcome, exitCode, rows: [], message: `doveadm ${command.words.join(' ')} exited ${exitCode}`}
    }
    throw garbage(`an answer of kind ${JSON.stringify(kind)}`)
  })
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms))
}
