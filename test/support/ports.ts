/**
 * Free TCP ports, waiting for a port to accept connections, and claiming a loopback address 127.0.0.N for
 * the life of a test server, safely across the parallel vitest workers.
 */
import * as net from 'node:net'

import {isRoot, sleep} from './proc.js'

function listenOn(host: string, port: number): Promise<net.Server> {
  return new Promise((resolve, reject) => {
    const server = net.createServer()
    server.unref()
    server.once('error', reject)
    server.listen({host, port, exclusive: true}, () => {
      server.off('error', reject)
      resolve(server)
    })
  })
}

function close(server: net.Server): Promise<void> {
  return new Promise((resolve) => server.close(() => resolve()))
}

function portOf(server: net.Server): number {
  const address = server.address()
  if (address === null || typeof address === 'string') throw new Error('server has no TCP address')
  return address.port
}

/** A TCP port that is free on `host` right now (bound to port 0, read, closed). */
export async function freePort(host = '127.0.0.1'): Promise<number> {
  const [port] = await freePorts(1, host)
  return port!
}

/** `count` distinct ports free on `host` (all held open together while they are picked, then closed). */
export async function freePorts(count: number, host = '127.0.0.1'): Promise<number[]> {
  const servers: net.Server[] = []
  try {
    for (let i = 0; i < count; i++) servers.push(await listenOn(host, 0))
    return servers.map(portOf)
  } finally {
    await Promise.all(servers.map(close))
  }
}

/**
 * A port free on every one of `hosts` right now: servers of one cluster share their doveadm ports (a sync
 * names only the peer's address), so a test cluster on several loopback addresses needs one port for all.
 */
export async function commonFreePort(hosts: readonly string[]): Promise<number> {
  for (let attempt = 0; attempt < 50; attempt++) {
    const port = await freePort(hosts[0])
    const taken = await Promise.all(hosts.slice(1).map((host) => canConnect(port, host, 200)))
    if (!taken.some(Boolean)) return port
  }
  throw new Error(`no port free on every one of ${hosts.join(', ')}`)
}

/** One connection attempt: true if `host:port` accepted within `timeoutMs`. */
export function canConnect(port: number, host = '127.0.0.1', timeoutMs = 1000): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect({host, port})
    const done = (ok: boolean) => {
      socket.destroy()
      resolve(ok)
    }
    socket.setTimeout(timeoutMs, () => done(false))
    socket.once('connect', () => done(true))
    socket.once('error', () => done(false))
  })
}

export interface WaitForPortOptions {
  /** Give up after this long (default 20 s). */
  timeoutMs?: number
  /** Pause between attempts (default 50 ms). */
  intervalMs?: number
  /** Called before every attempt; throw from it to give up at once (e.g. the server process has exited). */
  check?: () => void
  /** Added to the timeout error, e.g. the tail of the server's log. */
  describe?: () => string
}

/** Waits until `host:port` accepts TCP connections; throws after the timeout. */
export async function waitForPort(
  port: number,
  host = '127.0.0.1',
  options: WaitForPortOptions = {},
): Promise<void> {
  const timeoutMs = options.timeoutMs ?? 20_000
  const deadline = Date.now() + timeoutMs
  for (;;) {
    options.check?.()
    if (await canConnect(port, host, Math.min(1000, Math.max(50, deadline - Date.now())))) return
    if (Date.now() >= deadline) {
      const extra = options.describe?.() ?? ''
      throw new Error(
        `${host}:${port} did not accept connections within ${timeoutMs} ms${extra ? `\n${extra}` : ''}`,
      )
    }
    await sleep(options.intervalMs ?? 50)
  }
}

// ---------------------------------------------------------------------------------------------------------
// Loopback addresses 127.0.0.N.

/**
 * The claim on 127.0.0.N is a listening socket on a fixed port of that address: the kernel lets only one
 * process hold it, and frees it by itself when the process dies, so there are no stale lock files. Port 1
 * (tcpmux) is never used by anything else but needs root; otherwise a port below the ephemeral range.
 */
export const LOOPBACK_CLAIM_PORT = isRoot() ? 1 : 32767

export const LOOPBACK_MIN = 2
export const LOOPBACK_MAX = 250

export interface LoopbackClaim {
  n: number
  ip: string
  /** Gives the address back (idempotent). */
  release(): Promise<void>
}

export interface ClaimOptions {
  /** How long to wait for a specific, busy N to become free (default 60 s). */
  timeoutMs?: number
}

const heldHere = new Set<number>()

async function tryClaim(n: number): Promise<LoopbackClaim | undefined> {
  const ip = `127.0.0.${n}`
  if (heldHere.has(n)) return undefined
  let server: net.Server
  try {
    server = await listenOn(ip, LOOPBACK_CLAIM_PORT)
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code
    if (code === 'EADDRINUSE') return undefined
    throw new Error(`cannot claim ${ip}: ${(e as Error).message}`)
  }
  heldHere.add(n)
  let released: Promise<void> | undefined
  const release = () =>
    (released ??= close(server).then(() => {
      heldHere.delete(n)
    }))
  return {n, ip, release}
}

/**
 * Claims a loopback address 127.0.0.N for one test server, exclusive across every process on the machine
 * until release() or the process's end. Without `n`, takes the lowest free N in 2..250. With `n`, waits
 * (up to `timeoutMs`) while another process holds it.
 */
export async function claimLoopbackIp(n?: number, options: ClaimOptions = {}): Promise<LoopbackClaim> {
  if (n === undefined) {
    for (let candidate = LOOPBACK_MIN; candidate <= LOOPBACK_MAX; candidate++) {
      const claim = await tryClaim(candidate)
      if (claim) return claim
    }
    throw new Error(
      `no free loopback address in 127.0.0.${LOOPBACK_MIN}..${LOOPBACK_MAX} ` +
        `(each is claimed by listening on its port ${LOOPBACK_CLAIM_PORT}; is something listening on 0.0.0.0:${LOOPBACK_CLAIM_PORT}?)`,
    )
  }
  if (!Number.isInteger(n) || n < LOOPBACK_MIN || n > LOOPBACK_MAX) {
    throw new Error(`loopback host number must be an integer in ${LOOPBACK_MIN}..${LOOPBACK_MAX}, got ${n}`)
  }
  if (heldHere.has(n)) throw new Error(`127.0.0.${n} is already claimed by this test process`)
  const timeoutMs = options.timeoutMs ?? 60_000
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const claim = await tryClaim(n)
    if (claim) return claim
    if (Date.now() >= deadline) {
      throw new Error(`127.0.0.${n} is still in use by another test server after ${timeoutMs} ms`)
    }
    await sleep(100)
  }
}
