/**
 * One rebalance move, make-before-break, on four real Dovecot 2.3 servers configured by mailring's
 * rendered SQL over a SQLite store (test/support/ring-cluster.ts), doveadm over its HTTP API: the journal
 * drives each step, a move resumes from the state it was left in, a move whose target is down changes
 * nothing, mail delivered to the leaving copy during the switch is caught up, and the old copy ends in a
 * dated trash folder on the server it left (moved there over SSH: a real sshd on each server's address).
 * A move onto a full disk (a tmpfs) fails with Dovecot's words and changes nothing, and completes later.
 */
import * as fs from 'node:fs'
import * as path from 'node:path'

import {afterAll, beforeAll, describe, expect, it} from 'vitest'

import {loadDovecotContext} from '../../../src/engine/context.js'
import {DoveadmFleet} from '../../../src/engine/sync/fleet.js'
import {executeMove} from '../../../src/engine/rebalance/move.js'
import {syncUsers} from '../../../src/engine/sync/sync.js'
import {SqliteStore} from '../../../src/store/sqlite.js'
import type {MoveRecord} from '../../../src/store/store.js'
import {setState} from '../../support/store-cluster.js'
import {run} from '../../support/proc.js'
import {isFenced, ringFleet, startRingCluster, type RingCluster} from '../../support/ring-cluster.js'

let ring: RingCluster
let store: SqliteStore

const message = (subject: string) => `From: s@example.net\r\nSubject: ${subject}\r\n\r\n${subject}\r\n`

const fleet = (): Promise<DoveadmFleet> => ringFleet(ring, store)

async function journal(user: string, position: number, from: string, to: string): Promise<MoveRecord> {
  await store.journalMoves('test-plan', [{user, position, from, to}])
  return (await store.openMoves()).find((m) => m.user === user)!
}

const subjects = async (server: string, user: string) =>
  (await ring.mailbox(server, user)).map((m) => m.subject)

beforeAll(async () => {
  ring = await startRingCluster({
    servers: ['mx-a', 'mx-b', 'mx-c', 'mx-d'],
    users: [
      ['alice@example.com', ['mx-a', 'mx-b', 'mx-c']],
      ['bob@example.com', ['mx-b', 'mx-c', 'mx-a']],
      ['carol@example.com', ['mx-c', 'mx-a', 'mx-b']],
      ['dave@example.com', ['mx-a', 'mx-c', 'mx-b']],
    ],
    copies: 3,
    ssh: true,
  })
  store = await SqliteStore.open(ring.dbPath)
  for (const user of ['alice', 'bob', 'carol', 'dave'])
    await ring.host('mx-a').deliver(`${user}@example.com`, message(`first for ${user}`))
  const f = await fleet()
  const users = (await store.listUsers({limit: 10})).map((u) => ({user: u.user, copies: u.copies}))
  const {summary} = await syncUsers(f, users)
  await f.close()
  expect(summary).toMatchObject({synced: 4, failed: 0, partial: 0})
})

afterAll(async () => {
  await store?.close()
  await ring?.stop()
})

