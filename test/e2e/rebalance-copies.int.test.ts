/**
 * `mailring rebalance` executing copy-count changes, through the built CLI, on three real Dovecot 2.3
 * servers configured by mailring's rendered SQL over the SQLite store (test/support/ring-cluster.ts), an sshd
 * on each server's address for retiring copies. A domain's copy count goes from 2 to 3 (a copy added for
 * every user: no `from`), then back to 2 (a copy dropped: no `to`). After each run: every message on every
 * current copy over IMAP, Dovecot knows each user on exactly its copies' servers; a dropped copy is whole in
 * the trash of the server it left.
 */
import * as fs from 'node:fs'
import * as path from 'node:path'

import {afterAll, beforeAll, describe, expect, it} from 'vitest'

import type {RebalanceResult, RebalanceRunOutput} from '../../src/commands/rebalance.js'
import type {JsonEnvelope} from '../support/cli.js'
import {isFenced, startRingCluster, type RingCluster} from '../support/ring-cluster.js'
import {
  copiesInStore as copiesOf,
  Mail,
  placed as ringPlaced,
  rebalance as run,
} from '../support/ring-mail.js'

const SERVERS = ['mx-a', 'mx-b', 'mx-c']
const USERS = Array.from({length: 6}, (_, i) => `user${i + 1}@example.org`)
// Another domain keeps its two copies: the runs must not touch it.
const OTHER = 'keep@example.net'

const placed = (copies: number, users: readonly string[] = USERS) => ringPlaced(SERVERS, copies, users)

let ring: RingCluster
let mail: Mail
const copiesInStore = () => copiesOf(ring)
/** Mail for the users (and OTHER, with `other`; no replicator runs: only a sync brings it to its copies). */
const deliver = (subject: string, other = false) => mail.deliver(subject, other ? [...USERS, OTHER] : USERS)
const expectEveryMessageOnEveryCopy = () => mail.expectOnEveryCopy([...USERS, OTHER], SERVERS)
const rebalance = (): Promise<RebalanceRunOutput> => run(ring, ['--parallel', '3', '--retire-after', '1s'])

beforeAll(async () => {
  const two = placed(2, [...USERS, OTHER])
  ring = await startRingCluster({
    servers: SERVERS,
    users: [...USERS, OTHER].map((u) => [u, two.get(u)!]),
    copies: 2,
    ssh: true,
  })
  mail = new Mail(ring)
  await deliver('first', true)
  for (const domain of ['example.org', 'example.net']) {
    const synced = await ring.cli(['sync', 'domain', domain])
    expect(synced.exitCode, synced.stderr).toBe(0)
  }
}, 120_000)

afterAll(async () => {
  await ring?.stop()
})

describe('a copy count changed', () => {
  it('raised from 2 to 3: a copy is added for every user of the domain, where the ring puts it, with every message', async () => {
    const before = await copiesInStore()
    const set = await ring.cli(['domain', 'set', 'example.org', '--copies', '3'])
    expect(set.exitCode, set.stderr).toBe(0)
    const plan = await ring.cli<JsonEnvelope<RebalanceResult>>(['rebalance', '--dry-run', '--json'])
    const planned = plan.json!.result!.moves
    expect(planned).toHaveLength(USERS.length)
    expect(planned.every((m) => m.from === null && m.to !== null)).toBe(true)
    // Mail delivered after the plan, before the run: the copy step carries it.
    await deliver('second')

    const result = await rebalance()
    expect(result.summary).toMatchObject({
      moved: USERS.length,
      failed: 0,
      left: 0,
      copyCountChanges: 0,
    })
    expect(result.moves.every((m) => m.from === null && m.state === 'retired' && m.trash === null)).toBe(true)
    const after = await copiesInStore()
    // Each added copy takes the place the ring gives it (here: after the two the user had).
    for (const user of USERS) expect(after.get(user), user).toEqual(placed(3).get(user))
    expect(after.get(OTHER)).toEqual(before.get(OTHER))
    await expectEveryMessageOnEveryCopy()
    const again = await ring.cli(['rebalance', '--dry-run', '--detailed-exitcode'])
    expect(again.exitCode, again.stdout).toBe(0)
  })

  it('lowered from 3 to 2: the dropped copy goes to the trash, and Dovecot no longer knows the user there', async () => {
    await deliver('third')
    const set = await ring.cli(['domain', 'set', 'example.org', '--copies', '2'])
    expect(set.exitCode, set.stderr).toBe(0)
    const before = await copiesInStore()
    const result = await rebalance()
    expect(result.summary).toMatchObject({moved: USERS.length, failed: 0, left: 0})
    const after = await copiesInStore()
    for (const user of USERS) expect(after.get(user), user).toEqual(placed(2).get(user))
    expect(after.get(OTHER)).toEqual(before.get(OTHER))
    for (const move of result.moves) {
      expect(move.to, move.user).toBeNull()
      expect(before.get(move.user)).toContain(move.from)
      expect(after.get(move.user)).not.toContain(move.from)
      // The dropped copy is whole in the trash of its server: all three messages.
      expect(move.trash, move.user).toContain(path.join(ring.host(move.from!).dir, 'home', '.mailring-trash'))
      const maildir = path.join(move.trash!, 'Maildir')
      const count = ['new', 'cur'].reduce((n, f) => n + fs.readdirSync(path.join(maildir, f)).length, 0)
      expect(count, move.user).toBe(3)
      const home = path.join(ring.host(move.from!).dir, 'home', 'example.org', move.user.split('@')[0]!)
      expect(isFenced(home), home).toBe(true)
    }
    await expectEveryMessageOnEveryCopy()
    const again = await ring.cli(['rebalance', '--dry-run', '--detailed-exitcode'])
    expect(again.exitCode, again.stdout).toBe(0)
  })
})
