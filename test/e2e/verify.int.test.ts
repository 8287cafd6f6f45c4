/**
 * `mailring verify` end to end: the built CLI against three real Dovecot servers (2.3, then 2.4) configured by
 * mailring's rendered SQL files, R = 3, doveadm over its HTTP API. Copies are made to differ the way mail
 * does (a delivery to one copy, an expunge on another, a message taken by each copy before a sync, a flag
 * set on one copy), the report names the messages missing where and the flags that differ, and --repair
 * makes them agree.
 */
import {afterAll, beforeAll, describe, expect, it} from 'vitest'

import type {SyncResult} from '../../src/cli/sync-command.js'
import type {VerifyResult} from '../../src/commands/verify.js'
import type {JsonEnvelope} from '../support/cli.js'
import {RING_OF_THREE, startRingCluster, type RingCluster} from '../support/ring-cluster.js'

const SERVERS = RING_OF_THREE.servers

const message = (subject: string) => `From: s@example.net\r\nSubject: ${subject}\r\n\r\n${subject}\r\n`

describe.each(['2.3', '2.4'] as const)('verify on Dovecot %s', (version) => {
  let ring: RingCluster

  beforeAll(async () => {
    ring = await startRingCluster({...RING_OF_THREE, version})
    for (const [user] of RING_OF_THREE.users)
      await ring.host('mx-a').deliver(user, message(`welcome ${user}`))
    const synced = await ring.cli(['sync-domain', 'example.com', 'example.org'])
    expect(synced.exitCode, synced.stderr + synced.stdout).toBe(0)
  })

  afterAll(async () => {
    await ring?.stop()
  })

  describe('verify', () => {
    it('says all copies agree after a sync', async () => {
      const r = await ring.cli<JsonEnvelope<VerifyResult>>(['verify', '--all', '--json'])
      expect(r.exitCode, r.stderr + r.stdout).toBe(0)
      expect(r.json?.result?.summary).toMatchObject({users: 3, agree: 3, differ: 0, unchecked: 0})
    })

    it('names the messages missing where, and exits 1', async () => {
      await ring.host('mx-a').deliver('alice@example.com', message('only on a'))
      const expunged = await ring
        .host('mx-c')
        .doveadm(['expunge', '-u', 'alice@example.com', 'mailbox', 'INBOX', 'all'])
      expect(expunged.exitCode, expunged.stderr).toBe(0)
      const r = await ring.cli(['verify', '--domain', 'example.com'])
      expect(r.exitCode, r.stderr + r.stdout).toBe(1)
      expect(r.stdout).toContain('alice@example.com: INBOX: 1 message on mx-a missing on mx-b')
      expect(r.stdout).toContain('alice@example.com: INBOX: 2 messages on mx-a missing on mx-c')
      expect(r.stdout).toContain('alice@example.com: INBOX: 1 message on mx-b missing on mx-c')
      expect(r.stdout).not.toContain('bob@example.com')
      expect(r.stdout).toMatch(/^2 users: 1 agree, 1 differ, 0 could not be checked/m)
    })

    it('repairs with --repair (a sync of the users that differ) and then agrees', async () => {
      const r = await ring.cli<JsonEnvelope<VerifyResult>>([
        'verify',
        '--domain',
        'example.com',
        '--repair',
        '--json',
      ])
      expect(r.exitCode, r.stderr + r.stdout).toBe(0)
      expect(r.json?.result?.summary.differ).toBe(1)
      expect(r.json?.result?.repair?.after).toMatchObject({users: 1, agree: 1, differ: 0})
      // The expunge on mx-c wins over the copies that still had the message: dsync carries expunges too.
      for (const server of SERVERS)
        expect((await ring.mailbox(server, 'alice@example.com')).map((m) => m.subject)).toEqual(['only on a'])
      const again = await ring.cli(['verify', '--all'])
      expect(again.exitCode, again.stderr + again.stdout).toBe(0)
    })

    it('sees copies that each took another message before a sync, though their summaries agree; --repair merges them', async () => {
      // Each copy takes one message of its own: every INBOX holds 2 messages, UIDNEXT 3, the same GUID and
      // UIDVALIDITY, and a different message under UID 2.
      for (const server of SERVERS)
        await ring.host(server).deliver('bob@example.com', message(`only on ${server}`))
      const r = await ring.cli<JsonEnvelope<VerifyResult>>(['verify', '--user', 'bob@example.com', '--json'])
      expect(r.exitCode, r.stderr + r.stdout).toBe(1)
      const differences = r.json?.result?.users[0]?.differences ?? []
      expect(differences).toContain('INBOX: 1 message on mx-a missing on mx-b')
      expect(differences).toContain('INBOX: 1 message on mx-c missing on mx-b')

      const repaired = await ring.cli<JsonEnvelope<VerifyResult>>([
        'verify',
        '--user',
        'bob@example.com',
        '--repair',
        '--json',
      ])
      expect(repaired.exitCode, repaired.stderr + repaired.stdout).toBe(0)
      expect(repaired.json?.result?.repair?.after).toMatchObject({users: 1, agree: 1, differ: 0})
      const subjects = [`welcome bob@example.com`, ...SERVERS.map((server) => `only on ${server}`)].sort()
      for (const server of SERVERS)
        expect((await ring.mailbox(server, 'bob@example.com')).map((m) => m.subject).sort(), server).toEqual(
          subjects,
        )
    })

    it('sees a flag set on one copy only, and --repair carries it to the others', async () => {
      const flagged = await ring
        .host('mx-a')
        .doveadm(['flags', 'add', '-u', 'carol@example.org', '\\Draft', 'mailbox', 'INBOX', 'all'])
      expect(flagged.exitCode, flagged.stderr).toBe(0)
      const r = await ring.cli(['verify', '--user', 'carol@example.org'])
      expect(r.exitCode, r.stderr + r.stdout).toBe(1)
      expect(r.stdout).toContain('carol@example.org: INBOX: flags differ on 1 message')
      expect(r.stdout).toMatch(/\\Draft( \\Seen)? on mx-a/)

      const repaired = await ring.cli(['verify', '--user', 'carol@example.org', '--repair'])
      expect(repaired.exitCode, repaired.stderr + repaired.stdout).toBe(0)
      for (const server of SERVERS)
        expect((await ring.mailbox(server, 'carol@example.org'))[0]?.flags, server).toContain('\\Draft')
    })

    it('sync user (not --full) merges copies that each took a message and a flag set on one copy, and says so only when they agree', async () => {
      // Split A: two copies each take a message before a sync (same count, UIDNEXT and HIGHESTMODSEQ, another
      // message under the new UID); split B's kind of change: a flag on a third copy.
      await ring.host('mx-a').deliver('alice@example.com', message('split on a'))
      await ring.host('mx-b').deliver('alice@example.com', message('split on b'))
      const flagged = await ring
        .host('mx-c')
        .doveadm(['flags', 'add', '-u', 'alice@example.com', '\\Flagged', 'mailbox', 'INBOX', 'all'])
      expect(flagged.exitCode, flagged.stderr).toBe(0)
      const synced = await ring.cli<JsonEnvelope<SyncResult>>(['sync', 'user', 'alice@example.com', '--json'])
      expect(synced.exitCode, synced.stderr + synced.stdout).toBe(0)
      expect(synced.json?.result?.users[0]).toMatchObject({status: 'synced'})
      // dsync's states go to the store, not into the report.
      expect(synced.json?.result?.users[0]).not.toHaveProperty('states')
      const r = await ring.cli(['verify', '--user', 'alice@example.com'])
      expect(r.exitCode, r.stderr + r.stdout).toBe(0)
      const subjects = ['only on a', 'split on a', 'split on b']
      for (const server of SERVERS) {
        const box = await ring.mailbox(server, 'alice@example.com')
        expect(box.map((m) => m.subject).sort(), server).toEqual(subjects)
        // mx-c held only "only on a" when the flag was set there.
        expect(
          box.filter((m) => m.flags.includes('\\Flagged')).map((m) => m.subject),
          server,
        ).toEqual(['only on a'])
      }
    })

    it('picks a sample spread over the servers, and users by server', async () => {
      const r = await ring.cli<JsonEnvelope<VerifyResult>>(['verify', '--all', '--sample', '2', '--json'])
      expect(r.exitCode, r.stderr + r.stdout).toBe(0)
      expect(r.json?.result?.summary.users).toBe(2)
      const s = await ring.cli<JsonEnvelope<VerifyResult>>(['verify', '--server', 'mx-b', '--json'])
      expect(s.json?.result?.summary.users).toBe(3)
    })

    it('refuses a call with nothing to verify, and names an unknown server', async () => {
      const none = await ring.cli(['verify'])
      expect(none.exitCode).toBe(1)
      expect(none.stderr.trim()).toBe(
        'Error: Say which users to verify: --user U, --domain D, --server S or --all.',
      )
      const unknown = await ring.cli(['verify', '--server', 'mx-zz'])
      expect(unknown.exitCode).toBe(1)
      expect(unknown.stderr).toContain('Unknown server mx-zz')
    })

    it('says "could not check" (exit 2), never "agree", when a server is down', async () => {
      await ring.host('mx-c').stop()
      const r = await ring.cli<JsonEnvelope<VerifyResult>>(['verify', '--user', 'bob@example.com', '--json'])
      expect(r.exitCode, r.stderr + r.stdout).toBe(2)
      expect(r.json?.status).toBe(2)
      expect(r.json?.result?.summary).toMatchObject({users: 1, agree: 0, unchecked: 1})
      expect(r.json?.result?.users[0]?.unchecked.map((u) => u.server)).toEqual(['mx-c'])
    })
  })
})
