/**
 * `mailring rebalance` moving real mail, through the built CLI: four real Dovecot 2.3 servers configured by
 * mailring's rendered SQL over the SQLite store, users with mail delivered over LMTP and replicated with
 * `mailring sync domain`, an sshd on each server's address for retiring old copies. A server is added and
 * rebalanced onto; then two servers are drained at once (users with a copy on both move in two waves) and
 * removed. After each run every user's copies are where the ring puts them, each holds every message (read
 * over IMAP), Dovecot knows each user on exactly its servers, and the old copies are in the trash until
 * `rebalance cleanup` deletes them.
 */
import * as fs from 'node:fs'
import * as path from 'node:path'

import {afterAll, beforeAll, describe, expect, it} from 'vitest'

import type {RebalanceResult, RebalanceRunOutput} from '../../src/commands/rebalance.js'
import type {RebalanceCleanupResult} from '../../src/commands/rebalance/cleanup.js'
import type {RebalanceStatusResult} from '../../src/commands/rebalance/status.js'
import {waitForOutput, type JsonEnvelope} from '../support/cli.js'
import {ImapClient} from '../support/mailclients.js'
import {isFenced, PASSWORD, type RingCluster} from '../support/ring-cluster.js'
import {
  copiesInStore as copiesOf,
  type Mail,
  placed as ringPlaced,
  startRingWithSpare,
} from '../support/ring-mail.js'

const SERVERS = ['mx-a', 'mx-b', 'mx-c', 'mx-d']
const USERS = Array.from({length: 16}, (_, i) => `user${String(i + 1).padStart(2, '0')}@example.com`)

/** Where a ring of `servers` puts each user, R = 2: the users start where three servers put them. */
const placed = (servers: string[]) => ringPlaced(servers, 2, USERS)

let ring: RingCluster
let mail: Mail

/** Polls the journal until the user's move reaches `state` (the CLI runs it meanwhile). */
async function waitForMoveState(user: string, state: string): Promise<void> {
  const deadline = Date.now() + 60_000
  for (;;) {
    const store = await ring.openStore()
    try {
      if ((await store.openMoves()).some((m) => m.user === user && m.state === state)) return
    } finally {
      await store.close()
    }
    if (Date.now() > deadline) throw new Error(`the move of ${user} never reached ${state}`)
    await new Promise((resolve) => setTimeout(resolve, 100))
  }
}

const copiesInStore = () => copiesOf(ring)
/** Every message each user was sent, on every current copy (IMAP), and each user known on exactly those. */
const expectEveryMessageOnEveryCopy = () => mail.expectOnEveryCopy(USERS, [...ring.hosts.keys()])
const deliver = (subject: string) => mail.deliver(subject, USERS)

beforeAll(async () => {
  // mx-d runs, but is not part of the cluster yet: the store forgets it, and `node add` brings it in.
  ;({ring, mail} = await startRingWithSpare(USERS))
}, 120_000)

afterAll(async () => {
  await ring?.stop()
})

