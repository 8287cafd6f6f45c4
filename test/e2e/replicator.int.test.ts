/**
 * `mailring replicator run`, the built CLI, on three real Dovecot 2.3 servers with R = 3, configured by
 * mailring (rendered SQL over the SQLite store, the event-exporter snippet of `config render --notify`):
 * nothing is queued by hand; every change reaches the replicator as Dovecot's own notification.
 * - a delivery through LMTP to the primary appears on the other two copies (IMAP);
 * - a flag set on a secondary reaches the others;
 * - a real Dovecot proxy with the proxy passdb `config render --role proxy` gives sends a login and a
 *   delivery to the primary; the primary stopped, the probes find it down and the proxy sends them to the
 *   next copy (the time is printed: timing belongs to benchmarks); started again, it is caught up (the
 *   mail delivered meanwhile is there) before the proxy sends logins to it again;
 * - the service stopped (SIGTERM) and killed (kill -9) while mail keeps arriving: no change lost;
 * - bad notifications (wrong secret, garbage, huge bodies) are refused, counted, and disturb nothing.
 */
import * as fs from 'node:fs'
import * as path from 'node:path'

import {afterAll, beforeAll, describe, expect, it} from 'vitest'

import {freePort} from '../support/ports.js'
import {sleep} from '../support/proc.js'
import {lmtpDeliver} from '../support/mailclients.js'
import {reserveDovecotAddress, startDovecot, type DovecotHost} from '../support/dovecot.js'
import {startCli, type CliResult} from '../support/cli.js'
import {PASSWORD, RING_OF_THREE, startRingCluster, type RingCluster} from '../support/ring-cluster.js'
import type {ReplicatorStatus} from '../../src/engine/replicator/status.js'
import type {JsonEnvelope} from '../support/cli.js'

let ring: RingCluster
let port: number
let service: Service | undefined
let proxy: DovecotHost

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
  const address = await reserveDovecotAddress()
  address.imapPort = 143
  address.lmtpPort = 24
  expect((await ring.cli(['proxy', 'add', 'proxy01', '--address', address.ip])).exitCode).toBe(0)
  const rendered = await ring.cli(['config', 'render', '--role', 'proxy', '--server', 'proxy01'])
  expect(rendered.exitCode).toBe(0)
  proxy = await startDovecot({
    address,
    files: {'dovecot-sql-proxy.conf.ext': rendered.stdout},
    passdb: (c) => `passdb {\n  driver = sql\n  args = ${path.join(c.dir, 'dovecot-sql-proxy.conf.ext')}\n}`,
    extraConfig: 'lmtp_proxy = yes\n',
  })
  await startService()
  // Every user's INBOX is created once, on its primary, and replicated before any IMAP login: a login on a
  // copy whose INBOX does not exist yet creates another INBOX there, a twin that dsync never reconciles
  // once both hold mail (docs/dovecot-facts.md). doveadm mailbox status creates nothing.
  for (const [user, copies] of RING_OF_THREE.users)
    await ring.host(copies[0]!).deliver(user, message('welcome'))
  for (const [user, copies] of RING_OF_THREE.users)
    for (const server of copies)
      await until(`${user}'s INBOX is on ${server}`, async () => (await ring.inboxCount(server, user)) === 1)
}, 120_000)

afterAll(async () => {
  service?.kill('SIGKILL')
  await service?.result
  await proxy?.stop()
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
    await ring.flagAll('mx-a', 'bob@example.com', '\\Flagged')
    for (const server of ['mx-b', 'mx-c'])
      await until(`the flag is on ${server}`, async () =>
        (await ring.mailbox(server, 'bob@example.com')).some((m) => m.flags.includes('\\Flagged')),
      )
  })

  it('sends logins and deliveries through the proxy to a healthy copy, and back once caught up', async () => {
    const alice = 'alice@example.com'
    const logins = (server: string) =>
      ring
        .host(server)
        .readLog()
        .split('\n')
        .filter((l) => l.includes(`Login: user=<${alice}>`)).length
    const loginViaProxy = async () => {
      try {
        await proxy.imapListMessages(alice, PASSWORD)
        return true
      } catch {
        return false
      }
    }
    const onA = logins('mx-a')
    expect(await loginViaProxy()).toBe(true)
    expect(logins('mx-a')).toBe(onA + 1)

    await ring.host('mx-a').halt()
    const stopped = Date.now()
    await until('a login through the proxy is served by mx-b', async () => {
      const onB = logins('mx-b')
      return (await loginViaProxy()) && logins('mx-b') > onB
    })
    console.log(
      `alice's primary mx-a stopped -> first login through the proxy served by mx-b: ${Date.now() - stopped} ms`,
    )
    expect(await healthOf('mx-a')).toBe('down')
    await lmtpDeliver(proxy.ip, 24, {to: [alice], message: message('through the proxy while mx-a was away')})
    for (const server of ['mx-b', 'mx-c'])
      await until(`the mail is on ${server}`, async () =>
        (await subjects(server, alice)).includes('through the proxy while mx-a was away'),
      )
    expect((await status()).servers.find((s) => s.server === 'mx-a')?.syncFailures).toBe(0)

    await ring.host('mx-a').resume()
    await until('mx-a is up again', async () => (await healthOf('mx-a')) === 'up')
    expect(service!.stderr()).toMatch(/mx-a is caught up/)
    expect(await subjects('mx-a', alice)).toContain('through the proxy while mx-a was away')
    const back = logins('mx-a')
    expect(await loginViaProxy()).toBe(true)
    expect(logins('mx-a')).toBe(back + 1)
  }, 120_000)

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
