/**
 * `mailring replicator run`, the built CLI, on three real Dovecot 2.3 servers with R = 3, configured by
 * mailring (rendered SQL over the SQLite store, the event-exporter snippet of `config render --notify`):
 * nothing is queued by hand; every change reaches the replicator as Dovecot's own notification.
 * - a delivery through LMTP to the primary appears on the other two copies (IMAP);
 * - a flag set on a secondary reaches the others;
 * - a stopped server is found down by the probes, skipped, and caught up when it returns;
 * - the service stopped (SIGTERM) and killed (kill -9) while mail keeps arriving: no change lost;
 * - bad notifications (wrong secret, garbage, huge bodies) are refused, counted, and disturb nothing.
 */
import * as fs from 'node:fs'
import * as path from 'node:path'

import {afterAll, beforeAll, describe, expect, it} from 'vitest'

import {freePort} from '../support/ports.js'
import {sleep} from '../support/proc.js'
import {ImapClient} from '../support/mailclients.js'
import {startCli, type CliResult} from './cli.js'
import {PASSWORD, RING_OF_THREE, startRingCluster, type RingCluster} from './ring-cluster.js'
import type {ReplicatorStatus} from '../../src/engine/replicator/status.js'
import type {JsonEnvelope} from './cli.js'

let ring: RingCluster
let port: number
let service: Service | undefined

interface Service {
  result: Promise<CliResult>
  stderr: () => string
  kill(signal: NodeJS.Signals): void
}

const message = (subject: string) => `From: s@example.net\r\nSubject: ${subject}\r\n\r\n${subject}\r\n`

async function until(what: string, check: () => Promise<boolean>, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!(await check())) {
    if (Date.now() > deadline)
      throw new Error(`timed out waiting until ${what}; replicator log:\n${service?.stderr() ?? ''}`)
    await sleep(100)
  }
}

async function startService(): Promise<Service> {
  const started = startCli(['replicator', 'run'], {
    cwd: ring.dir,
    env: {HOME: ring.dir, MAILRING_CONFIG: ring.configPath},
    timeoutMs: 900_000,
  })
  let text = ''
  started.child.stderr?.on('data', (chunk: Buffer) => (text += chunk.toString()))
  const s: Service = {
    result: started.result,
    stderr: () => text,
    kill: (signal) => started.child.kill(signal),
  }
  service = s
  await until('the replicator listens', async () => text.includes('listening on'))
  return s
}

const subjects = async (server: string, user: string) =>
  (await ring.mailbox(server, user)).map((m) => m.subject)

async function status(): Promise<ReplicatorStatus> {
  const r = await ring.cli<JsonEnvelope<ReplicatorStatus>>(['replicator', 'status', '--json'])
  expect(r.exitCode).toBe(0)
  return r.json!.result!
}

const healthOf = async (server: string) => (await status()).servers.find((s) => s.server === server)?.health

async function post(body: string, auth: string | undefined): Promise<number> {
  const response = await fetch(`http://127.0.0.1:${port}/events`, {
    method: 'POST',
    headers: {'content-type': 'application/json', ...(auth ? {authorization: auth} : {})},
    body,
  })
  await response.arrayBuffer()
  return response.status
}

function secret(): string {
  return fs.readFileSync(path.join(ring.dir, 'replicator-secret'), 'utf8').trim()
}

beforeAll(async () => {
  port = await freePort('127.0.0.1')
  ring = await startRingCluster({
    ...RING_OF_THREE,
    replicator: {port, settings: {debounce: '100ms', max_delay: '1s'}},
  })
  await startService()
})

afterAll(async () => {
  service?.kill('SIGKILL')
  await service?.result
  await ring?.stop()
})

