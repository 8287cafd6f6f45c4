/**
 * `mailring sync domain|user` end to end: the built CLI against three real Dovecot 2.3 servers configured
 * by mailring's rendered SQL files, R = 3, doveadm reached through its HTTP API. Changes are made on
 * different copies the way mail arrives and clients work (LMTP delivery, a flag set, a message expunged),
 * and every copy is read back over IMAP afterwards.
 */
import * as fs from 'node:fs'
import * as http from 'node:http'
import type {AddressInfo} from 'node:net'
import * as path from 'node:path'

import {afterAll, beforeAll, describe, expect, it} from 'vitest'

import type {SyncResult} from '../../src/cli/sync-command.js'
import {SqliteStore} from '../../src/store/sqlite.js'
import {userBatch} from '../support/user-batch.js'
import type {JsonEnvelope} from '../support/cli.js'
import {RING_OF_THREE, startRingCluster, type RingCluster} from '../support/ring-cluster.js'

const SERVERS = RING_OF_THREE.servers

let ring: RingCluster

function message(subject: string): string {
  return `From: sender@example.net\r\nTo: someone@example.com\r\nSubject: ${subject}\r\n\r\n${subject} body\r\n`
}

beforeAll(async () => {
  ring = await startRingCluster(RING_OF_THREE)
})

afterAll(async () => {
  await ring?.stop()
})