describe('rebalance onto an added server', () => {
  it('refuses to move mail without confirmation when there is no terminal, changing nothing', async () => {
    const added = await ring.cli(['node', 'add', 'mx-d', '--address', ring.host('mx-d').ip])
    expect(added.exitCode, added.stderr).toBe(0)
    const r = await ring.cli(['rebalance'])
    expect(r.exitCode).toBe(1)
    expect(r.stderr).toContain('pass --yes')
    expect(r.stderr.trim().split('\n')).toHaveLength(1)
    // A rate without a unit is refused before anything is journaled.
    const rate = await ring.cli(['rebalance', '--yes', '--bwlimit', '50'])
    expect(rate.exitCode).toBe(1)
    expect(rate.stderr.trim()).toBe(
      'Error: --bwlimit "50" is not a rate: use a number and a unit, e.g. 20MB/s, 500KB/s or 1GiB/s',
    )
    const status = await ring.cli<JsonEnvelope<RebalanceStatusResult>>(['rebalance', 'status', '--json'])
    expect(status.json?.result?.moves).toEqual([])
  })

  it('narrowed with --user, moves only that user; an IMAP session left open on the old copy is closed before it is retired, and what it did is on the new copy', async () => {
    const plan = await ring.cli<JsonEnvelope<RebalanceResult>>(['rebalance', '--dry-run', '--json'])
    const [first] = plan.json!.result!.moves
    const user = first!.user
    const before = await copiesInStore()
    // A mail client logged in on the copy that leaves, straight to its backend, holding INBOX open.
    const session = await ImapClient.connect(ring.host(first!.from!).ip, ring.host(first!.from!).imapPort)
    await session.login(user, PASSWORD)
    await session.select('INBOX')
    const run = ring.cli<JsonEnvelope<RebalanceRunOutput>>([
      'rebalance',
      '--yes',
      '--json',
      '--user',
      user,
      '--retire-after',
      '4s',
    ])
    // Once the move has switched and caught up (the retire waits 4 s), the session flags a message and
    // appends one on the old copy: only the retire's last catch-up can bring them to the new copy.
    await waitForMoveState(user, 'caught-up')
    await session.command('STORE 1 +FLAGS (\\Flagged)')
    const appended = `Subject: appended ${user}\r\n\r\nwritten on the old copy after the switch\r\n`
    await session.command(`APPEND "INBOX" {${Buffer.byteLength(appended)}+}\r\n${appended}`)
    mail.record(user, `appended ${user}`)
    // Back to the authenticated state: nothing selected that Dovecot could notice disappearing, so only a
    // kick ends this session (left open, it could APPEND and recreate the home that went to the trash).
    await session.command('UNSELECT')
    const r = await run
    expect(r.exitCode, r.stderr).toBe(0)
    expect(r.json!.result!.moves.map((m) => [m.user, m.from, m.to, m.state])).toEqual([
      [user, first!.from, first!.to, 'retired'],
    ])
    // The retire kicked the session: the server closed its connection.
    await expect(session.command('NOOP')).rejects.toThrow(/connection closed|ECONNRESET|EPIPE/)
    expect(isFenced(path.join(ring.host(first!.from!).dir, 'home', 'example.com', user.split('@')[0]!))).toBe(
      true,
    )
    const onNew = await ring.mailbox(first!.to!, user)
    expect(onNew).toEqual([
      {subject: `appended ${user}`, flags: []},
      {subject: `first ${user}`, flags: ['\\Flagged']},
    ])
    const after = await copiesInStore()
    for (const other of USERS.filter((u) => u !== user)) expect(after.get(other)).toEqual(before.get(other))
    expect(after.get(user)).toContain(first!.to)
  })

  it('with --bwlimit, Ctrl-C does not wait for the budget: the moves not started stay journaled, cancel rolls them back', async () => {
    const plan = await ring.cli<JsonEnvelope<RebalanceResult>>(['rebalance', '--dry-run', '--json'])
    const planned = plan.json!.result!.moves.length
    expect(planned).toBeGreaterThan(2)
    const before = await copiesInStore()
    // 1 byte/s: the first move starts at once, each other one would wait for the bytes before it.
    const run = ring.startCli([
      'rebalance',
      '--yes',
      '--json-lines',
      '--bwlimit',
      '1B/s',
      '--retire-after',
      '0s',
      '--parallel',
      '2',
    ])
    await waitForOutput(run.child, '"type":"move"')
    run.child.kill('SIGINT')
    const r = await run.result
    expect(r.exitCode, r.stderr).toBe(2)
    const summary = JSON.parse(r.stdout.trim().split('\n').at(-1)!) as RebalanceRunOutput['summary']
    expect(summary).toMatchObject({moved: 1, failed: 0, interrupted: true, left: planned - 1})
    const status = await ring.cli<JsonEnvelope<RebalanceStatusResult>>(['rebalance', 'status', '--json'])
    const open = status.json!.result!.moves
    expect(open).toHaveLength(planned - 1)
    expect(open.every((m) => m.state === 'planned')).toBe(true)
    const cancelled = await ring.cli(['rebalance', 'cancel'])
    expect(cancelled.exitCode, cancelled.stderr).toBe(0)
    const after = await ring.cli<JsonEnvelope<RebalanceStatusResult>>(['rebalance', 'status', '--json'])
    expect(after.json!.result!.moves).toEqual([])
    // Only the one move changed a placement.
    const now = await copiesInStore()
    const changed = USERS.filter((u) => before.get(u)!.join() !== now.get(u)!.join())
    expect(changed).toHaveLength(1)
  })

  it('moves every planned copy, keeps every message, and retires the old copies into the trash', async () => {
    const plan = await ring.cli<JsonEnvelope<RebalanceResult>>(['rebalance', '--dry-run', '--json'])
    const moves = plan.json!.result!.moves
    expect(moves.length).toBeGreaterThan(0)
    expect(moves.every((m) => m.to === 'mx-d')).toBe(true)

    const r = await ring.cli<JsonEnvelope<RebalanceRunOutput>>([
      'rebalance',
      '--yes',
      '--json',
      '--parallel',
      '3',
    ])
    expect(r.exitCode, r.stderr + r.stdout).toBe(0)
    const result = r.json!.result!
    expect(result.summary).toMatchObject({moved: moves.length, failed: 0, left: 0, interrupted: false})
    expect(r.json!.status).toBe(0)
    // The ring's servers for each user (a move keeps the position of the copy it replaces).
    const sets = (m: Map<string, string[]>) => new Map([...m].map(([u, c]) => [u, [...c].sort()]))
    expect(sets(await copiesInStore())).toEqual(sets(placed(SERVERS)))
    await expectEveryMessageOnEveryCopy()
    // Each old copy is whole in the trash of the server it left, and the move counted its bytes: the
    // virtual sizes Dovecot wrote into the Maildir file names (",W=<size>").
    for (const move of result.moves) {
      expect(move.trash, move.user).toContain(path.join(ring.host(move.from!).dir, 'home', '.mailring-trash'))
      const maildir = path.join(move.trash!, 'Maildir')
      const files = ['new', 'cur'].flatMap((f) => fs.readdirSync(path.join(maildir, f)))
      expect(files, move.user).toHaveLength(1)
      const vsize = files.reduce((n, f) => n + Number(/,W=(\d+)/.exec(f)?.[1] ?? NaN), 0)
      expect(move.bytes, move.user).toBe(vsize)
    }
    expect(result.summary.bytes).toBe(result.moves.reduce((n, m) => n + m.bytes, 0))
    const again = await ring.cli(['rebalance', '--dry-run', '--detailed-exitcode'])
    expect(again.exitCode, again.stdout).toBe(0)
    const nothing = await ring.cli(['rebalance', '--yes'])
    expect(nothing.stdout).toContain('Nothing to move')
  })

  it('cleanup deletes only trash old enough, and only with confirmation', async () => {
    const young = await ring.cli<JsonEnvelope<RebalanceCleanupResult>>([
      'rebalance',
      'cleanup',
      '--yes',
      '--json',
    ])
    expect(young.json?.result?.deleted).toBe(0)
    const refused = await ring.cli(['rebalance', 'cleanup', '--older-than', '0s'])
    expect(refused.exitCode).toBe(1)
    expect(refused.stderr).toContain('pass --yes')
    const dry = await ring.cli(['rebalance', 'cleanup', '--older-than', '0s', '--dry-run'])
    expect(dry.exitCode).toBe(0)
    const listed = dry.stdout.split('\n').filter((l) => l.includes('.mailring-trash'))
    expect(listed.length).toBeGreaterThan(0)
    for (const line of listed) expect(fs.existsSync(line.slice(line.indexOf(': ') + 2))).toBe(true)
    const waiting = await ring.cli<JsonEnvelope<RebalanceCleanupResult>>([
      'rebalance',
      'cleanup',
      '--older-than',
      '0s',
      '--dry-run',
      '--json',
    ])
    // Each retired home is fenced until its copy is deleted.
    const fences = waiting.json!.result!.copies.map((copy) =>
      path.join(
        copy.trash.slice(0, copy.trash.indexOf('/.mailring-trash/')),
        'example.com',
        copy.user.split('@')[0]!,
      ),
    )
    for (const home of fences) expect(isFenced(home), home).toBe(true)
    const done = await ring.cli<JsonEnvelope<RebalanceCleanupResult>>([
      'rebalance',
      'cleanup',
      '--older-than',
      '0s',
      '--yes',
      '--json',
    ])
    expect(done.exitCode, done.stderr).toBe(0)
    expect(done.json?.result?.deleted).toBe(listed.length)
    for (const copy of done.json!.result!.copies) expect(fs.existsSync(copy.trash)).toBe(false)
    // The fences where the homes were went with them (every user here left its server for good).
    expect(fences.length).toBe(listed.length)
    for (const home of fences) expect(isFenced(home), home).toBe(false)
    const bad = await ring.cli(['rebalance', 'cleanup', '--older-than', 'soon'])
    expect(bad.exitCode).toBe(1)
    expect(bad.stderr).toContain('--older-than "soon" is not a duration')
  })
})