describe('mailring replicator run', () => {
  it('brings a delivery to the primary onto the other two copies', async () => {
    await ring.host('mx-a').deliver('alice@example.com', message('hello everyone'))
    for (const server of ['mx-b', 'mx-c'])
      await until(`the mail is on ${server}`, async () =>
        (await subjects(server, 'alice@example.com')).includes('hello everyone'),
      )
  })

  it('brings a flag set on a secondary to the other copies', async () => {
    await ring.host('mx-b').deliver('bob@example.com', message('flag this'))
    await until('the mail is on mx-a', async () =>
      (await subjects('mx-a', 'bob@example.com')).includes('flag this'),
    )
    const imap = await ImapClient.connect(ring.host('mx-a').ip, ring.host('mx-a').imapPort)
    await imap.login('bob@example.com', PASSWORD)
    await imap.select('INBOX')
    await imap.command('STORE 1:* +FLAGS (\\Flagged)')
    await imap.logout()
    for (const server of ['mx-b', 'mx-c'])
      await until(`the flag is on ${server}`, async () =>
        (await ring.mailbox(server, 'bob@example.com')).some((m) => m.flags.includes('\\Flagged')),
      )
  })

  it('finds a stopped server down, skips it, and catches it up when it returns', async () => {
    await ring.host('mx-c').halt()
    const stopped = Date.now()
    await until('mx-c is down', async () => (await healthOf('mx-c')) === 'down')
    console.log(`mx-c stopped -> down in the store: ${Date.now() - stopped} ms`)
    await ring.host('mx-a').deliver('carol@example.org', message('while mx-c was away'))
    await until('the mail is on mx-b', async () =>
      (await subjects('mx-b', 'carol@example.org')).includes('while mx-c was away'),
    )
    expect((await status()).servers.find((s) => s.server === 'mx-c')?.syncFailures).toBe(0)
    await ring.host('mx-c').resume()
    await until('mx-c is up again', async () => (await healthOf('mx-c')) === 'up')
    expect(await subjects('mx-c', 'carol@example.org')).toContain('while mx-c was away')
    expect(service!.stderr()).toMatch(/mx-c is caught up/)
  })

  it('loses no change when the service is stopped or killed while mail arrives', async () => {
    const users = RING_OF_THREE.users
    const sent: Map<string, string[]> = new Map(users.map(([u]) => [u, []]))
    let n = 0
    const deliverSome = async (count: number) => {
      for (let i = 0; i < count; i++) {
        const [user, copies] = users[n % users.length]!
        const subject = `stream ${n++}`
        await ring.host(copies[0]!).deliver(user, message(subject))
        sent.get(user)!.push(subject)
        await sleep(30)
      }
    }
    await deliverSome(12)
    const term = service!
    term.kill('SIGTERM')
    await deliverSome(9)
    const stopped = await term.result
    expect(stopped.exitCode).toBe(0)
    expect(term.stderr()).toMatch(/SIGTERM: finishing the syncs in flight/)
    await startService()
    await deliverSome(12)
    const killed = service!
    killed.kill('SIGKILL')
    await deliverSome(9)
    expect((await killed.result).signal).toBe('SIGKILL')
    await startService()
    await deliverSome(6)
    for (const [user, copies] of users)
      for (const server of copies)
        await until(
          `${user} has every message on ${server}`,
          async () => {
            const have = new Set(await subjects(server, user))
            return sent.get(user)!.every((s) => have.has(s))
          },
          60_000,
        )
    await until('the queue is empty', async () => (await status()).queue.waiting === 0)
  }, 240_000)

  it('refuses bad notifications, counts them, and goes on with good ones', async () => {
    const basic = (password: string) => `Basic ${Buffer.from(`mailring:${password}`).toString('base64')}`
    expect(await post('{"event":"mail_delivery_finished"}', undefined)).toBe(401)
    expect(await post('{"event":"mail_delivery_finished"}', basic('not-the-secret-at-all'))).toBe(401)
    expect(await post('{this is not json', basic(secret()))).toBe(400)
    expect(await post('x'.repeat(2 * 1024 * 1024), basic(secret()))).toBe(413)
    const metrics = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text()
    expect(metrics).toMatch(/mailring_replicator_notifications_rejected_total\{reason="unauthorized"\} 2/)
    expect(metrics).toMatch(/mailring_replicator_notifications_rejected_total\{reason="bad_json"\} 1/)
    expect(metrics).toMatch(/mailring_replicator_notifications_rejected_total\{reason="too_large"\} 1/)
    expect(metrics).not.toContain(secret())
    expect(service!.stderr()).not.toContain(secret())
    expect((await fetch(`http://127.0.0.1:${port}/healthz`)).status).toBe(200)
    await ring.host('mx-c').deliver('carol@example.org', message('after the bad ones'))
    for (const server of ['mx-a', 'mx-b'])
      await until(`the mail is on ${server}`, async () =>
        (await subjects(server, 'carol@example.org')).includes('after the bad ones'),
      )
  })
})
