/**
 * The replicator's HTTP server (src/engine/replicator/http-server.ts) on a real socket, driven by a real
 * HTTP client: authentication, limits, refusals counted by reason, /metrics and /healthz. Real Dovecot
 * servers posting to it: test/dovecot/notify.int.test.ts.
 */
import * as http from 'node:http'

import {afterAll, beforeAll, describe, expect, it} from 'vitest'

import {serverLookup, type NotifyRequest} from '../../../src/dovecot/notify-events.js'
import {startNotifyServer, type NotifyServer} from '../../../src/engine/replicator/http-server.js'

const SECRET = 'c0ffee-0123456789abcdef'
const DELIVERY = {
  event: 'mail_delivery_finished',
  hostname: 'mx01',
  fields: {user: 'alice@example.com', rcpt_to: 'alice@example.com'},
}

interface Answer {
  status: number
  headers: http.IncomingHttpHeaders
  body: string
}

/** One request over node:http; the body may be sent in chunks (no Content-Length) with `chunked`. */
function request(
  url: string,
  options: {method?: string; auth?: string; body?: string | Buffer; chunked?: boolean} = {},
): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const headers: Record<string, string> = {'Content-Type': 'application/json'}
    if (options.auth !== undefined) headers.Authorization = options.auth
    const req = http.request(url, {method: options.method ?? 'POST', headers}, (res) => {
      let body = ''
      res.setEncoding('utf8')
      res.on('data', (c: string) => (body += c))
      res.on('end', () => resolve({status: res.statusCode ?? 0, headers: res.headers, body}))
    })
    req.on('error', reject)
    if (options.body !== undefined) {
      if (options.chunked) {
        const b = Buffer.from(options.body)
        for (let i = 0; i < b.length; i += 65536) req.write(b.subarray(i, i + 65536))
      } else {
        req.setHeader('Content-Length', Buffer.byteLength(options.body))
        req.write(options.body)
      }
    }
    req.end()
  })
}

const basic = (user: string, password: string) =>
  `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}`

function metricValue(text: string, name: string, labels: string): number {
  const line = text.split('\n').find((l) => l.startsWith(`${name}{${labels}}`))
  return line === undefined ? NaN : Number(line.split(' ').pop())
}

