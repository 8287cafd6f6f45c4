/**
 * The replicator's health probes (docs/decisions/0004-replicator.md, "Probes and routing").
 *
 * Every probe interval, every server with an address is probed on three ports at once, each with the probe
 * time-out: the doveadm HTTP API (any HTTP answer, whatever its status, counts: the process is alive), IMAP
 * (a `* OK` greeting) and LMTP (a `220` greeting). A server's probe is good only when all three answer. The
 * results feed the hysteresis of src/core/health.ts; each transition is written to the store with
 * compare-and-set (setServerHealth), so that two replicators never flap a server: a lost compare-and-set
 * means another one got there first, and this prober adopts what the store holds. Each round starts by
 * reading the store's health, so changes made elsewhere are seen within one interval.
 *
 * The service uses it like this:
 *
 *   const prober = new Prober({store, settings, doveadm, onEvent: (e) => {
 *     if (e.type === 'returning') queueCatchUp(e.server)   // then markCaughtUp(e.server) once done
 *   }})
 *   await prober.start()
 *   ...
 *   await prober.markCaughtUp('mx-a')
 *   await prober.stop()
 *
 * Events: `down` (routing has left it: skip its copies), `returning` (answering again, still out of routing:
 * queue its catch-up), `up` (back in routing). They come for transitions this prober wrote and for those it
 * adopted from the store.
 */
import * as http from 'node:http'
import * as https from 'node:https'
import * as net from 'node:net'

import {errorText} from '../../core/errors.js'
import {
  adoptHealth,
  initialTrack,
  nextHealth,
  roundInputs,
  thresholdsProblem,
  type HealthInput,
  type HealthTrack,
  type ProbeResult,
  type ServerHealthState,
} from '../../core/health.js'
import type {DoveadmSettings} from '../../remote/doveadm-settings.js'
import type {Store} from '../../store/store.js'
import {probePortsOf, type ProbePorts, type ProbeSettings} from './probe-settings.js'

export interface ProbeTarget {
  server: string
  address: string
  ports: ProbePorts
}

export interface HealthEvent {
  server: string
  /** The event's name is the new health. */
  type: ServerHealthState
  from: ServerHealthState
  detail: string
  /** True when another replicator (or a lost compare-and-set) changed it; false when this prober did. */
  adopted: boolean
  /** Milliseconds since the epoch. */
  at: number
}

export interface ProberOptions {
  store: Pick<Store, 'serverHealth' | 'setServerHealth' | 'readTopology'>
  settings: Pick<ProbeSettings, 'intervalMs' | 'timeoutMs' | 'downAfter' | 'upAfter'> & Partial<ProbeSettings>
  /** For the doveadm port of each server (settings.ports.doveadm unset) and doveadm.https. */
  doveadm?: Pick<DoveadmSettings, 'httpPort' | 'httpPorts' | 'https'>
  /** The servers to probe; default every server of the store's topology with an address, ports from settings. */
  targets?: () => Promise<ProbeTarget[]>
  onEvent?: (event: HealthEvent) => void
  /** Every probe's result and how long it took (for metrics, and for measuring detection). */
  onProbe?: (server: string, result: ProbeResult, ms: number) => void
  /** Probe failures and store errors the service may log (one line). */
  onError?: (message: string) => void
}

export class Prober {
  private readonly tracks = new Map<string, HealthTrack>()
  private timer: NodeJS.Timeout | undefined
  private running: Promise<void> | undefined
  private stopped = true
  /** Serialises store writes of one server (a probe transition and markCaughtUp never race). */
  private readonly writing = new Map<string, Promise<unknown>>()
  /**
   * Per server, bumped whenever a write (or a lost compare-and-set's read back) changes what this prober
   * holds: a store read that started before it is older and is not adopted.
   */
  private readonly written = new Map<string, number>()

  constructor(private readonly options: ProberOptions) {
    const problem = thresholdsProblem(options.settings)
    if (problem) throw new Error(`Prober: ${problem}`)
  }

  /** Reads the store's health, then probes every interval until stop(). */
  async start(): Promise<void> {
    if (!this.stopped) return
    this.stopped = false
    await this.syncFromStore()
    this.schedule(0)
  }

  /** Stops probing; waits for the round in flight. */
  async stop(): Promise<void> {
    this.stopped = true
    if (this.timer) clearTimeout(this.timer)
    this.timer = undefined
    await this.running
  }

  /** The health this prober holds for a server (up when it knows nothing of it). */
  health(server: string): ServerHealthState {
    return this.tracks.get(server)?.health ?? 'up'
  }

  /** Every server this prober has seen, with its health. */
  snapshot(): {server: string; health: ServerHealthState; detail: string}[] {
    return [...this.tracks].map(([server, t]) => ({server, health: t.health, detail: t.detail}))
  }