describe('sync domain', () => {
  it('brings a mail delivered to one copy to the other two', async () => {
    await ring.host('mx-a').deliver('alice@example.com', message('first'))
    await ring.host('mx-a').deliver('alice@example.com', message('second'))
    const r = await ring.cli<JsonEnvelope<SyncResult>>(['sync', 'domain', 'example.com', '--json'])
    expect(r.exitCode, r.stderr + r.stdout).toBe(0)
    expect(r.json?.result?.summary).toMatchObject({users: 2, synced: 1, inSync: 1, failed: 0, partial: 0})
    for (const server of SERVERS)
      expect(await ring.mailbox(server, 'alice@example.com')).toEqual([
        {subject: 'first', flags: []},
        {subject: 'second', flags: []},
      ])
  })

  it('makes three copies changed in three ways equal, N-way, and touches no other domain', async () => {
    await ring.host('mx-a').deliver('alice@example.com', message('third'))
    const flagged = await ring
      .host('mx-b')
      .doveadm([
        'flags',
        'add',
        '-u',
        'alice@example.com',
        '\\Flagged',
        'mailbox',
        'INBOX',
        'header',
        'Subject',
        'first',
      ])
    expect(flagged.exitCode, flagged.stderr).toBe(0)
    const expunged = await ring
      .host('mx-c')
      .doveadm(['expunge', '-u', 'alice@example.com', 'mailbox', 'INBOX', 'header', 'Subject', 'second'])
    expect(expunged.exitCode, expunged.stderr).toBe(0)
    // carol (example.org) gets a mail on one copy only: a sync of example.com must leave it there alone.
    await ring.host('mx-c').deliver('carol@example.org', message('carol-only'))

    const r = await ring.cli(['sync-domain', 'example.com', '--json-lines'])
    expect(r.exitCode, r.stderr + r.stdout).toBe(0)
    const lines = r.stdout
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as Record<string, unknown>)
    expect(lines.filter((l) => l.type === 'user').map((l) => [l.user, l.status])).toEqual(
      expect.arrayContaining([
        ['alice@example.com', 'synced'],
        ['bob@example.com', 'in-sync'],
      ]),
    )
    expect(lines.at(-1)).toMatchObject({type: 'summary', users: 2, failed: 0})

    for (const server of SERVERS)
      expect(await ring.mailbox(server, 'alice@example.com'), server).toEqual([
        {subject: 'first', flags: ['\\Flagged']},
        {subject: 'third', flags: []},
      ])
    expect(await ring.mailbox('mx-c', 'carol@example.org')).toEqual([{subject: 'carol-only', flags: []}])
    expect(await ring.mailbox('mx-a', 'carol@example.org')).toEqual([])
    expect(await ring.mailbox('mx-b', 'carol@example.org')).toEqual([])
  })

  it('syncs one user by name, though logins created an empty INBOX of their own on the other copies', async () => {
    const r = await ring.cli<JsonEnvelope<SyncResult>>(['sync-user', 'carol@example.org', '--json'])
    expect(r.exitCode, r.stderr + r.stdout).toBe(0)
    expect(r.json?.result?.users.map((u) => [u.user, u.status, u.hub])).toEqual([
      ['carol@example.org', 'synced', 'mx-c'],
    ])
    for (const server of SERVERS)
      expect(await ring.mailbox(server, 'carol@example.org')).toEqual([{subject: 'carol-only', flags: []}])
  })

  it('reports unknown users and domains one line each, and still syncs the others', async () => {
    const r = await ring.cli(['sync-user', 'nobody@example.com', 'bob@example.com', 'not an address'])
    expect(r.exitCode).toBe(1)
    expect(r.stderr).toContain('Unknown user nobody@example.com')
    expect(r.stderr).toContain('Invalid user address')
    expect(r.stdout).toMatch(/^1 users: 0 synced, 1 already in sync, 0 failed/m)
    const d = await ring.cli(['sync-domain', 'example.net'])
    expect(d.exitCode).toBe(1)
    expect(d.stderr).toContain('No users in domain example.net')
  })

  it('says which copy has no address and which user has no copies, one line each', async () => {
    // Through the store API, as an operator's half-finished change would leave it: mx-d added without an
    // address and holding a copy, and a user not placed yet.
    const store = await SqliteStore.open(ring.dbPath)
    try {
      const topology = await store.readTopology()
      await store.writeTopology({
        ...topology,
        servers: [...topology.servers, {name: 'mx-d', address: '', weight: 1, state: 'active'}],
      })
      await store.insertUsers(
        [
          userBatch([
            ['frank@example.net', ['mx-a', 'mx-d']],
            ['gina@example.net', []],
          ]),
        ],
        {skipExisting: false},
      )
    } finally {
      await store.close()
    }
    const frank = await ring.cli<JsonEnvelope<SyncResult>>(['sync-user', 'frank@example.net', '--json'])
    expect(frank.exitCode, frank.stderr + frank.stdout).toBe(2)
    expect(frank.json?.result?.users[0]).toMatchObject({
      status: 'partial',
      skipped: [
        {server: 'mx-d', reason: 'mx-d has no address: set one with `mailring node set mx-d --address HOST`'},
      ],
    })
    const gina = await ring.cli(['sync-user', 'gina@example.net'])
    expect(gina.exitCode).toBe(1)
    expect(gina.stderr).toContain('gina@example.net has no copies yet: run `mailring rebalance` to place it.')
  })

  it('refuses a wrong doveadm password in one line that does not show it, before syncing anything', async () => {
    const wrong = 'not-the-password-42'
    const r = await ring.cli(['sync-domain', 'example.com'], {MAILRING_DOVEADM_PASSWORD: wrong})
    expect(r.exitCode).toBe(1)
    expect(r.stderr.trim().split('\n')).toHaveLength(1)
    expect(r.stderr).toMatch(
      /^Error: doveadm on mx-\w \(127\.0\.0\.\d+:\d+\): the doveadm password was refused/,
    )
    expect(r.stderr + r.stdout).not.toContain(wrong)
    expect(r.stderr + r.stdout).not.toContain(ring.doveadmPassword)
  })

  it('reports a server whose doveadm port answers garbage in one line, and fails only its users', async () => {
    // Not Dovecot: a web server where mx-b's doveadm HTTP API should be, as a wrong port would give.
    const web = http.createServer((req, res) => {
      req.resume()
      res.writeHead(200, {'Content-Type': 'text/html'}).end('<html>It works!</html>')
    })
    const ip = ring.host('mx-b').ip
    await new Promise<void>((resolve) => web.listen(0, ip, resolve))
    try {
      const port = (web.address() as AddressInfo).port
      const config = path.join(ring.dir, 'garbage.yaml')
      fs.writeFileSync(config, fs.readFileSync(ring.configPath, 'utf8') + `  http_ports: {mx-b: ${port}}\n`)
      const r = await ring.cli<JsonEnvelope<SyncResult>>(['sync-user', 'alice@example.com', '--json'], {
        MAILRING_CONFIG: config,
      })
      expect(r.exitCode, r.stderr + r.stdout).toBe(1)
      const result = r.json!.result!
      expect(result.summary.unusable).toEqual([
        {
          server: 'mx-b',
          reason: expect.stringMatching(
            /^doveadm on mx-b \(127\.0\.0\.\d+:\d+\): the answer is not doveadm's \(not JSON\)/,
          ),
        },
      ])
      expect(result.users.map((u) => [u.user, u.status])).toEqual([['alice@example.com', 'failed']])
    } finally {
      web.close()
    }
  })

  it('skips a server that is down and names the users not fully replicated (exit 2)', async () => {
    await ring.host('mx-a').deliver('bob@example.com', message('while-c-is-down'))
    await ring.host('mx-c').stop()
    const r = await ring.cli<JsonEnvelope<SyncResult>>(['sync-domain', 'example.com', '--json'])
    expect(r.exitCode, r.stderr + r.stdout).toBe(2)
    expect(r.json?.status).toBe(2)
    const users = r.json!.result!.users
    expect(users.map((u) => u.status)).toEqual(['partial', 'partial'])
    expect(users.every((u) => u.skipped.some((s) => s.server === 'mx-c'))).toBe(true)
    expect(r.json!.result!.summary.unusable.map((u) => u.server)).toEqual(['mx-c'])
    // The copies that are up got the new mail all the same.
    for (const server of ['mx-a', 'mx-b'])
      expect((await ring.mailbox(server, 'bob@example.com')).map((m) => m.subject)).toEqual([
        'while-c-is-down',
      ])
  })
})