describe('replicator HTTP server', () => {
  let server: NotifyServer
  const received: NotifyRequest[][] = []
  let failEnqueue = false
  let healthy: {ok: true} | {ok: false; reason: string} = {ok: true}
  const logged: string[] = []

  beforeAll(async () => {
    server = await startNotifyServer({
      listen: {host: '127.0.0.1', port: 0},
      secret: SECRET,
      lookupSource: serverLookup([{name: 'mx01', address: '10.0.0.1'}]),
      onRequests: async (requests) => {
        if (failEnqueue) throw new Error('store unavailable')
        received.push(requests)
      },
      health: () => healthy,
      maxBodyBytes: 64 * 1024,
      log: (line) => logged.push(line),
    })
  })
  afterAll(() => server.close())

  const events = () => `${server.url}/events`
  const metrics = async () => (await request(`${server.url}/metrics`, {method: 'GET'})).body

  it('listens on the address it was given', () => {
    expect(server.address.host).toBe('127.0.0.1')
    expect(server.url).toBe(`http://127.0.0.1:${server.address.port}`)
  })

  it('takes an event with the secret as basic-auth password (any user) or bearer token', async () => {
    const a = await request(events(), {auth: basic('mailring', SECRET), body: JSON.stringify(DELIVERY)})
    expect(a.status).toBe(200)
    expect(JSON.parse(a.body)).toEqual({accepted: 1, ignored: 0})
    const b = await request(events(), {
      auth: `Bearer ${SECRET}`,
      body: JSON.stringify([DELIVERY, {event: 'client_connection_connected', fields: {}}]),
    })
    expect(JSON.parse(b.body)).toEqual({accepted: 1, ignored: 1})
    expect(received.slice(-2)).toEqual([
      [{user: 'alice@example.com', priority: 'mail', source: 'mx01'}],
      [{user: 'alice@example.com', priority: 'mail', source: 'mx01'}],
    ])
  })

  it('refuses a missing or wrong secret (401), garbage (400), a huge body (413), and counts each', async () => {
    const before = received.length
    const none = await request(events(), {body: JSON.stringify(DELIVERY)})
    expect(none.status).toBe(401)
    expect(none.headers['www-authenticate']).toContain('Basic')
    expect(
      (await request(events(), {auth: basic('mailring', 'wrong'), body: JSON.stringify(DELIVERY)})).status,
    ).toBe(401)
    expect((await request(events(), {auth: basic('mailring', SECRET.slice(0, -1)), body: '{}'})).status).toBe(
      401,
    )
    expect((await request(events(), {auth: `Bearer ${SECRET}x`, body: '{}'})).status).toBe(401)
    expect((await request(events(), {auth: basic('mailring', SECRET), body: '{"event": '})).status).toBe(400)
    const huge = JSON.stringify({...DELIVERY, pad: 'x'.repeat(1024 * 1024)})
    expect((await request(events(), {auth: basic('mailring', SECRET), body: huge})).status).toBe(413)
    expect(
      (await request(events(), {auth: basic('mailring', SECRET), body: huge, chunked: true})).status,
    ).toBe(413)
    expect(received.length).toBe(before)
    // A good request after them is taken as before.
    const good = await request(events(), {auth: basic('mailring', SECRET), body: JSON.stringify(DELIVERY)})
    expect(good.status).toBe(200)
    expect(received.length).toBe(before + 1)

    const text = await metrics()
    const rejected = (reason: string) =>
      metricValue(text, 'mailring_replicator_notifications_rejected_total', `reason="${reason}"`)
    expect(rejected('unauthorized')).toBe(4)
    expect(rejected('bad_json')).toBe(1)
    expect(rejected('too_large')).toBe(2)
    expect(metricValue(text, 'mailring_replicator_notifications_accepted_total', 'priority="mail"')).toBe(3)
    expect(metricValue(text, 'mailring_replicator_events_ignored_total', 'reason="unknown_event"')).toBe(1)
    // Logged by reason, never with the secret.
    expect(logged.some((l) => l.includes('unauthorized'))).toBe(true)
    expect(logged.join('\n')).not.toContain(SECRET)
  })

  it('answers 503 when the requests cannot be handed over, 404 and 405 elsewhere', async () => {
    failEnqueue = true
    try {
      const r = await request(events(), {auth: basic('m', SECRET), body: JSON.stringify(DELIVERY)})
      expect(r.status).toBe(503)
    } finally {
      failEnqueue = false
    }
    expect((await request(`${server.url}/events`, {method: 'GET'})).status).toBe(405)
    expect((await request(`${server.url}/metrics`, {method: 'POST', body: '{}'})).status).toBe(405)
    expect((await request(`${server.url}/nothing`, {method: 'GET'})).status).toBe(404)
    const text = await metrics()
    expect(
      metricValue(text, 'mailring_replicator_notifications_rejected_total', 'reason="enqueue_failed"'),
    ).toBe(1)
    expect(metricValue(text, 'mailring_replicator_notifications_rejected_total', 'reason="not_found"')).toBe(
      1,
    )
  })

  it('serves /healthz from the callback and the service metrics it sets', async () => {
    expect(await request(`${server.url}/healthz`, {method: 'GET'})).toMatchObject({status: 200, body: 'ok\n'})
    healthy = {ok: false, reason: 'store unreachable'}
    expect(await request(`${server.url}/healthz`, {method: 'GET'})).toMatchObject({
      status: 503,
      body: 'store unreachable\n',
    })
    healthy = {ok: true}
    server.metrics.setQueueDepth('mail', 7)
    server.metrics.observeSync('mail', 0.3)
    server.metrics.countSyncFailure('mx02')
    server.metrics.setServerHealth('mx02', 'down')
    const answer = await request(`${server.url}/metrics`, {method: 'GET'})
    expect(answer.headers['content-type']).toContain('text/plain')
    const text = answer.body
    expect(metricValue(text, 'mailring_replicator_queue_depth', 'priority="mail"')).toBe(7)
    expect(metricValue(text, 'mailring_replicator_queue_depth', 'priority="full"')).toBe(0)
    expect(
      metricValue(text, 'mailring_replicator_sync_latency_seconds_bucket', 'le="0.5",priority="mail"'),
    ).toBe(1)
    expect(metricValue(text, 'mailring_replicator_sync_failures_total', 'server="mx02"')).toBe(1)
    expect(metricValue(text, 'mailring_replicator_server_health', 'server="mx02",health="down"')).toBe(1)
    expect(metricValue(text, 'mailring_replicator_server_health', 'server="mx02",health="up"')).toBe(0)
    expect(text).toContain('mailring_replicator_process_cpu_seconds_total')
  })

  it('keeps its own registry: a second server starts with its own counts', async () => {
    const other = await startNotifyServer({
      listen: {host: '127.0.0.1', port: 0},
      secret: SECRET,
      lookupSource: () => undefined,
      onRequests: async () => {},
    })
    try {
      const text = (await request(`${other.url}/metrics`, {method: 'GET'})).body
      expect(
        metricValue(text, 'mailring_replicator_notifications_rejected_total', 'reason="unauthorized"'),
      ).toBe(0)
    } finally {
      await other.close()
    }
  })
})
