/**
 * Change notifications from REAL Dovecot servers (2.3.19 from Debian, 2.4.1 from the test bed's root)
 * configured with the snippet `config render --notify` prints (src/dovecot/notify.ts), posting to the
 * replicator's real HTTP endpoint (src/engine/replicator/http-server.ts):
 * - an LMTP delivery gives a `mail` request for that user from that server (found by the hostname
 *   Dovecot puts in each event: DOVECOT_HOSTNAME, the server's name in mailring);
 * - an IMAP flag change (STORE) gives a `change` request, and reading mail without changing it none;
 * - a POP3 deletion (2.3; the 2.4 root has no pop3d) gives a `change` request, a change made by doveadm
 *   (the way `doveadm sync` writes) none;
 * - a server posting with a wrong secret is refused (401) and counted, and nothing is queued; garbage JSON
 *   (400) and a huge body (413) are refused and counted; a good post that follows is taken as before.
 * Nothing is mocked: the requests go to a callback that records them where the service would enqueue them.
 */
import * as http from 'node:http'
import * as net from 'node:net'

import {afterAll, beforeAll, describe, expect, it} from 'vitest'

import {renderNotifyConfig} from '../../src/dovecot/notify.js'
import {serverLookup, type NotifyRequest} from '../../src/dovecot/notify-events.js'
import type {DovecotVersion} from '../../src/dovecot/render.js'
import {startNotifyServer, type NotifyServer} from '../../src/engine/replicator/http-server.js'
import {startDovecot, type DovecotHost} from '../support/dovecot.js'
import {describeDovecot24} from '../support/dovecot24.js'
import {ImapClient} from '../support/mailclients.js'
import {randomSecret, sleep} from '../support/proc.js'

const USER = 'alice@example.com'
const PASSWORD = 'pw-alice'
const SERVER = 'mx-a'

function post(url: string, auth: string | undefined, body: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const headers: Record<string, string> = {
      'Content-Type': 'application/json',
      'Content-Length': String(Buffer.byteLength(body)),
    }
    if (auth !== undefined) headers.Authorization = auth
    const req = http.request(url, {method: 'POST', headers}, (res) => {
      res.resume()
      res.on('end', () => resolve(res.statusCode ?? 0))
    })
    req.on('error', reject)
    req.end(body)
  })
}

function metricValue(text: string, name: string, labels: string): number {
  const line = text.split('\n').find((l) => l.startsWith(`${name}{${labels}}`))
  return line === undefined ? NaN : Number(line.split(' ').pop())
}

async function waitFor<T>(
  what: string,
  probe: () => T | undefined | Promise<T | undefined>,
  timeoutMs = 10_000,
): Promise<T> {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const got = await probe()
    if (got !== undefined) return got
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await sleep(50)
  }
}

/** A POP3 session: each command's answer must start with +OK. */
async function pop3(host: DovecotHost, commands: string[]): Promise<void> {
  const socket = net.connect(host.pop3Port, host.ip)
  let buffer = ''
  socket.setEncoding('latin1')
  socket.on('data', (chunk: string) => (buffer += chunk))
  const answer = async (what: string) => {
    const line = await waitFor(`the POP3 answer to ${what}`, () => {
      const end = buffer.indexOf('\r\n')
      if (end < 0) return undefined
      const l = buffer.slice(0, end)
      buffer = buffer.slice(end + 2)
      return l
    })
    if (!line.startsWith('+OK')) throw new Error(`POP3 ${what} answered ${line}`)
  }
  try {
    await answer('greeting')
    for (const command of commands) {
      socket.write(`${command}\r\n`)
      await answer(command.split(' ')[0]!)
    }
  } finally {
    socket.destroy()
  }
}

/**
 * Delivers through LMTP; retried on "421 ... Shutting down": seen on 2.3.19, a connection made right after
 * a reload may still reach the old lmtp process.
 */
async function deliver(host: DovecotHost, subject: string): Promise<void> {
  for (let attempt = 1; ; attempt++) {
    try {
      await host.deliver(USER, `Subject: ${subject}\r\n\r\nhello\r\n`)
      return
    } catch (e) {
      if (attempt >= 10 || !/ 421 /.test(String(e))) throw e
      await sleep(200)
    }
  }
}

