/**
 * The replicator's health probes against REAL Dovecot 2.3 instances (test/support/dovecot.ts) and a real
 * SQLite store: the probes of one server (doveadm HTTP, IMAP, LMTP), then the Prober's loop: stopping a
 * Dovecot takes its server down after down_after failed rounds, starting it again makes it returning after
 * up_after good rounds, and only markCaughtUp makes it up; every transition is in the store. Two probers on
 * one store: each transition is written once (compare-and-set), the other adopts it.
 */
import * as fs from 'node:fs'
import * as net from 'node:net'
import * as path from 'node:path'

import {afterAll, beforeAll, describe, expect, it} from 'vitest'

import {
  probeBanner,
  probeServer,
  Prober,
  type HealthEvent,
  type ProbeTarget,
} from '../../src/engine/replicator/prober.js'
import {SqliteStore} from '../../src/store/sqlite.js'
import {startDovecot, type DovecotHost} from '../support/dovecot.js'
import {freePort} from '../support/ports.js'
import {killGroup, makeTempDir, removeDir, sleep} from '../support/proc.js'
import {fillStore} from '../support/store-cluster.js'

let dir: string
let store: SqliteStore
let a: DovecotHost
let b: DovecotHost

const SETTINGS = {intervalMs: 200, timeoutMs: 500, downAfter: 2, upAfter: 2}

function target(server: string, host: DovecotHost): ProbeTarget {
  return {
    server,
    address: host.ip,
    ports: {imap: host.imapPort, lmtp: host.lmtpPort, doveadm: host.httpPort},
  }
}

function targets(): Promise<ProbeTarget[]> {
  return Promise.resolve([target('mx-a', a), target('mx-b', b)])
}

async function until<T>(what: string, fn: () => T | undefined, timeoutMs = 15_000): Promise<T> {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const value = fn()
    if (value !== undefined) return value
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await sleep(25)
  }
}

async function healthOf(server: string) {
  return (await store.serverHealth()).find((h) => h.server === server)
}

beforeAll(async () => {
  dir = makeTempDir('mr-prober')
  fs.chmodSync(dir, 0o755)
  ;[a, b] = await Promise.all([startDovecot({}), startDovecot({})])
  store = (await SqliteStore.init(path.join(dir, 'cluster.db'))).store
  await fillStore(
    store,
    [
      {name: 'mx-a', address: a.ip},
      {name: 'mx-b', address: b.ip},
    ],
    [['alice@example.com', ['mx-a', 'mx-b']]],
  )
})

afterAll(async () => {
  await Promise.all([a?.stop(), b?.stop()])
  await store?.close()
  if (dir) removeDir(dir)
})

describe('probing one server', () => {
  it('is good when doveadm HTTP, IMAP and LMTP all answer', async () => {
    expect(await probeServer(target('mx-a', a), 1000)).toEqual({ok: true})
  })

  it('names each port that fails and why: refused, wrong greeting, silence', async () => {
    const closed = await freePort(a.ip)
    const wrong = await probeServer(
      {server: 'mx-a', address: a.ip, ports: {imap: a.lmtpPort, lmtp: closed, doveadm: a.httpPort}},
      1000,
    )
    expect(wrong.ok).toBe(false)
    const reason = (wrong as {reason: string}).reason
    expect(reason).toMatch(new RegExp(`imap ${a.ip}:${a.lmtpPort}: unexpected greeting "220 `))
    expect(reason).toContain(`lmtp ${a.ip}:${closed}: connection refused`)
    expect(reason).not.toContain('doveadm')
    // A port that accepts but never speaks: the time-out.
    const silent = net.createServer(() => undefined)
    await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve))
    const port = (silent.address() as net.AddressInfo).port
    const started = Date.now()
    expect(await probeBanner('127.0.0.1', port, /^\* OK/, 300)).toBe('no greeting within 300 ms')
    expect(Date.now() - started).toBeLessThan(1000)
    silent.close()
  })
})

/**
 * A prober over mx-a and mx-b with its events, started and left three rounds (in which nothing may
 * happen), then `work`; stopped whatever happens.
 */
async function withProber(work: (prober: Prober, events: HealthEvent[]) => Promise<void>): Promise<void> {
  const events: HealthEvent[] = []
  const prober = new Prober({store, settings: SETTINGS, targets, onEvent: (e) => events.push(e)})
  await prober.start()
  try {
    await sleep(3 * SETTINGS.intervalMs)
    expect(events).toEqual([])
    await work(prober, events)
  } finally {
    await prober.stop()
  }
}

