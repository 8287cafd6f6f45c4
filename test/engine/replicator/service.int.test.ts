/**
 * The replicator's workers on three real Dovecot servers, R = 3, configured by mailring's rendered SQL
 * over a SQLite store (test/support/ring-cluster.ts), doveadm over its HTTP API: the same scenario on Dovecot
 * 2.3 and on 2.4 (the test bed's, test/support/dovecot24.ts; 2.4 has no replication of its own). Changes
 * are queued here as the notification endpoint would queue them; what is checked is what a mail client
 * sees on every copy: a delivery to the primary reaches the other two, a flag set on a secondary reaches
 * the others, a copy on a server that is down is skipped without failing, and a server that returns is
 * caught up and only then marked up. The store's queue ends empty. Last, `replicator run`'s wiring
 * (src/engine/replicator/run.ts: endpoint, probes, workers) replicates a delivery and a flag change from
 * the notifications every server posts (the notify snippet of its version), nothing queued by hand.
 */
import {afterAll, beforeAll, describe, expect, it} from 'vitest'

import {loadDovecotContext} from '../../../src/engine/context.js'
import {startReplicator, type RunningReplicator} from '../../../src/engine/replicator/run.js'
import {Replicator} from '../../../src/engine/replicator/service.js'
import {SqliteStore} from '../../../src/store/sqlite.js'
import {describeDovecot24, type DovecotVersion} from '../../support/dovecot24.js'
import {freePort} from '../../support/ports.js'
import {sleep} from '../../support/proc.js'
import {RING_OF_THREE, startRingCluster, type RingCluster} from '../../support/ring-cluster.js'

const message = (subject: string) => `From: s@example.net\r\nSubject: ${subject}\r\n\r\n${subject}\r\n`