  /**
   * The service's call once a returning server's copies are caught up: returning -> up in the store
   * (compare-and-set). True when the server is up now; false when it was not returning (e.g. down again).
   */
  async markCaughtUp(server: string): Promise<boolean> {
    await this.apply(server, {kind: 'caught-up'})
    return this.health(server) === 'up'
  }

  /**
   * One round now: every target probed at once, then the results applied together, so that a slowness
   * every server shares is told from one server's outage (roundInputs). Exposed for tests and the service.
   */
  async round(): Promise<void> {
    await this.syncFromStore()
    const targets = await this.targets()
    const results = await Promise.all(
      targets.map(async (target): Promise<[string, ProbeResult]> => {
        const started = Date.now()
        const result = await probeServer(target, this.options.settings.timeoutMs, this.https())
        this.options.onProbe?.(target.server, result, Date.now() - started)
        return [target.server, result]
      }),
    )
    const inputs = roundInputs(new Map(results))
    await Promise.all([...inputs].map(([server, input]) => this.apply(server, input)))
  }

  private https(): boolean {
    return this.options.settings.https ?? this.options.doveadm?.https ?? false
  }

  private schedule(delayMs: number): void {
    if (this.stopped) return
    this.timer = setTimeout(() => {
      const started = Date.now()
      this.running = this.round()
        .catch((error: unknown) => this.options.onError?.(`health probe round failed: ${errorText(error)}`))
        .finally(() => {
          this.running = undefined
          // A fixed cadence: the next round starts one interval after this one started (at once if late).
          this.schedule(Math.max(0, started + this.options.settings.intervalMs - Date.now()))
        })
    }, delayMs)
  }

  private async targets(): Promise<ProbeTarget[]> {
    if (this.options.targets) return this.options.targets()
    const topology = await this.options.store.readTopology()
    const s = this.options.settings
    const settings: ProbeSettings = {
      intervalMs: s.intervalMs,
      timeoutMs: s.timeoutMs,
      downAfter: s.downAfter,
      upAfter: s.upAfter,
      ports: s.ports ?? {imap: 143, lmtp: 24},
      byServer: s.byServer ?? {},
      https: this.https(),
    }
    const doveadm = this.options.doveadm ?? {httpPort: 8080, httpPorts: {}}
    return topology.servers
      .filter((server) => server.address !== '')
      .map((server) => ({
        server: server.name,
        address: server.address,
        ports: probePortsOf(settings, doveadm, server.name),
      }))
  }

  /** Adopts the store's health of every server (another replicator may have changed it). */
  private async syncFromStore(): Promise<void> {
    const before = new Map(this.written)
    const records = await this.options.store.serverHealth()
    for (const record of records) {
      // markCaughtUp may have written this server while the read was under way: the read is older.
      if ((this.written.get(record.server) ?? 0) !== (before.get(record.server) ?? 0)) continue
      this.adopt(record.server, record.health, record.detail)
    }
  }

  private adopt(server: string, health: ServerHealthState, detail: string): void {
    const track = this.tracks.get(server) ?? initialTrack()
    if (track.health === health) {
      this.tracks.set(server, track)
      return
    }
    this.tracks.set(server, adoptHealth(track, health))
    this.emit({server, type: health, from: track.health, detail, adopted: true, at: Date.now()})
  }

  /** Feeds one input to a server's state machine and writes a transition (one write per server at a time). */
  private apply(server: string, input: HealthInput): Promise<void> {
    const previous = this.writing.get(server) ?? Promise.resolve()
    const next = previous.then(async () => {
      const track = this.tracks.get(server) ?? initialTrack()
      const step = nextHealth(track, input, this.options.settings)
      if (!step.transition) {
        this.tracks.set(server, step.track)
        return
      }
      const {from, to, detail} = step.transition
      let won: boolean
      try {
        won = await this.options.store.setServerHealth(server, from, to, detail)
      } catch (error) {
        // Not written: keep the old health (and the counts), try again with the next probe.
        this.options.onError?.(`cannot record ${server} as ${to}: ${errorText(error)}`)
        return
      }
      if (won) {
        this.written.set(server, (this.written.get(server) ?? 0) + 1)
        this.tracks.set(server, step.track)
        this.emit({server, type: to, from, detail, adopted: false, at: Date.now()})
        return
      }
      // Lost: the store holds something else now; read it back and follow it.
      const record = (await this.options.store.serverHealth()).find((r) => r.server === server)
      this.written.set(server, (this.written.get(server) ?? 0) + 1)
      this.adopt(server, record?.health ?? 'up', record?.detail ?? '')
    })
    const settled = next.catch((error: unknown) =>
      this.options.onError?.(`health of ${server}: ${errorText(error)}`),
    )
    this.writing.set(server, settled)
    return settled.finally(() => {
      if (this.writing.get(server) === settled) this.writing.delete(server)
    })
  }