function scenario(version: DovecotVersion): void {
  const secret = randomSecret(24)
  let replicator: NotifyServer
  let host: DovecotHost
  const received: NotifyRequest[] = []
  const snippet = (s: string) =>
    renderNotifyConfig({server: SERVER, version, url: replicator.url, secret: s}).text
  const rejected = async (reason: string) =>
    metricValue(
      await replicator.metrics.text(),
      'mailring_replicator_notifications_rejected_total',
      `reason="${reason}"`,
    )
  /** The requests that arrive while `action` runs, until `until` holds, and 300 ms after. */
  const during = async (action: () => Promise<unknown>, until: (r: NotifyRequest[]) => boolean) => {
    const start = received.length
    await action()
    await waitFor('the notification', () => (until(received.slice(start)) ? true : undefined))
    await sleep(300) // anything else the same action would have sent
    return received.slice(start)
  }
  /** Waits until no request has arrived for a second: a late post of an earlier step must not count later. */
  const settle = async () => {
    for (let seen = -1; seen !== received.length;) {
      seen = received.length
      await sleep(1000)
    }
  }
  /**
   * A new snippet, with Dovecot restarted rather than reloaded: after a reload an lmtp process of the old
   * configuration may still take the next delivery and post it with the old secret (CI saw one).
   */
  const restartWith = async (extraConfig: string) => {
    await host.reconfigure({extraConfig})
    await host.halt()
    await host.resume()
  }

  beforeAll(async () => {
    replicator = await startNotifyServer({
      listen: {host: '127.0.0.1', port: 0},
      secret,
      lookupSource: serverLookup([{name: SERVER, address: '192.0.2.1'}]),
      onRequests: async (requests) => {
        received.push(...requests)
      },
    })
    host = await startDovecot({
      version,
      hostname: SERVER,
      // The 2.4 root has no pop3d.
      protocols: version === '2.3' ? ['imap', 'lmtp', 'pop3'] : ['imap', 'lmtp'],
      users: [{user: USER, password: PASSWORD}],
      extraConfig: snippet(secret),
    })
  })
  afterAll(async () => {
    await host?.stop()
    await replicator?.close()
  })

  it('an LMTP delivery gives a mail request for that user from that server', async () => {
    const got = await during(
      () => deliver(host, 'notify'),
      (r) => r.length > 0,
    )
    expect(got).toEqual([{user: USER, priority: 'mail', source: SERVER}])
    expect(host.readLog()).not.toMatch(/Failed to export event/)
  })

  it('an IMAP flag change gives a change request; reading without changing gives none', async () => {
    const imap = await ImapClient.connect(host.ip, host.imapPort)
    try {
      await imap.login(USER, PASSWORD)
      const quiet = received.length
      await imap.select('INBOX')
      await imap.command('FETCH 1 (FLAGS BODY.PEEK[HEADER])')
      await sleep(500)
      expect(received.slice(quiet)).toEqual([])
      const got = await during(
        () => imap.command('STORE 1 +FLAGS (\\Flagged)'),
        (r) => r.length > 0,
      )
      expect(got).toEqual([{user: USER, priority: 'change', source: SERVER}])
    } finally {
      await imap.logout()
    }
  })

  it('a change made by doveadm (as doveadm sync makes them) gives no request', async () => {
    const start = received.length
    const r = await host.doveadm(['flags', 'add', '-u', USER, '\\Answered', 'mailbox', 'INBOX', 'all'])
    expect(r.exitCode).toBe(0)
    const flags = await host.doveadm(['fetch', '-u', USER, 'flags', 'mailbox', 'INBOX', 'all'])
    expect(flags.stdout).toContain('\\Answered')
    await sleep(700)
    expect(received.slice(start)).toEqual([])
  })

  it.runIf(version === '2.3')('a POP3 deletion gives a change request', async () => {
    const got = await during(
      () => pop3(host, [`USER ${USER}`, `PASS ${PASSWORD}`, 'DELE 1', 'QUIT']),
      (r) => r.length > 0,
    )
    expect(got).toEqual([{user: USER, priority: 'change', source: SERVER}])
  })

  it('refuses a wrong secret, garbage and a huge body, counts them, and takes a good post after them', async () => {
    // A server with the wrong secret: Dovecot's post is refused and nothing is queued.
    await restartWith(snippet(randomSecret(24)))
    await settle()
    const before = received.length
    await deliver(host, 'wrong secret')
    await waitFor('a 401 counted', async () => ((await rejected('unauthorized')) >= 1 ? true : undefined))
    await waitFor('Dovecot logging the 401', () =>
      /Failed to export event via HTTP POST: 401/.test(host.readLog()) ? true : undefined,
    )
    await sleep(300)
    expect(received.length).toBe(before)

    // Garbage and a huge body, with the right secret.
    const auth = `Basic ${Buffer.from(`mailring:${secret}`).toString('base64')}`
    expect(await post(`${replicator.url}/events`, auth, 'this is not JSON')).toBe(400)
    expect(
      await post(`${replicator.url}/events`, auth, JSON.stringify({pad: 'x'.repeat(2 * 1024 * 1024)})),
    ).toBe(413)
    expect(await rejected('bad_json')).toBe(1)
    expect(await rejected('too_large')).toBe(1)
    expect(received.length).toBe(before)

    // The right secret again: the next delivery is taken as before.
    await restartWith(snippet(secret))
    const got = await during(
      () => deliver(host, 'right secret'),
      (r) => r.length > 0,
    )
    expect(got).toEqual([{user: USER, priority: 'mail', source: SERVER}])
    const text = await replicator.metrics.text()
    expect(metricValue(text, 'mailring_replicator_notifications_accepted_total', 'priority="mail"')).toBe(2)
    expect(metricValue(text, 'mailring_replicator_notifications_accepted_total', 'priority="change"')).toBe(
      version === '2.3' ? 2 : 1,
    )
  })
}

describe('change notifications from Dovecot 2.3', () => scenario('2.3'))
describeDovecot24('change notifications from Dovecot 2.4', () => scenario('2.4'))
