/**
 * A delivery in flight on the leaving copy while its move runs, on real Dovecot 2.3 and 2.4 servers
 * configured by mailring (SQLite store, doveadm over HTTP, an sshd on each address): an LMTP delivery to
 * user U's first copy X has its recipient accepted (X's userdb looked U up), and its message is held before
 * the final dot, as a large message on a slow link is, while U's move from X to Y runs to the end. Then the
 * message is finished. No mail may be lost: X refuses it with a temporary error (the sender keeps it and
 * tries again, and is routed to the new copy). Without the fence the retire leaves where the home was,
 * Dovecot made the home anew and accepted the message into it, where no copy would ever see it.
 * Then U moves back onto X: the fence goes, and `rebalance cleanup` deletes the trash and the other fence.
 */
import * as fs from 'node:fs'
import * as path from 'node:path'

import {afterAll, beforeAll, describe, expect, it} from 'vitest'

import {executeMove} from '../../../src/engine/rebalance/move.js'
import {cleanupRetired, retireOldCopy} from '../../../src/engine/rebalance/retire.js'
import {syncUsers} from '../../../src/engine/sync/sync.js'
import {SqliteStore} from '../../../src/store/sqlite.js'
import {isFenced, ringFleet, startRingCluster, type RingCluster} from '../../support/ring-cluster.js'
import {describeDovecot24, type DovecotVersion} from '../../support/dovecot24.js'
import {lmtpDeliver} from '../../support/mailclients.js'

const USER = 'erin@example.com'
/** A user without mail: through doveadm, a fenced home looks just like theirs. */
const EMPTY = 'frank@example.com'

const fleet = ringFleet

/** Files under `dir` whose content has `text`. */
function filesWith(dir: string, text: string): string[] {
  const found: string[] = []
  const walk = (d: string) => {
    for (const entry of fs.readdirSync(d, {withFileTypes: true})) {
      const p = path.join(d, entry.name)
      if (entry.isDirectory()) walk(p)
      else if (entry.isFile() && fs.readFileSync(p, 'latin1').includes(text)) found.push(p)
    }
  }
  walk(dir)
  return found
}

