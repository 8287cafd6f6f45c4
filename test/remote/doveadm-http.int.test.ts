/**
 * The doveadm HTTP API client against real Dovecot 2.3 instances on loopback. Three servers here are not
 * Dovecot, because a real doveadm does not misbehave on demand: one answers garbage, one drops every
 * connection, and one answers slowly enough for requests to overlap (the per-server limit).
 */
import * as http from 'node:http'
import * as net from 'node:net'
import type {AddressInfo} from 'node:net'

import {afterAll, beforeAll, describe, expect, it} from 'vitest'

import {MailringError} from '../../src/core/errors.js'
import {
  fetchCommand,
  kickCommand,
  kicked,
  mailboxStatusCommand,
  syncCommand,
  userFieldsOf,
  userLookupCommand,
} from '../../src/dovecot/doveadm.js'
import {HttpDoveadm} from '../../src/remote/doveadm-http.js'
import {startDovecot, type DovecotHost} from '../support/dovecot.js'
import {ImapClient, sessionClosed} from '../support/mailclients.js'
import {freePort} from '../support/ports.js'

let a: DovecotHost
let b: DovecotHost
let garbage: http.Server
let garbageRequests = 0

const USERS = [
  {user: 'alice@example.com', password: 'pw'},
  {user: 'bob@example.com', password: 'pw'},
]

function client(host: DovecotHost, extra: Partial<ConstructorParameters<typeof HttpDoveadm>[0]> = {}) {
  return new HttpDoveadm({
    name: 'mx-test',
    host: host.ip,
    port: host.httpPort,
    password: host.doveadmPassword,
    backoffMs: 10,
    ...extra,
  })
}

async function failure(promise: Promise<unknown>): Promise<MailringError> {
  try {
    await promise
  } catch (error) {
    expect(error).toBeInstanceOf(MailringError)
    return error as MailringError
  }
  throw new Error('expected a failure')
}

beforeAll(async () => {
  ;[a, b] = await Promise.all([startDovecot({users: USERS}), startDovecot({users: USERS})])
  garbage = http.createServer((req, res) => {
    garbageRequests++
    req.resume()
    res.writeHead(200, {'Content-Type': 'text/html'}).end('<html>It works!</html>')
  })
  await new Promise<void>((resolve) => garbage.listen(0, '127.0.0.1', resolve))
})

afterAll(async () => {
  garbage?.close()
  await Promise.all([a?.stop(), b?.stop()])
})

