/**
 * `mailring rebalance` (the built CLI) on real Dovecot 2.4 servers, which have no replication of their own:
 * four 2.4.1 servers configured by mailring's rendered 2.4 files over the SQLite store, an sshd on each
 * address. A server is added and the cluster rebalanced onto it; afterwards every message of every user
 * is on each of its current copies (IMAP), Dovecot 2.4 knows each user on exactly its servers, the old
 * copies are in the trash with their homes fenced, and `verify --all` agrees. Mail delivered meanwhile too.
 */
import * as path from 'node:path'

import {afterAll, beforeAll, expect, it} from 'vitest'

import {describeDovecot24} from '../support/dovecot24.js'
import {isFenced, type RingCluster} from '../support/ring-cluster.js'
import {rebalance, startRingWithSpare, type Mail} from '../support/ring-mail.js'

const USERS = Array.from({length: 10}, (_, i) => `user${String(i + 1).padStart(2, '0')}@example.com`)

describeDovecot24('rebalance on Dovecot 2.4 servers', () => {
  let ring: RingCluster
  let mail: Mail

  beforeAll(async () => {
    ;({ring, mail} = await startRingWithSpare(USERS, {version: '2.4'}))
  }, 180_000)

  afterAll(async () => {
    await ring?.stop()
  })

  it('moves users onto an added server: every message on every copy, old copies in the trash, homes fenced', async () => {
    const added = await ring.cli(['node', 'add', 'mx-d', '--address', ring.host('mx-d').ip])
    expect(added.exitCode, added.stderr).toBe(0)
    await mail.deliver('second', USERS)
    const result = await rebalance(ring, ['--retire-after', '0s'])
    expect(result.summary.failed).toBe(0)
    const moves = result.moves.filter((m) => m.state === 'retired')
    expect(moves.length).toBeGreaterThan(0)
    for (const move of moves) {
      expect(move.to).toBe('mx-d')
      // What reached the old first copy before the move is on the new copy already, without any sync.
      expect((await ring.mailbox('mx-d', move.user)).map((m) => m.subject)).toEqual(
        [...mail.sent.get(move.user)!].sort(),
      )
      expect(move.trash, move.user).toContain(path.join(ring.host(move.from!).dir, 'home', '.mailring-trash'))
      const home = path.join(ring.host(move.from!).dir, 'home', 'example.com', move.user.split('@')[0]!)
      expect(isFenced(home), home).toBe(true)
    }
    // A user that did not move has 'second' on its first copy only: the sync stands in for the replicator.
    // Mail delivered after the move goes to the new first copies.
    await mail.deliver('third', USERS)
    const synced = await ring.cli(['sync', 'domain', 'example.com'])
    expect(synced.exitCode, synced.stderr).toBe(0)
    await mail.expectOnEveryCopy(USERS, [...ring.hosts.keys()])
    const verify = await ring.cli(['verify', '--all'])
    expect(verify.exitCode, verify.stdout + verify.stderr).toBe(0)
  })
})