function scenario(version: DovecotVersion): void {
  let ring: RingCluster
  let store: SqliteStore
  let replicator: Replicator | undefined
  let running: RunningReplicator | undefined
  const log: string[] = []
  const synced: {user: string; syncs: number}[] = []
  let startupSyncs: {user: string; syncs: number}[] = []

  async function until(what: string, check: () => Promise<boolean>, timeoutMs = 20_000): Promise<void> {
    const deadline = Date.now() + timeoutMs
    while (!(await check())) {
      if (Date.now() > deadline) throw new Error(`timed out waiting until ${what}; log:\n${log.join('\n')}`)
      await sleep(100)
    }
  }

  const subjects = async (server: string, user: string) =>
    (await ring.mailbox(server, user)).map((m) => m.subject)

  async function queueEmpty(): Promise<boolean> {
    const stats = await store.replicationStats(Date.now())
    return stats.byPriority.every((p) => p.waiting === 0) && stats.inFlight === 0
  }

  const tuning = {debounceMs: 100, maxDelayMs: 1_000, fullSyncIntervalMs: 0, pollMs: 100, backoffMs: 200}

  function newReplicator(): Replicator {
    return new Replicator({
      store,
      loadContext: () =>
        loadDovecotContext({
          store,
          location: {kind: 'sqlite', path: ring.dbPath, source: 'test'},
          config: ring.configPath,
          env: {},
        }),
      tuning,
      events: {
        log: (line) => log.push(line),
        synced: (task, result) => synced.push({user: task.user, syncs: result.syncs}),
        caughtUp: (server, users) => log.push(`caught up: ${server}, ${users} users`),
      },
    })
  }

  beforeAll(async () => {
    // Every server posts its changes to the replicator's endpoint (the notify snippet of its version), which
    // listens only in the last test: until then changes are queued by hand, as the endpoint would.
    ring = await startRingCluster({
      ...RING_OF_THREE,
      version,
      // Probes patient enough for a loaded test machine: what this file proves is replication, not how fast
      // a stop is seen (test/dovecot/failover.int.test.ts); with 500 ms, servers that only answered slowly
      // were marked down and their catch-ups kept the queue from draining (issue 20's part C).
      replicator: {port: await freePort('127.0.0.1'), settings: {probe_timeout: '3s', down_after: 3}},
    })
    store = await SqliteStore.open(ring.dbPath)
    replicator = newReplicator()
    await replicator.start()
    // The start-up catch-up queued every user; none has mail yet.
    await until('the start-up catch-up is done', queueEmpty)
    startupSyncs = [...synced]
    // Each user's INBOX made on its primary and replicated before any IMAP login (see ring.inboxCount).
    for (const [user, copies] of RING_OF_THREE.users) {
      await ring.host(copies[0]!).deliver(user, message('welcome'))
      await replicator.enqueue([{user, priority: 'mail', source: copies[0]!}])
    }
    for (const [user, copies] of RING_OF_THREE.users)
      for (const server of copies)
        await until(
          `${user}'s INBOX is on ${server}`,
          async () => (await ring.inboxCount(server, user)) === 1,
        )
  }, 120_000)

  afterAll(async () => {
    await running?.stop()
    await replicator?.stop()
    await store?.close()
    await ring?.stop()
  })

  it('runs no dsync for a user without a mailbox on any copy', async () => {
    expect(startupSyncs.filter((s) => s.user === 'bob@example.com')).toEqual([
      {user: 'bob@example.com', syncs: 0},
    ])
  })

  it("brings a delivery to the primary onto the other two copies, reading no copy's state first", async () => {
    // What the doveadm server logs for a status read, in each version's words (docs/dovecot-facts.md).
    const statusRead =
      version === '2.3'
        ? "Executing command 'mailbox status' as 'alice@example.com'"
        : "cmd mailbox status: Executing command as 'alice@example.com'"
    const statusReads = (server: string) =>
      ring
        .host(server)
        .readLog()
        .split('\n')
        .filter((l) => l.includes(statusRead)).length
    const before = ['mx-a', 'mx-b', 'mx-c'].map(statusReads)
    await ring.host('mx-a').deliver('alice@example.com', message('hello alice'))
    await replicator!.enqueue([{user: 'alice@example.com', priority: 'mail', source: 'mx-a'}])
    await until('the queue is empty', queueEmpty)
    // The copy the change happened on was synced with each other one: no state read anywhere.
    expect(['mx-a', 'mx-b', 'mx-c'].map(statusReads)).toEqual(before)
    for (const server of ['mx-b', 'mx-c'])
      expect(await subjects(server, 'alice@example.com')).toContain('hello alice')
    // A status read through the HTTP API is counted: none above means none.
    await ring
      .host('mx-b')
      .doveadmHttp([
        ['mailboxStatus', {user: 'alice@example.com', field: ['messages'], mailboxMask: ['*']}, 't'],
      ])
    await until('the status read is logged', async () => statusReads('mx-b') === before[1]! + 1)
  })

  it('brings a flag set on a secondary to the other copies', async () => {
    await ring.host('mx-a').deliver('bob@example.com', message('flag me'))
    await replicator!.enqueue([{user: 'bob@example.com', priority: 'mail', source: 'mx-a'}])
    await until('bob has the mail on mx-c', async () =>
      (await subjects('mx-c', 'bob@example.com')).includes('flag me'),
    )
    await ring.flagAll('mx-c', 'bob@example.com', '\\Flagged')
    await replicator!.enqueue([{user: 'bob@example.com', priority: 'change', source: 'mx-c'}])
    for (const server of ['mx-a', 'mx-b'])
      await until(`the flag is on ${server}`, async () =>
        (await ring.mailbox(server, 'bob@example.com')).some((m) => m.flags.includes('\\Flagged')),
      )
  })

  it('merges deliveries to two copies at once, each synced from the copy it reached, by dsync state per pair', async () => {
    // Split A: each copy takes a message before any sync. Without a state, dsync skips a mailbox whose summary
    // matches on both sides (same count, UIDNEXT, HIGHESTMODSEQ), so neither notification's sync merged them.
    const user = 'alice@example.com'
    await Promise.all([
      ring.host('mx-a').deliver(user, message('at once on a')),
      ring.host('mx-b').deliver(user, message('at once on b')),
    ])
    for (const source of ['mx-a', 'mx-b']) {
      await replicator!.enqueue([{user, priority: 'mail', source}])
      await until('the queue is empty', queueEmpty)
    }
    const expected = [...(await subjects('mx-a', user))].sort()
    expect(expected).toEqual(expect.arrayContaining(['at once on a', 'at once on b']))
    for (const server of ['mx-b', 'mx-c'])
      expect([...(await subjects(server, user))].sort(), server).toEqual(expected)
    // The states of the last sync only, from the copy its change reached: the first sync's no longer hold.
    const pairs = (await store.syncStates(user)).map((s) => `${s.from} -> ${s.to}`)
    expect(pairs).toEqual(['mx-b -> mx-a', 'mx-b -> mx-c'])
  })

  it('skips a copy whose server is down, and catches the server up when it returns', async () => {
    await ring.host('mx-c').halt()
    expect(await store.setServerHealth('mx-c', 'up', 'down', 'stopped by the test')).toBe(true)
    await replicator!.healthChanged('mx-c', 'down')
    await ring.host('mx-a').deliver('carol@example.org', message('while c was down'))
    await replicator!.enqueue([{user: 'carol@example.org', priority: 'mail', source: 'mx-a'}])
    await until('carol has it on mx-b', async () =>
      (await subjects('mx-b', 'carol@example.org')).includes('while c was down'),
    )
    // Down is not a failure: the entry is done, not retried against a dead server.
    await until('the queue is empty', queueEmpty)
    expect((await store.serverHealth()).find((h) => h.server === 'mx-c')?.syncFailures).toBe(0)
    // What mx-c missed is known: carol, not the other users it holds.
    expect(await store.missedUsers('mx-c')).toEqual(['carol@example.org'])

    await ring.host('mx-c').resume()
    expect(await store.setServerHealth('mx-c', 'down', 'returning', 'answers again')).toBe(true)
    await replicator!.healthChanged('mx-c', 'returning')
    await until('mx-c is up again', async () =>
      (await store.serverHealth()).some((h) => h.server === 'mx-c' && h.health === 'up'),
    )
    // Up only after the catch-up: the mail delivered while it was down is there already.
    expect(await subjects('mx-c', 'carol@example.org')).toContain('while c was down')
    expect(log.join('\n')).toContain('mx-c is caught up')
    // Only the user with a change it missed was caught up, and that is forgotten now.
    expect(log.join('\n')).toContain('mx-c returned: catching up its 1 users with changes it missed')
    expect(log).toContain('caught up: mx-c, 1 users')
    expect(log.filter((line) => line.startsWith('replicator: '))).toEqual([])
    expect(await store.missedUsers('mx-c')).toEqual([])
  })

  it('retries a copy that fails while its server is not known to be down', async () => {
    await ring.host('mx-b').halt()
    await ring.host('mx-a').deliver('alice@example.com', message('b is gone quietly'))
    await replicator!.enqueue([{user: 'alice@example.com', priority: 'mail', source: 'mx-a'}])
    await until('the failure is counted against mx-b', async () =>
      (await store.serverHealth()).some((h) => h.server === 'mx-b' && h.syncFailures > 0),
    )
    await ring.host('mx-b').resume()
    await until('alice has it on mx-b', async () =>
      (await subjects('mx-b', 'alice@example.com')).includes('b is gone quietly'),
    )
    await until('the queue is empty', queueEmpty)
    expect(await subjects('mx-c', 'alice@example.com')).toContain('b is gone quietly')
  })

  it('after a time without a replicator, checks every user: changes of that time are not lost', async () => {
    const stoppedAt = Date.now()
    await replicator!.stop()
    replicator = undefined
    // Nobody listens: no notification, nothing queued by hand.
    await ring.host('mx-b').deliver('carol@example.org', message('while nobody listened'))
    log.length = 0
    replicator = newReplicator()
    await replicator.start()
    for (const server of ['mx-a', 'mx-c'])
      await until(`carol's mail is on ${server}`, async () =>
        (await subjects(server, 'carol@example.org')).includes('while nobody listened'),
      )
    expect(log.join('\n')).toMatch(/no replicator was listening .*all 3 users are queued/)
    // Since when: the clean stop's own time.
    const since = /listening since (\S+):/.exec(log.join('\n'))?.[1]
    expect(Date.parse(since ?? '')).toBeGreaterThanOrEqual(stoppedAt)
  })

  it("with its endpoint and probes (replicator run), replicates changes from Dovecot's notifications alone", async () => {
    await replicator!.stop()
    replicator = undefined
    running = await startReplicator({
      store,
      location: {kind: 'sqlite', path: ring.dbPath, source: 'test'},
      config: ring.configPath,
      env: {},
      log: (line) => log.push(line),
      tuning,
    })
    await until('the start-up catch-up is done', queueEmpty)
    const notified = running.counts.notified
    // Nothing queued by hand from here on.
    await ring.host('mx-b').deliver('bob@example.com', message('told by dovecot'))
    for (const server of ['mx-c', 'mx-a'])
      await until(`bob's mail is on ${server}`, async () =>
        (await subjects(server, 'bob@example.com')).includes('told by dovecot'),
      )
    await ring.flagAll('mx-a', 'bob@example.com', '\\Answered')
    for (const server of ['mx-b', 'mx-c'])
      await until(`the flag is on ${server}`, async () =>
        (await ring.mailbox(server, 'bob@example.com')).every((m) => m.flags.includes('\\Answered')),
      )
    expect(running.counts.notified).toBeGreaterThanOrEqual(notified + 2)
  })
}

describe('the replicator service on Dovecot 2.3', () => scenario('2.3'))
describeDovecot24('the replicator service on Dovecot 2.4', () => scenario('2.4'))