describe('doveadm over its HTTP API', () => {
  it('answers several commands in one request, each by its own result', async () => {
    await a.deliver('alice@example.com', 'Subject: one\r\n\r\nbody\r\n')
    const replies = await client(a).runBatch([
      mailboxStatusCommand('alice@example.com', ['messages', 'guid']),
      userLookupCommand('bob@example.com'),
      fetchCommand('alice@example.com', ['mailbox', 'guid', 'flags']),
    ])
    expect(replies.map((r) => r.outcome)).toEqual(['ok', 'ok', 'ok'])
    expect(replies[0]?.rows).toEqual([expect.objectContaining({mailbox: 'INBOX', messages: '1'})])
    expect(userFieldsOf(replies[1]!.rows, 'bob@example.com').get('home')).toContain('bob')
    expect(replies[2]?.rows).toHaveLength(1)
  })

  it('syncs a user to another server', async () => {
    await a.deliver('bob@example.com', 'Subject: to b\r\n\r\nbody\r\n')
    const reply = await client(a).run(
      syncCommand({user: 'bob@example.com', destination: `tcp:${b.ip}:${b.doveadmPort}`, lockSeconds: 30}),
    )
    expect(reply.outcome).toBe('ok')
    const copy = await client(b).run(mailboxStatusCommand('bob@example.com', ['messages']))
    expect(copy.rows).toEqual([{mailbox: 'INBOX', messages: '1'}])
  })

  it('kicks a user: exit 68 with nobody logged in, 0 closing an open IMAP session; both count as kicked', async () => {
    const nobody = await client(a, {retries: 0}).run(kickCommand('alice@example.com'))
    expect(nobody.exitCode).toBe(68)
    expect(kicked(nobody)).toBe(true)
    const session = await ImapClient.connect(a.ip, a.imapPort)
    await session.login('alice@example.com', 'pw')
    const reply = await client(a, {retries: 0}).run(kickCommand('alice@example.com'))
    expect(reply.exitCode).toBe(0)
    expect(kicked(reply)).toBe(true)
    await sessionClosed(session)
    expect(kicked({exitCode: 75})).toBe(false)
  })

  it('reports an unknown user by its exit code, and the user command says no such user', async () => {
    const reply = await client(a, {retries: 0}).run(userLookupCommand('nobody@example.com'))
    expect(reply).toMatchObject({outcome: 'no-such-user', exitCode: 67})
  })

  it('refuses a wrong password in one line, without the password, and without retrying', async () => {
    const secret = 'wrong-secret-123'
    const error = await failure(client(a, {password: secret}).run(userLookupCommand('alice@example.com')))
    expect(error.code).toBe('doveadm_auth')
    expect(error.message).toMatch(
      /^doveadm on mx-test \(127\.0\.0\.\d+:\d+\): the doveadm password was refused \(HTTP 401\)/,
    )
    expect(error.message).not.toContain(secret)
    expect(error.message).not.toContain('\n')
  })

  it('says a server is unreachable when nothing listens', async () => {
    const port = await freePort(a.ip)
    const error = await failure(client(a, {port, retries: 0}).run(userLookupCommand('alice@example.com')))
    expect(error.code).toBe('doveadm_unreachable')
    expect(error.message).toMatch(/connection refused/)
  })

  it('retries a dropped connection with back-off, then gives up', async () => {
    let connections = 0
    const dropper = net.createServer((socket) => {
      connections++
      socket.destroy()
    })
    await new Promise<void>((resolve) => dropper.listen(0, '127.0.0.1', resolve))
    try {
      const port = (dropper.address() as AddressInfo).port
      const error = await failure(
        new HttpDoveadm({name: 'd', host: '127.0.0.1', port, password: 'x', retries: 2, backoffMs: 10}).run(
          userLookupCommand('alice@example.com'),
        ),
      )
      expect(error.code).toBe('doveadm_unreachable')
      expect(connections).toBe(3)
    } finally {
      dropper.close()
    }
  })

  it("does not take an answer that is not doveadm's, and does not retry it", async () => {
    garbageRequests = 0
    const port = (garbage.address() as AddressInfo).port
    const error = await failure(
      new HttpDoveadm({name: 'web', host: '127.0.0.1', port, password: 'x', retries: 3}).run(
        userLookupCommand('alice@example.com'),
      ),
    )
    expect(error.code).toBe('doveadm_garbage')
    expect(error.message).toMatch(/not doveadm's \(not JSON\)/)
    expect(garbageRequests).toBe(1)
  })

  it('never has more requests in flight to one server than allowed, across clients', async () => {
    const slow = await slowDoveadm()
    try {
      const make = () =>
        new HttpDoveadm({name: 's', host: '127.0.0.1', port: slow.port, password: 'x', perServer: 2})
      const clients = [make(), make(), make()]
      // runBatch sends exactly what it is given: one request each.
      await Promise.all(
        Array.from({length: 12}, (_, i) =>
          clients[i % 3]!.runBatch([userLookupCommand(`u${i}@example.com`)]),
        ),
      )
      expect(slow.requests).toHaveLength(12)
      expect(slow.most).toBe(2)
    } finally {
      slow.close()
    }
  })

  it('sends single calls that wait for a free slot together, each answered by its own reply', async () => {
    await a.deliver('alice@example.com', 'Subject: batch\r\n\r\nbody\r\n')
    const slow = await slowDoveadm()
    try {
      const c = new HttpDoveadm({name: 's', host: '127.0.0.1', port: slow.port, password: 'x', perServer: 1})
      const users = Array.from({length: 20}, (_, i) => `u${i}@example.com`)
      const replies = await Promise.all(users.map((u) => c.run(userLookupCommand(u))))
      expect(replies.map((r) => (r.rows as Record<string, unknown>)['user'])).toEqual(users)
      expect(slow.requests.length).toBeLessThanOrEqual(2)
    } finally {
      slow.close()
    }
    // And against real Dovecot as Debian configures it, where a doveadm server process serves only the
    // first mail command of a request (docs/dovecot-facts.md): the others are sent again one per request,
    // and every answer is still right.
    const real = client(a, {perServer: 1})
    const answers = await Promise.all(
      ['alice@example.com', 'bob@example.com', 'alice@example.com'].map((u) =>
        real.run(mailboxStatusCommand(u, ['messages'])),
      ),
    )
    expect(answers.map((r) => r.outcome)).toEqual(['ok', 'ok', 'ok'])
    expect(answers[0]?.rows).toEqual(answers[2]?.rows)
  })
})

/**
 * Not Dovecot: an HTTP server that answers every command of a batch after 20 ms, echoing the user it was
 * asked about, and counts requests and the most in flight at once.
 */
async function slowDoveadm() {
  const state = {requests: [] as unknown[][][], most: 0, inFlight: 0}
  const server = http.createServer((req, res) => {
    state.inFlight++
    state.most = Math.max(state.most, state.inFlight)
    let body = ''
    req.on('data', (c) => (body += c))
    req.on('end', () =>
      setTimeout(() => {
        state.inFlight--
        const batch = JSON.parse(body) as unknown[][]
        state.requests.push(batch)
        const answer = batch.map((entry) => {
          const params = entry[1] as {userMask?: string[]}
          return ['doveadmResponse', {user: params.userMask?.[0]}, entry[2]]
        })
        res.end(JSON.stringify(answer))
      }, 20),
    )
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  return {
    port: (server.address() as AddressInfo).port,
    get requests() {
      return state.requests
    },
    get most() {
      return state.most
    },
    close: () => server.close(),
  }
}