describe('a move', () => {
  it('copies, verifies, switches, catches up and retires; the new copy holds every message', async () => {
    const home = path.join(ring.host('mx-c').dir, 'home', 'example.com', 'alice')
    expect(fs.existsSync(home)).toBe(true)
    const move = await journal('alice@example.com', 2, 'mx-c', 'mx-d')
    const f = await fleet()
    const outcome = await executeMove(f, store, move)
    await f.close()
    expect(outcome.error).toBeUndefined()
    expect(outcome).toMatchObject({state: 'retired', user: 'alice@example.com'})
    expect((await store.getUser('alice@example.com'))?.copies).toEqual(['mx-a', 'mx-b', 'mx-d'])
    expect(await subjects('mx-d', 'alice@example.com')).toEqual(['first for alice'])
    // The old copy is out of the way on mx-c, whole, in today's trash folder, and the journal says where.
    const day = new Date().toISOString().slice(0, 10)
    const trash = path.join(
      ring.host('mx-c').dir,
      'home',
      '.mailring-trash',
      day,
      `alice@example.com.${move.id}`,
    )
    expect(outcome.trash).toBe(trash)
    expect(isFenced(home), home).toBe(true)
    const files = (folder: string) => fs.readdirSync(path.join(trash, 'Maildir', folder)).length
    expect(files('new') + files('cur')).toBe(1)
    expect(await store.openMoves()).not.toContainEqual(expect.objectContaining({id: move.id}))
    expect(await store.retiredMoves('9999')).toContainEqual(expect.objectContaining({id: move.id, trash}))
    // mx-c does not know alice any more.
    expect((await ring.host('mx-c').doveadm(['user', 'alice@example.com'])).exitCode).toBe(67)
  })

  it('resumes from the state the journal says, e.g. after a crash while copying', async () => {
    const move = await journal('bob@example.com', 1, 'mx-c', 'mx-d')
    expect(await store.setMoveState(move.id, 'planned', 'copying')).toBe(true)
    const f = await fleet()
    const outcome = await executeMove(f, store, {...move, state: 'copying'})
    await f.close()
    expect(outcome.state).toBe('retired')
    expect((await store.getUser('bob@example.com'))?.copies).toEqual(['mx-b', 'mx-d', 'mx-a'])
    expect(await subjects('mx-d', 'bob@example.com')).toEqual(['first for bob'])
  })

  it('catches up on mail delivered to the leaving copy during the switch', async () => {
    // A move left right after its switch (as a crash would leave it), with a late delivery to the copy
    // that leaves.
    const late = await journal('dave@example.com', 1, 'mx-c', 'mx-d')
    await store.setMoveState(late.id, 'planned', 'copying')
    const g = await fleet()
    await syncUsers(g, [{user: 'dave@example.com', copies: ['mx-a', 'mx-c', 'mx-b']}])
    await store.setMoveState(late.id, 'copying', 'verified')
    await store.switchMove(late.id)
    await ring.host('mx-c').deliver('dave@example.com', message('late for dave'))
    // mx-d may not hold dave's mail yet; the catch-up brings everything mx-c has.
    const outcome = await executeMove(g, store, {...late, state: 'switched'})
    await g.close()
    expect(outcome.state).toBe('retired')
    expect(await subjects('mx-d', 'dave@example.com')).toEqual(['first for dave', 'late for dave'])
  })

  it('drops a copy only once the copies that stay hold its mail, then retires it', async () => {
    // Mail that only the copy to drop has (delivered there, not replicated yet).
    await ring.host('mx-b').deliver('carol@example.com', message('only on mx-b for carol'))
    await store.journalMoves('test-plan', [{user: 'carol@example.com', position: 2, from: 'mx-b', to: null}])
    const drop = (await store.openMoves()).find((m) => m.user === 'carol@example.com')!
    const f = await fleet()
    const outcome = await executeMove(f, store, drop)
    await f.close()
    expect(outcome.error).toBeUndefined()
    expect(outcome).toMatchObject({state: 'retired', from: 'mx-b', to: null})
    expect((await store.getUser('carol@example.com'))?.copies).toEqual(['mx-c', 'mx-a'])
    for (const server of ['mx-c', 'mx-a'])
      expect(await subjects(server, 'carol@example.com'), server).toEqual([
        'first for carol',
        'only on mx-b for carol',
      ])
    expect(outcome.trash).toContain(path.join(ring.host('mx-b').dir, 'home', '.mailring-trash'))
    expect((await ring.host('mx-b').doveadm(['user', 'carol@example.com'])).exitCode).toBe(67)
  })

  it('adds a copy with every message, where the move says, and retires nothing', async () => {
    await store.journalMoves('test-plan', [{user: 'carol@example.com', position: 1, from: null, to: 'mx-d'}])
    const add = (await store.openMoves()).find((m) => m.user === 'carol@example.com')!
    const f = await fleet()
    const outcome = await executeMove(f, store, add)
    await f.close()
    expect(outcome.error).toBeUndefined()
    expect(outcome).toMatchObject({state: 'retired', from: null, to: 'mx-d', trash: null, messages: 2})
    expect((await store.getUser('carol@example.com'))?.copies).toEqual(['mx-c', 'mx-d', 'mx-a'])
    expect(await subjects('mx-d', 'carol@example.com')).toEqual(['first for carol', 'only on mx-b for carol'])
  })

  it('resumes a drop stopped after its switch (as a run stopped before the retire): a late delivery to the dropped copy reaches the copies that stay', async () => {
    await store.journalMoves('test-plan', [{user: 'dave@example.com', position: 2, from: 'mx-b', to: null}])
    const drop = (await store.openMoves()).find((m) => m.user === 'dave@example.com')!
    const f = await fleet()
    const first = await executeMove(f, store, drop, {stopAt: 'caught-up'})
    await f.close()
    expect(first).toMatchObject({state: 'caught-up'})
    expect(first.error).toBeUndefined()
    expect((await store.getUser('dave@example.com'))?.copies).toEqual(['mx-a', 'mx-d'])
    // Delivered to mx-b after the switch (routed there just before it): mx-b still knows dave.
    await ring.host('mx-b').deliver('dave@example.com', message('very late for dave'))
    const g = await fleet()
    const [journaled] = (await store.openMoves()).filter((m) => m.id === drop.id)
    const outcome = await executeMove(g, store, journaled!)
    await g.close()
    expect(outcome.error).toBeUndefined()
    expect(outcome).toMatchObject({state: 'retired', from: 'mx-b', to: null})
    for (const server of ['mx-a', 'mx-d'])
      expect(await subjects(server, 'dave@example.com'), server).toEqual([
        'first for dave',
        'late for dave',
        'very late for dave',
      ])
    expect((await ring.host('mx-b').doveadm(['user', 'dave@example.com'])).exitCode).toBe(67)
  })

  it('changes nothing when the target is down: the error is kept and the move can be tried again', async () => {
    const move = await journal('alice@example.com', 0, 'mx-a', 'mx-c')
    await ring.host('mx-c').stop()
    const f = await fleet()
    const outcome = await executeMove(f, store, move)
    await f.close()
    expect(outcome.state).toBe('copying')
    expect(outcome.error, outcome.error).toMatch(/mx-c/)
    expect((await store.getUser('alice@example.com'))?.copies).toEqual(['mx-a', 'mx-b', 'mx-d'])
    const [kept] = (await store.openMoves()).filter((m) => m.id === move.id)
    expect(kept).toMatchObject({state: 'copying', attempts: 1})
    expect(kept?.lastError).toMatch(/mx-c/)
  })

  it('does not drop a copy while a copy that stays cannot be reached: nothing changes', async () => {
    // mx-c (carol's first copy) is stopped since the test above, and not marked down.
    await store.journalMoves('test-plan', [{user: 'carol@example.com', position: 2, from: 'mx-a', to: null}])
    const drop = (await store.openMoves()).find((m) => m.user === 'carol@example.com')!
    const f = await fleet()
    const outcome = await executeMove(f, store, drop)
    await f.close()
    expect(outcome.state).toBe('copying')
    expect(outcome.error, outcome.error).toMatch(/mx-c/)
    expect((await store.getUser('carol@example.com'))?.copies).toEqual(['mx-c', 'mx-d', 'mx-a'])
    expect((await ring.host('mx-a').doveadm(['user', 'carol@example.com'])).exitCode).toBe(0)
  })

  it('does not drop a copy when every copy that stays is marked down', async () => {
    const [drop] = (await store.openMoves()).filter((m) => m.user === 'carol@example.com')
    expect(drop).toMatchObject({from: 'mx-a', to: null})
    await setState(store, 'mx-c', 'down')
    await setState(store, 'mx-d', 'down')
    const f = await fleet()
    const outcome = await executeMove(f, store, drop!)
    await f.close()
    expect(outcome.error).toMatch(/no copy of carol@example.com that stays is usable/)
    expect((await store.getUser('carol@example.com'))?.copies).toEqual(['mx-c', 'mx-d', 'mx-a'])
  })
})