  private emit(event: HealthEvent): void {
    try {
      this.options.onEvent?.(event)
    } catch (error) {
      this.options.onError?.(`health event handler failed: ${errorText(error)}`)
    }
  }
}

/**
 * One server, three ports at once: good when all answer; otherwise what failed, one line, and whether it
 * was only slow (every failing port timed out: roundInputs weighs that against the other servers).
 */
export async function probeServer(target: ProbeTarget, timeoutMs: number, tls = false): Promise<ProbeResult> {
  const host = target.address
  const named = (port: string, number: number) => (e: string | undefined) =>
    e === undefined ? undefined : {text: `${port} ${where(host, number)}: ${e}`, slow: isTimeout(e)}
  const checks = await Promise.all([
    probeHttp(host, target.ports.doveadm, timeoutMs, tls).then(named('doveadm', target.ports.doveadm)),
    probeBanner(host, target.ports.imap, /^\* OK/, timeoutMs, 'p LOGOUT\r\n').then(
      named('imap', target.ports.imap),
    ),
    probeBanner(host, target.ports.lmtp, /^220[ -]/, timeoutMs, 'QUIT\r\n').then(
      named('lmtp', target.ports.lmtp),
    ),
  ])
  const failed = checks.filter((c) => c !== undefined)
  if (failed.length === 0) return {ok: true}
  return {ok: false, reason: failed.map((f) => f.text).join('; '), slow: failed.every((f) => f.slow)}
}

/** The problems the probes report when nothing answered within the time-out (no refusal). */
const TIMEOUT_PREFIXES = ['no greeting within', 'no HTTP answer within']

function isTimeout(problem: string): boolean {
  return TIMEOUT_PREFIXES.some((prefix) => problem.startsWith(prefix))
}

function where(host: string, port: number): string {
  return net.isIPv6(host) ? `[${host}]:${port}` : `${host}:${port}`
}

function reasonOf(error: unknown): string {
  const code = (error as {code?: string}).code
  if (code === 'ECONNREFUSED') return 'connection refused'
  if (code === 'EHOSTUNREACH' || code === 'ENETUNREACH') return 'unreachable'
  if (code === 'ENOTFOUND' || code === 'EAI_AGAIN') return 'cannot resolve the address'
  if (code === 'ECONNRESET') return 'connection reset'
  return errorText(error)
}

/** Connects, reads the first line, expects `pattern`; undefined when good, else why not. */
export function probeBanner(
  host: string,
  port: number,
  pattern: RegExp,
  timeoutMs: number,
  goodbye = '',
): Promise<string | undefined> {
  return new Promise((resolve) => {
    let buffer = ''
    let done = false
    const socket = net.connect({host, port})
    const finish = (problem: string | undefined, farewell = '') => {
      if (done) return
      done = true
      clearTimeout(timer)
      if (farewell === '') socket.destroy()
      else {
        // Say goodbye (LOGOUT, QUIT) without waiting for the answer, so the server logs a clean end.
        socket.end(farewell)
        socket.setTimeout(timeoutMs, () => socket.destroy())
        socket.on('error', () => undefined)
      }
      resolve(problem)
    }
    const timer = setTimeout(() => finish(`no greeting within ${timeoutMs} ms`), timeoutMs)
    socket.setEncoding('latin1')
    socket.on('data', (chunk: string) => {
      if (done) return
      buffer += chunk
      const end = buffer.indexOf('\n')
      if (end < 0 && buffer.length < 1024) return
      const line = (end < 0 ? buffer : buffer.slice(0, end)).replace(/\r$/, '')
      if (pattern.test(line)) finish(undefined, goodbye)
      else finish(`unexpected greeting ${JSON.stringify(line.slice(0, 80))}`)
    })
    socket.on('error', (error) => finish(reasonOf(error)))
    socket.on('close', () => finish('closed without a greeting'))
  })
}

/** An HTTP request to `/`: any answer (401, 404...) means the doveadm HTTP API is alive. */
export function probeHttp(
  host: string,
  port: number,
  timeoutMs: number,
  tls = false,
): Promise<string | undefined> {
  return new Promise((resolve) => {
    let done = false
    const finish = (problem: string | undefined) => {
      if (done) return
      done = true
      clearTimeout(timer)
      request.destroy()
      resolve(problem)
    }
    const options = {host, port, path: '/', method: 'GET', agent: false as const}
    // TLS: liveness only, so the certificate is not checked here (the doveadm client checks it).
    const request = tls
      ? https.request({...options, rejectUnauthorized: false}, (response) => {
          response.resume()
          finish(undefined)
        })
      : http.request(options, (response) => {
          response.resume()
          finish(undefined)
        })
    const timer = setTimeout(() => finish(`no HTTP answer within ${timeoutMs} ms`), timeoutMs)
    request.on('error', (error) => finish(reasonOf(error)))
    request.end()
  })
}
