/**
 * The replicator's HTTP server (node:http): Dovecot's event exporter posts change notifications to it
 * (docs/decisions/0004-replicator.md, "Notifications in"; the snippet of src/dovecot/notify.ts).
 *
 *   POST /events    one event (Dovecot posts one per request) or an array of events, JSON. Authenticated by
 *                   the shared secret: `Authorization: Basic` with the secret as the password (what Dovecot
 *                   sends from the URL's userinfo) or `Authorization: Bearer SECRET`, compared in constant
 *                   time. 401 without it, 413 over `maxBodyBytes`, 400 for a body that is not JSON, 503
 *                   when the requests could not be handed over (Dovecot logs the failure). 200 otherwise,
 *                   with {"accepted": N, "ignored": M}.
 *   GET /metrics    Prometheus text format (./metrics.ts).
 *   GET /healthz    200 "ok", or 503 with the reason the health callback gives.
 *
 * Answer fast: Dovecot 2.3 gives up on a post after the snippet's `transport_timeout` (1 s) and never
 * retries it (docs/dovecot-facts.md), so `onRequests` should only enqueue.
 *
 * Refused requests are counted by reason and logged without their body or credentials (at most one line
 * per reason per 10 s). The server listens only on the address it is given.
 */
import {createHash, timingSafeEqual} from 'node:crypto'
import {createServer, type IncomingMessage, type Server, type ServerResponse} from 'node:http'
import type {AddressInfo} from 'node:net'

import {errorText} from '../../core/errors.js'
import {
  IGNORED_REASONS,
  parseNotifications,
  type NotifyRequest,
  type SourceLookup,
} from '../../dovecot/notify-events.js'
import {ReplicatorMetrics, type RejectReason} from './metrics.js'
import type {ListenAddress} from './settings.js'

/** A body larger than this is refused (413); Dovecot's events are about 1 KB. */
export const DEFAULT_MAX_BODY_BYTES = 256 * 1024
/** A refused body is read (and dropped) up to this many bytes so that the client sees the answer. */
const DISCARD_LIMIT_BYTES = 16 * 1024 * 1024

export type HealthResult = {ok: true} | {ok: false; reason: string}

export interface NotifyServerOptions {
  listen: ListenAddress
  secret: string
  /** Finds the server an event came from (src/dovecot/notify-events.ts, serverLookup). */
  lookupSource: SourceLookup
  /** Takes the requests of one accepted post (the service enqueues them in the store). */
  onRequests: (requests: NotifyRequest[]) => Promise<void>
  /** What GET /healthz answers; default always ok. */
  health?: () => HealthResult | Promise<HealthResult>
  /** Default: a new ReplicatorMetrics. */
  metrics?: ReplicatorMetrics
  maxBodyBytes?: number
  /** One line per event worth knowing (stderr in the service); never a secret or a body. */
  log?: (line: string) => void
}

export interface NotifyServer {
  /** Where it listens (the port the system chose when listen.port was 0). */
  address: ListenAddress
  /** http://HOST:PORT (for a replicator.url, e.g. in tests). */
  url: string
  metrics: ReplicatorMetrics
  close(): Promise<void>
}

class Refusal extends Error {
  constructor(
    readonly status: number,
    readonly reason: RejectReason,
    message: string,
  ) {
    super(message)
  }
}

function digest(text: string | Buffer): Buffer {
  return createHash('sha256').update(text).digest()
}

/** The secret a request presents: the basic-auth password or a bearer token. */
function presentedSecret(header: string | undefined): string | undefined {
  if (header === undefined) return undefined
  const m = /^(Basic|Bearer)\s+(\S+)\s*$/i.exec(header)
  if (!m) return undefined
  if (m[1]!.toLowerCase() === 'bearer') return m[2]
  const decoded = Buffer.from(m[2]!, 'base64').toString('utf8')
  const colon = decoded.indexOf(':')
  return colon < 0 ? undefined : decoded.slice(colon + 1)
}

/** Reads the body up to `limit` bytes; beyond it, drops up to DISCARD_LIMIT_BYTES and refuses with 413. */
function readBody(req: IncomingMessage, limit: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const declared = Number(req.headers['content-length'] ?? NaN)
    const chunks: Buffer[] = []
    let size = 0
    let tooLarge = Number.isFinite(declared) && declared > limit
    const fail = () => reject(new Refusal(413, 'too_large', `body over ${limit} bytes`))
    req.on('data', (chunk: Buffer) => {
      size += chunk.length
      if (size > limit) tooLarge = true
      if (tooLarge) {
        chunks.length = 0
        if (size > DISCARD_LIMIT_BYTES) {
          req.pause()
          fail()
        }
        return
      }
      chunks.push(chunk)
    })
    req.on('end', () => (tooLarge ? fail() : resolve(Buffer.concat(chunks))))
    req.on('error', reject)
  })
}

/** Drops a body not to be read (up to DISCARD_LIMIT_BYTES), so that the client can read the answer. */
function discardBody(req: IncomingMessage): Promise<void> {
  return new Promise((resolve) => {
    let size = 0
    req.on('data', (chunk: Buffer) => {
      size += chunk.length
      if (size > DISCARD_LIMIT_BYTES) {
        req.pause()
        resolve()
      }
    })
    req.on('end', () => resolve())
    req.on('error', () => resolve())
  })
}

