/**
 * N-way convergence as a property, on real Dovecot 2.3 and 2.4 (three servers, R = 3): whatever mix of
 * changes is made on any copies at once (deliveries, saves into folders, flags and keywords set and cleared,
 * expunges, copies and moves between folders, folders created, renamed and deleted), ONE sync of the user
 * (`syncOneUser`, what `sync user`, the replicator's full and catch-up syncs and a move's sync run) leaves
 * every copy equal: the same mailboxes, the same message GUIDs in each, the same flags on each message.
 *
 * The changes are drawn by a seeded generator: MAILRING_CONVERGENCE_SEED replays a run (`random` draws a new
 * seed; the seed is printed), MAILRING_CONVERGENCE_ROUNDS sets how many rounds of changes and a sync
 * (default 6). A failure names the round, the changes of that round and the differences left.
 */
import {afterAll, beforeAll, describe, expect, it} from 'vitest'

import {describeDifferences} from '../../../src/core/copy-compare.js'
import type {DoveadmFleet} from '../../../src/engine/sync/fleet.js'
import {readCopyContents, syncOneUser} from '../../../src/engine/sync/sync.js'
import type {Store} from '../../../src/store/store.js'
import {RING_OF_THREE, ringFleet, startRingCluster, type RingCluster} from '../../support/ring-cluster.js'
import {randomness, seedFrom, type Randomness} from '../../support/seeded.js'

const DEFAULT_SEED = 20_261_208
const SEED = seedFrom('MAILRING_CONVERGENCE_SEED', DEFAULT_SEED)
const ROUNDS = Number(process.env.MAILRING_CONVERGENCE_ROUNDS ?? 6)
const SERVERS = RING_OF_THREE.servers
const USER = RING_OF_THREE.users[0]![0]
const FLAGS = ['\\Seen', '\\Flagged', '\\Draft', '\\Answered', '$Label1', 'project-x']

const message = (subject: string) =>
  `From: s@example.net\r\nTo: ${USER}\r\nSubject: ${subject}\r\nMessage-ID: <${subject.replace(/\W/g, '.')}@test>\r\n\r\n${subject}\r\n`

/** One change a mail client, a delivery or an operator makes on one copy. */
interface Change {
  copy: string
  what: string
  apply(): Promise<void>
}

describe.each(['2.3', '2.4'] as const)('N-way convergence on Dovecot %s', (version) => {
  let ring: RingCluster
  let store: Store
  let fleet: DoveadmFleet

  beforeAll(async () => {
    ring = await startRingCluster({...RING_OF_THREE, version})
    store = await ring.openStore()
    fleet = await ringFleet(ring, store)
    // Every copy has its INBOX before the changes start: a doveadm command naming INBOX on a copy without
    // one makes a twin that dsync never reconciles (docs/dovecot-facts.md), which is not what is tested here.
    await ring.host('mx-a').deliver(USER, message('welcome'))
    const first = await syncOneUser(fleet, USER, SERVERS, false)
    expect(first.status, first.message).toBe('synced')
  })

  afterAll(async () => {
    await fleet?.close()
    await store?.close()
    await ring?.stop()
  })

  const doveadm = async (copy: string, args: string[], input?: string) => {
    // A change may fail as a client's would (a folder deleted meanwhile): that is part of the mix.
    await ring.host(copy).doveadm(args, input === undefined ? {} : {input})
  }

  /** Changes of one round, drawn against the folders every copy had when the round began. */
  function drawChanges(random: Randomness, round: number, folders: string[]): Change[] {
    const changes: Change[] = []
    const count = random.int(4, 9)
    for (let i = 0; i < count; i++) {
      const copy = random.pick(SERVERS)
      const tag = `r${round}c${i}`
      const uid = String(random.int(1, 4 + round * 3))
      const folder = folders.length > 0 ? random.pick(folders) : undefined
      const kind = random.pick([
        'deliver',
        'deliver',
        'flag',
        'flag',
        'unflag',
        'expunge',
        'save',
        'copy',
        'move',
        'create',
        'rename',
        'delete',
      ] as const)
      const change = (what: string, apply: () => Promise<void>) => changes.push({copy, what, apply})
      switch (kind) {
        case 'deliver':
          change(`deliver ${tag}`, () => ring.host(copy).deliver(USER, message(tag)))
          break
        case 'flag':
        case 'unflag': {
          const flag = random.pick(FLAGS)
          const verb = kind === 'flag' ? 'add' : 'remove'
          change(`flags ${verb} ${flag} uid ${uid}`, () =>
            doveadm(copy, ['flags', verb, '-u', USER, flag, 'mailbox', 'INBOX', 'uid', uid]),
          )
          break
        }
        case 'expunge':
          change(`expunge uid ${uid}`, () =>
            doveadm(copy, ['expunge', '-u', USER, 'mailbox', 'INBOX', 'uid', uid]),
          )
          break
        case 'save':
          if (folder)
            change(`save ${tag} in ${folder}`, () =>
              doveadm(copy, ['save', '-u', USER, '-m', folder], message(tag)),
            )
          break
        case 'copy':
        case 'move':
          if (folder)
            change(`${kind} uid ${uid} to ${folder}`, () =>
              doveadm(copy, [kind, '-u', USER, folder, 'mailbox', 'INBOX', 'uid', uid]),
            )
          break
        case 'create':
          change(`create F${tag}`, () => doveadm(copy, ['mailbox', 'create', '-u', USER, `F${tag}`]))
          break
        case 'rename':
          if (folder)
            change(`rename ${folder} to ${folder}-${tag}`, () =>
              doveadm(copy, ['mailbox', 'rename', '-u', USER, folder, `${folder}-${tag}`]),
            )
          break
        case 'delete':
          if (folder)
            change(`delete ${folder}`, () => doveadm(copy, ['mailbox', 'delete', '-u', USER, folder]))
          break
      }
    }
    return changes
  }

  it(`leaves every copy equal after each round of concurrent changes and one sync (seed ${SEED}, ${ROUNDS} rounds)`, async () => {
    console.log(
      `N-way convergence on Dovecot ${version}: seed ${SEED} (MAILRING_CONVERGENCE_SEED=${SEED} replays it)`,
    )
    const random = randomness(SEED)
    for (let round = 1; round <= ROUNDS; round++) {
      const before = await readCopyContents(fleet, USER, 'mx-a')
      const folders = before.mailboxes.map((m) => m.mailbox ?? '').filter((name) => name !== 'INBOX')
      const changes = drawChanges(random, round, folders)
      // At once, on their copies, as clients on several servers would.
      await Promise.all(changes.map((c) => c.apply()))
      const result = await syncOneUser(fleet, USER, SERVERS, false)
      const said = `round ${round} (${changes.map((c) => `${c.what} on ${c.copy}`).join('; ')})`
      expect(result.status, `${said}: ${result.message}`).toMatch(/^(synced|in-sync)$/)
      const copies = await Promise.all(SERVERS.map((copy) => readCopyContents(fleet, USER, copy)))
      expect(
        describeDifferences(copies, new Map(copies.map((c) => [c.copy, c.messages]))),
        `${said}: the copies differ after the sync`,
      ).toEqual([])
    }
  })
})