/**
 * A target whose disk is full: the user's home on it is a tmpfs of 48 KiB (mounted by the test, as root)
 * and the user holds more mail than that. The move fails with Dovecot's message and changes nothing; once
 * there is room (the tmpfs unmounted), the same move completes from where the journal left it.
 */
describe('a move onto a full disk', () => {
  let full: RingCluster
  let fullStore: SqliteStore
  let mounted: string | undefined
  const USER = 'erin@example.com'
  /** About 20 KB: four of them do not fit in the tmpfs. */
  const big = (n: number) =>
    `From: s@example.net\r\nSubject: big ${n}\r\n\r\n${`${'y'.repeat(78)}\r\n`.repeat(250)}`

  beforeAll(async () => {
    full = await startRingCluster({
      servers: ['mx-a', 'mx-b', 'mx-c'],
      users: [[USER, ['mx-a', 'mx-b']]],
      copies: 2,
      ssh: true,
    })
    fullStore = await SqliteStore.open(full.dbPath)
    for (let n = 1; n <= 4; n++) await full.host('mx-a').deliver(USER, big(n))
  }, 120_000)

  afterAll(async () => {
    if (mounted) await run('umount', [mounted])
    await fullStore?.close()
    await full?.stop()
  })

  it("fails with Dovecot's message and changes nothing; with room again, the same move completes", async () => {
    const f = new DoveadmFleet(
      await loadDovecotContext({
        store: fullStore,
        location: {kind: 'sqlite', path: full.dbPath, source: 'test'},
        config: full.configPath,
        env: {},
      }),
    )
    try {
      const home = path.join(full.host('mx-c').dir, 'home', 'example.com', 'erin')
      fs.mkdirSync(home, {recursive: true})
      // Under the tmpfs, the home as Dovecot would have made it: the mail user's.
      const owner = fs.statSync(full.host('mx-c').mailDir)
      for (const dir of [path.dirname(home), home]) fs.chownSync(dir, owner.uid, owner.gid)
      const mount = await run('mount', [
        '-t',
        'tmpfs',
        '-o',
        `size=48k,mode=0700,uid=${owner.uid},gid=${owner.gid}`,
        'tmpfs',
        home,
      ])
      expect(mount.exitCode, mount.stderr).toBe(0)
      mounted = home
      await fullStore.journalMoves('test-plan', [{user: USER, position: 1, from: 'mx-b', to: 'mx-c'}])
      const move = (await fullStore.openMoves()).find((m) => m.user === USER)!

      const failed = await executeMove(f, fullStore, move)
      expect(failed.state).toBe('copying')
      // Dovecot's own words, from the target's log (the HTTP API answers only an exit code).
      expect(failed.error, failed.error).toMatch(
        /mx-c said ".*write\(.*erin.*\) failed: No space left on device"$/,
      )
      expect((await fullStore.getUser(USER))?.copies).toEqual(['mx-a', 'mx-b'])
      const [kept] = (await fullStore.openMoves()).filter((m) => m.id === move.id)
      expect(kept).toMatchObject({state: 'copying', attempts: 1})
      // Logins and deliveries still go to the copies the user had; mx-b still holds everything.
      expect(await full.mailbox('mx-b', USER)).toHaveLength(4)

      expect((await run('umount', [home])).exitCode).toBe(0)
      mounted = undefined
      const done = await executeMove(f, fullStore, {...move, state: 'copying'}, {carry: failed})
      expect(done.error).toBeUndefined()
      expect(done.state).toBe('retired')
      expect((await fullStore.getUser(USER))?.copies).toEqual(['mx-a', 'mx-c'])
      expect(await full.mailbox('mx-c', USER)).toHaveLength(4)
    } finally {
      await f.close()
    }
  })
})