function scenario(version: DovecotVersion): void {
  let ring: RingCluster
  let store: SqliteStore
  const subjects = async (server: string, user = USER) =>
    (await ring.mailbox(server, user)).map((m) => m.subject)
  beforeAll(async () => {
    ring = await startRingCluster({
      servers: ['mx-a', 'mx-b', 'mx-c'],
      version,
      users: [
        [USER, ['mx-a', 'mx-b']],
        [EMPTY, ['mx-a', 'mx-b']],
      ],
      copies: 2,
      ssh: true,
    })
    store = await SqliteStore.open(ring.dbPath)
    await ring.host('mx-a').deliver(USER, 'Subject: before\r\n\r\nbefore\r\n')
    const f = await fleet(ring, store)
    await syncUsers(f, [{user: USER, copies: ['mx-a', 'mx-b']}])
    await f.close()
  }, 120_000)

  afterAll(async () => {
    await store?.close()
    await ring?.stop()
  })

  it('is refused or reaches the current copies: never accepted and left behind', async () => {
    await store.journalMoves('test-plan', [{user: USER, position: 0, from: 'mx-a', to: 'mx-c'}])
    const move = (await store.openMoves()).find((m) => m.user === USER)!
    const x = ring.host('mx-a')
    let moved!: () => void
    const moveDone = new Promise<void>((resolve) => (moved = resolve))
    let outcome: Awaited<ReturnType<typeof executeMove>> | undefined
    const delivery = lmtpDeliver(x.ip, x.lmtpPort, {
      to: [USER],
      message: 'Subject: in flight\r\n\r\nin flight\r\n',
      timeoutMs: 120_000,
      beforeEnd: async () => {
        // The recipient is accepted on mx-a; now the whole move runs, old copy retired.
        const f = await fleet(ring, store)
        outcome = await executeMove(f, store, move)
        await f.close()
        moved()
      },
    })
    let refusal = ''
    const accepted = await delivery.then(
      () => true,
      (error: unknown) => {
        refusal = String(error)
        return false
      },
    )
    await moveDone
    expect(outcome?.error).toBeUndefined()
    expect(outcome?.state).toBe('retired')
    expect((await store.getUser(USER))?.copies).toEqual(['mx-c', 'mx-b'])
    // What the replicator would do next: the current copies synced.
    const f = await fleet(ring, store)
    await syncUsers(f, [{user: USER, copies: ['mx-c', 'mx-b']}])
    await f.close()
    const where = filesWith(x.dir, 'Subject: in flight')
    const account = `accepted: ${accepted}; on mx-a in: ${where.join(', ') || 'nothing'}`
    for (const server of ['mx-c', 'mx-b'])
      expect(await subjects(server), `${server}; ${account}`).toEqual(
        accepted ? ['before', 'in flight'] : ['before'],
      )
    // Ended after the move: refused with a temporary error (the sender tries again, and is routed to the
    // new copy), never accepted into a home made anew.
    expect(accepted, account).toBe(false)
    expect(refusal).toMatch(/LMTP delivery to erin@example.com failed: 4\d\d /)
  })

  it('a move bringing the user back takes the fence away; cleanup deletes the trash and the fence', async () => {
    await store.journalMoves('test-plan-2', [{user: USER, position: 0, from: 'mx-c', to: 'mx-a'}])
    const move = (await store.openMoves()).find((m) => m.user === USER)!
    const f = await fleet(ring, store)
    const outcome = await executeMove(f, store, move)
    expect(outcome.error).toBeUndefined()
    expect(outcome.state).toBe('retired')
    expect((await store.getUser(USER))?.copies).toEqual(['mx-a', 'mx-b'])
    expect(await subjects('mx-a')).toEqual(['before'])
    await ring.host('mx-a').deliver(USER, 'Subject: back\r\n\r\nback\r\n')
    expect(await subjects('mx-a')).toEqual(['back', 'before'])
    // mx-c's fence (from this move) and mx-a's trash (from the first) go with cleanup.
    const retired = await store.retiredMoves('9999')
    expect(retired).toHaveLength(2)
    const cHome = path.join(ring.host('mx-c').dir, 'home/example.com/erin')
    expect(isFenced(cHome), cHome).toBe(true)
    const cleaned = await cleanupRetired(f, store, retired)
    await f.close()
    expect(cleaned.map((c) => c.error)).toEqual([undefined, undefined])
    for (const m of retired) expect(fs.existsSync(m.trash!), m.trash!).toBe(false)
    expect(fs.existsSync(cHome), cHome).toBe(false)
    expect(fs.statSync(path.join(ring.host('mx-a').dir, 'home/example.com/erin')).isDirectory()).toBe(true)
  })

  it('a user without mail moved away and back: the fence goes, and mail is delivered there again', async () => {
    const homeOnA = path.join(ring.host('mx-a').dir, 'home/example.com/frank')
    for (const [from, to] of [
      ['mx-a', 'mx-c'],
      ['mx-c', 'mx-a'],
    ] as const) {
      await store.journalMoves(`test-plan-${from}`, [{user: EMPTY, position: 0, from, to}])
      const move = (await store.openMoves()).find((m) => m.user === EMPTY)!
      const f = await fleet(ring, store)
      const outcome = await executeMove(f, store, move)
      await f.close()
      expect(outcome.error).toBeUndefined()
      expect(outcome.state).toBe('retired')
      // Fenced although it held no mail.
      if (from === 'mx-a') expect(isFenced(homeOnA), homeOnA).toBe(true)
    }
    expect((await store.getUser(EMPTY))?.copies).toEqual(['mx-a', 'mx-b'])
    await ring.host('mx-a').deliver(EMPTY, 'Subject: first for frank\r\n\r\nx\r\n')
    expect((await ring.mailbox('mx-a', EMPTY)).map((m) => m.subject)).toEqual(['first for frank'])
  })

  it('checks the last catch-up: a message of the old copy missing on the new one fails the retire, which a later run completes', async () => {
    await store.journalMoves('test-plan-check', [{user: EMPTY, position: 1, from: 'mx-b', to: 'mx-c'}])
    const journaled = (await store.openMoves()).find((m) => m.user === EMPTY)!
    const f = await fleet(ring, store)
    expect(await executeMove(f, store, journaled, {stopAt: 'caught-up'})).toMatchObject({state: 'caught-up'})
    // Routed to mx-b before the switch, landed after the catch-up: only the old copy has it.
    await ring.host('mx-b').deliver(EMPTY, 'Subject: late for frank\r\n\r\nx\r\n')
    // A last catch-up that did not get through, as when the new copy's Dovecot dies under it.
    const move = {...journaled, state: 'caught-up' as const, from: 'mx-b'}
    await expect(retireOldCopy(f, move, {catchUp: () => Promise.resolve('mx-c')})).rejects.toThrow(
      /1 message\(s\) of frank@example.com's old copy .* are not on mx-c after the last catch-up/,
    )
    expect((await store.openMoves()).map((m) => m.state)).toEqual(['caught-up'])
    // The next attempt finds its trash copy (mx-b's home is fenced by now) and catches up from it.
    const outcome = await executeMove(f, store, move)
    await f.close()
    expect(outcome.error).toBeUndefined()
    expect(outcome.state).toBe('retired')
    expect(await subjects('mx-c', EMPTY)).toEqual(['first for frank', 'late for frank'])
  })
}

describe('a delivery in flight on the leaving copy during its move, Dovecot 2.3', () => scenario('2.3'))
describeDovecot24('a delivery in flight on the leaving copy during its move, Dovecot 2.4', () =>
  scenario('2.4'),
)