describe('the Prober', () => {
  it('takes a stopped server down after down_after rounds, returning when it answers again, up when caught up', async () => {
    await withProber(async (prober, events) => {
      expect(prober.health('mx-a')).toBe('up')

      const stopped = Date.now()
      await a.halt()
      const down = await until('mx-a down', () =>
        events.find((e) => e.server === 'mx-a' && e.type === 'down'),
      )
      console.log(
        `mx-a down ${down.at - stopped} ms after its Dovecot stopped (interval 200 ms, down_after 2)`,
      )
      expect(down).toMatchObject({from: 'up', adopted: false})
      // What the last probe found (while Dovecot stops, a port may still accept and not answer).
      expect(down.detail).toMatch(new RegExp(`(doveadm|imap|lmtp) ${a.ip.replace(/\./g, '\\.')}:\\d+: `))
      expect(await healthOf('mx-a')).toMatchObject({health: 'down', detail: down.detail})
      expect((await healthOf('mx-b'))?.health ?? 'up').toBe('up')
      // markCaughtUp does nothing for a down server.
      expect(await prober.markCaughtUp('mx-a')).toBe(false)
      expect((await healthOf('mx-a'))?.health).toBe('down')

      await a.resume()
      const back = await until('mx-a returning', () =>
        events.find((e) => e.server === 'mx-a' && e.type === 'returning'),
      )
      expect(back).toMatchObject({from: 'down', adopted: false})
      expect((await healthOf('mx-a'))?.health).toBe('returning')
      // Good probes alone never make it up.
      await sleep(4 * SETTINGS.intervalMs)
      expect((await healthOf('mx-a'))?.health).toBe('returning')

      expect(await prober.markCaughtUp('mx-a')).toBe(true)
      expect(await healthOf('mx-a')).toMatchObject({health: 'up', syncFailures: 0})
      expect(events.filter((e) => e.server === 'mx-a').map((e) => e.type)).toEqual([
        'down',
        'returning',
        'up',
      ])
      expect(events.some((e) => e.server === 'mx-b')).toBe(false)
    })
  }, 60_000)

  it('two probers on one store: each transition is written once, the other adopts it', async () => {
    const seen: Record<string, HealthEvent[]> = {p: [], q: []}
    const make = (name: string) =>
      new Prober({store, settings: SETTINGS, targets, onEvent: (e) => seen[name]!.push(e)})
    const p = make('p')
    const q = make('q')
    await Promise.all([p.start(), q.start()])
    try {
      await b.halt()
      await until('both see mx-b down', () =>
        p.health('mx-b') === 'down' && q.health('mx-b') === 'down' ? true : undefined,
      )
      const downs = [...seen.p!, ...seen.q!].filter((e) => e.server === 'mx-b' && e.type === 'down')
      expect(downs.filter((e) => !e.adopted)).toHaveLength(1)
      expect(downs).toHaveLength(2)
      await b.resume()
      await until('both see mx-b returning', () =>
        p.health('mx-b') === 'returning' && q.health('mx-b') === 'returning' ? true : undefined,
      )
      expect(await p.markCaughtUp('mx-b')).toBe(true)
      // q learns it from the store at its next round.
      await until('q sees mx-b up', () => (q.health('mx-b') === 'up' ? true : undefined))
      expect((await healthOf('mx-b'))?.health).toBe('up')
    } finally {
      await Promise.all([p.stop(), q.stop()])
    }
  }, 60_000)

  it('takes no server down for a slowness every server shares, and still takes a stopped one down', async () => {
    await withProber(async (prober, events) => {
      // Every Dovecot paused (a loaded machine, at its worst): connections are accepted, nothing answers,
      // every probe times out, round after round, many times down_after.
      const paused = [a.pid, b.pid]
      for (const pid of paused) killGroup(pid, 'SIGSTOP')
      try {
        await sleep(6 * (SETTINGS.intervalMs + SETTINGS.timeoutMs))
      } finally {
        for (const pid of paused) killGroup(pid, 'SIGCONT')
      }
      await sleep(3 * SETTINGS.intervalMs)
      expect(events, 'no server went down while all were slow').toEqual([])
      expect(prober.health('mx-a')).toBe('up')
      expect(prober.health('mx-b')).toBe('up')

      // One server paused alone: the other answers, so its slowness counts.
      killGroup(b.pid, 'SIGSTOP')
      let down: HealthEvent
      const pausedAt = Date.now()
      try {
        down = await until('mx-b down', () => events.find((e) => e.server === 'mx-b' && e.type === 'down'))
      } finally {
        killGroup(b.pid, 'SIGCONT')
      }
      console.log(
        `mx-b, paused alone, down ${down.at - pausedAt} ms later (interval 200 ms, time-out 500 ms)`,
      )
      expect(down.detail).toMatch(/no (greeting|HTTP answer) within 500 ms/)
      expect(events.some((e) => e.server === 'mx-a')).toBe(false)

      // A stopped one is refused: down as before.
      const stopped = Date.now()
      await a.halt()
      const aDown = await until('mx-a down', () =>
        events.find((e) => e.server === 'mx-a' && e.type === 'down'),
      )
      console.log(`mx-a, stopped, down ${aDown.at - stopped} ms later (interval 200 ms, down_after 2)`)
      await a.resume()
      for (const server of ['mx-a', 'mx-b']) {
        await until(`${server} returning`, () => (prober.health(server) === 'returning' ? true : undefined))
        expect(await prober.markCaughtUp(server)).toBe(true)
      }
    })
  }, 60_000)
})