export async function startNotifyServer(options: NotifyServerOptions): Promise<NotifyServer> {
  if (options.secret === '') throw new Error('the replicator secret is empty')
  const metrics = options.metrics ?? new ReplicatorMetrics()
  const secretDigest = digest(options.secret)
  const maxBody = options.maxBodyBytes ?? DEFAULT_MAX_BODY_BYTES
  const log = options.log ?? (() => {})
  const lastLogged = new Map<string, {at: number; suppressed: number}>()

  const logRefusal = (reason: RejectReason, peer: string, detail: string) => {
    const now = Date.now()
    const last = lastLogged.get(reason)
    if (last && now - last.at < 10_000) {
      last.suppressed++
      return
    }
    const more = last && last.suppressed > 0 ? ` (${last.suppressed} more since the last line)` : ''
    lastLogged.set(reason, {at: now, suppressed: 0})
    log(`notifications: refused a request from ${peer}: ${reason}, ${detail}${more}`)
  }

  const send = (res: ServerResponse, status: number, body: string, headers: Record<string, string> = {}) => {
    res.writeHead(status, {
      'Content-Type': 'text/plain; charset=utf-8',
      'Content-Length': String(Buffer.byteLength(body)),
      ...headers,
    })
    res.end(body)
  }

  const refuse = (res: ServerResponse, peer: string, r: Refusal, close: boolean) => {
    metrics.notificationsRejected.inc({reason: r.reason})
    logRefusal(r.reason, peer, r.message)
    const headers: Record<string, string> = {}
    if (r.status === 401) headers['WWW-Authenticate'] = 'Basic realm="mailring replicator"'
    if (r.status === 405) headers.Allow = r.message.includes('POST') ? 'POST' : 'GET'
    if (close) headers.Connection = 'close'
    send(res, r.status, `${r.reason}\n`, headers)
  }

  const handleEvents = async (req: IncomingMessage, res: ServerResponse, peer: string) => {
    const presented = presentedSecret(req.headers.authorization)
    if (presented === undefined || !timingSafeEqual(digest(presented), secretDigest)) {
      await discardBody(req)
      const why = presented === undefined ? 'no credentials' : 'wrong secret'
      refuse(res, peer, new Refusal(401, 'unauthorized', why), !req.complete)
      return
    }
    let body: Buffer
    try {
      body = await readBody(req, maxBody)
    } catch (e) {
      if (e instanceof Refusal) refuse(res, peer, e, true)
      else req.destroy()
      return
    }
    let json: unknown
    try {
      json = JSON.parse(body.toString('utf8'))
    } catch {
      refuse(
        res,
        peer,
        new Refusal(400, 'bad_json', `a body of ${body.length} bytes that is not JSON`),
        false,
      )
      return
    }
    const parsed = parseNotifications(json, options.lookupSource, peer)
    if (parsed.requests.length > 0) {
      try {
        await options.onRequests(parsed.requests)
      } catch (e) {
        refuse(res, peer, new Refusal(503, 'enqueue_failed', errorText(e)), false)
        return
      }
    }
    for (const r of parsed.requests) metrics.notificationsAccepted.inc({priority: r.priority})
    let ignored = 0
    for (const reason of IGNORED_REASONS) {
      const n = parsed.ignored[reason] ?? 0
      if (n > 0) metrics.eventsIgnored.inc({reason}, n)
      ignored += n
    }
    if (parsed.unknownSource > 0) metrics.eventsUnknownSource.inc(parsed.unknownSource)
    send(res, 200, JSON.stringify({accepted: parsed.requests.length, ignored}) + '\n', {
      'Content-Type': 'application/json',
    })
  }

  const handle = async (req: IncomingMessage, res: ServerResponse) => {
    const peer = (req.socket.remoteAddress ?? '').replace(/^::ffff:/i, '')
    const path = (req.url ?? '/').split('?')[0] ?? '/'
    const method = req.method ?? 'GET'
    const want = path === '/events' ? 'POST' : path === '/metrics' || path === '/healthz' ? 'GET' : undefined
    if (want === undefined || (method !== want && !(want === 'GET' && method === 'HEAD'))) {
      await discardBody(req)
      refuse(
        res,
        peer,
        want === undefined
          ? new Refusal(404, 'not_found', `${method} ${path.slice(0, 100)}`)
          : new Refusal(405, 'method_not_allowed', `${method} ${path} (use ${want})`),
        !req.complete,
      )
      return
    }
    if (path === '/events') return handleEvents(req, res, peer)
    await discardBody(req)
    if (path === '/metrics') {
      send(res, 200, await metrics.text(), {'Content-Type': metrics.contentType})
      return
    }
    let health: HealthResult
    try {
      health = (await options.health?.()) ?? {ok: true}
    } catch (e) {
      health = {ok: false, reason: errorText(e)}
    }
    if (health.ok) send(res, 200, 'ok\n')
    else send(res, 503, `${health.reason.replace(/[\r\n]+/g, ' ')}\n`)
  }

  const server: Server = createServer((req, res) => {
    handle(req, res).catch((e: unknown) => {
      log(`notifications: internal error: ${errorText(e)}`)
      if (!res.headersSent) send(res, 500, 'internal error\n', {Connection: 'close'})
      else res.destroy()
    })
  })
  server.headersTimeout = 10_000
  server.requestTimeout = 30_000
  server.keepAliveTimeout = 60_000

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen({host: options.listen.host, port: options.listen.port, exclusive: true}, () => {
      server.off('error', reject)
      resolve()
    })
  })
  const bound = server.address() as AddressInfo
  const address = {host: options.listen.host, port: bound.port}
  const hostInUrl = bound.family === 'IPv6' ? `[${address.host}]` : address.host
  return {
    address,
    url: `http://${hostInUrl}:${address.port}`,
    metrics,
    close: () =>
      new Promise<void>((resolve, reject) => {
        server.close((e) => (e ? reject(e) : resolve()))
        server.closeAllConnections()
      }),
  }
}