describe('draining two servers at once', () => {
  it('moves users with a copy on both in two waves, and the emptied servers can be removed', async () => {
    // Mail delivered since, replicated as the replicator would: a rebalance moves mailboxes, it does not
    // replicate the users it does not move.
    await deliver('second')
    const synced = await ring.cli(['sync', 'domain', 'example.com'])
    expect(synced.exitCode, synced.stderr).toBe(0)
    for (const server of ['mx-a', 'mx-b']) {
      const r = await ring.cli(['node', 'remove', server])
      expect(r.exitCode, r.stderr).toBe(0)
      expect(r.stderr).toContain('draining')
    }
    const before = await copiesInStore()
    const both = USERS.filter((u) => before.get(u)!.every((s) => s === 'mx-a' || s === 'mx-b'))
    const rate = 1500
    const r = await ring.cli([
      'rebalance',
      '--yes',
      '--json-lines',
      '--per-server',
      '1',
      '--retire-after',
      '0s',
      '--bwlimit',
      `${rate}B/s`,
    ])
    expect(r.exitCode, r.stderr + r.stdout).toBe(0)
    const events = r.stdout
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as {type: string; wave?: number; user?: string; bytes?: number})
    const summary = events.at(-1) as unknown as {
      type: string
      moved: number
      failed: number
      emptied: string[]
      bytes: number
      seconds: number
    }
    expect(summary).toMatchObject({type: 'summary', failed: 0})
    // --bwlimit: the moves started no faster than the rate allows (one second of burst, and the last move's
    // own bytes, which it copies after it starts). A lower bound on the run's time: slowness cannot fail it.
    const sizes = events.filter((e) => e.type === 'move').map((e) => e.bytes!)
    expect(summary.bytes).toBe(sizes.reduce((n, b) => n + b, 0))
    expect(summary.bytes).toBeGreaterThan(3 * rate)
    expect(summary.seconds).toBeGreaterThanOrEqual((summary.bytes - Math.max(...sizes)) / rate - 1)
    expect(summary.emptied.sort()).toEqual(['mx-a', 'mx-b'])
    if (both.length > 0) expect(events.filter((e) => e.type === 'journal').length).toBeGreaterThanOrEqual(2)
    const after = await copiesInStore()
    for (const user of USERS) expect(after.get(user)!.sort()).toEqual(['mx-c', 'mx-d'])
    await expectEveryMessageOnEveryCopy()
    for (const server of ['mx-a', 'mx-b']) {
      const removed = await ring.cli(['node', 'remove', server])
      expect(removed.exitCode, removed.stderr).toBe(0)
      expect(removed.stdout).toContain(`Removed ${server}`)
    }
  })
})
