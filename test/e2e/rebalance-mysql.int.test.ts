/**
 * `mailring rebalance` on the MySQL store, through the built CLI: four real Dovecot 2.3 servers whose
 * userdb is the rendered SQL read by Dovecot's mysql driver from a real MariaDB (test/support/mariadb.ts)
 * as a read-only database user, an sshd on each server's address for retiring old copies. A server is
 * added and rebalanced onto, then a domain's copy count is raised from 2 to 3: every message on every
 * current copy over IMAP, Dovecot knows each user on exactly its servers (the rendered queries read the
 * journal on MariaDB), old copies in the trash. A run whose lock connection is killed stops with exit 3,
 * and the next run finishes its moves.
 */
import * as fs from 'node:fs'
import * as path from 'node:path'

import {afterAll, beforeAll, describe, expect, it} from 'vitest'

import type {RebalanceRunOutput} from '../../src/commands/rebalance.js'
import {startMariaDb, type MariaDb} from '../support/mariadb.js'
import {waitForOutput} from '../support/cli.js'
import type {RingCluster} from '../support/ring-cluster.js'
import {
  copiesInStore as copiesOf,
  type Mail,
  placed as ringPlaced,
  rebalance as run,
  startRingWithSpare,
} from '../support/ring-mail.js'

const SERVERS = ['mx-a', 'mx-b', 'mx-c', 'mx-d']
const USERS = Array.from({length: 8}, (_, i) => `user${i + 1}@example.com`)

const placed = (servers: string[], copies: number) => ringPlaced(servers, copies, USERS)

let db: MariaDb
let ring: RingCluster
let mail: Mail
const copiesInStore = () => copiesOf(ring)
const deliver = (subject: string) => mail.deliver(subject, USERS)
const expectEveryMessageOnEveryCopy = () => mail.expectOnEveryCopy(USERS, SERVERS)
const rebalance = (): Promise<RebalanceRunOutput> => run(ring, ['--parallel', '3', '--retire-after', '1s'])

beforeAll(async () => {
  db = await startMariaDb()
  ;({ring, mail} = await startRingWithSpare(USERS, {mariadb: db}))
}, 180_000)

afterAll(async () => {
  await ring?.stop()
  await db?.stop()
})

describe('rebalance on the MySQL store (MariaDB)', () => {
  it('moves copies onto an added server, every message on every copy, old copies in the trash', async () => {
    const status = await ring.cli(['status'])
    expect(status.stdout).toContain('mysql://')
    // Dovecot reads MariaDB: its userdb file is the rendered mysql one.
    const userdb = fs.readFileSync(path.join(ring.host('mx-a').dir, 'dovecot-sql.conf.ext'), 'utf8')
    expect(userdb).toMatch(/^driver = mysql$/m)
    const added = await ring.cli(['node', 'add', 'mx-d', '--address', ring.host('mx-d').ip])
    expect(added.exitCode, added.stderr).toBe(0)
    const result = await rebalance()
    expect(result.summary).toMatchObject({failed: 0, left: 0})
    expect(result.summary.moved).toBeGreaterThan(0)
    const sets = (m: Map<string, string[]>) => new Map([...m].map(([u, c]) => [u, [...c].sort()]))
    expect(sets(await copiesInStore())).toEqual(sets(placed(SERVERS, 2)))
    for (const move of result.moves)
      expect(move.trash, move.user).toContain(path.join(ring.host(move.from!).dir, 'home', '.mailring-trash'))
    await expectEveryMessageOnEveryCopy()
  })

  it('adds a copy for every user when the domain goes from 2 to 3 copies', async () => {
    await deliver('second')
    const synced = await ring.cli(['sync', 'domain', 'example.com'])
    expect(synced.exitCode, synced.stderr).toBe(0)
    const set = await ring.cli(['domain', 'set', 'example.com', '--copies', '3'])
    expect(set.exitCode, set.stderr).toBe(0)
    const result = await rebalance()
    expect(result.summary).toMatchObject({moved: USERS.length, failed: 0, left: 0})
    expect(result.moves.every((m) => m.from === null && m.trash === null)).toBe(true)
    const sets = (m: Map<string, string[]>) => new Map([...m].map(([u, c]) => [u, [...c].sort()]))
    expect(sets(await copiesInStore())).toEqual(sets(placed(SERVERS, 3)))
    await expectEveryMessageOnEveryCopy()
  })

  it('stops at once with exit 3 when the connection holding its lock breaks; the next run finishes', async () => {
    const set = await ring.cli(['domain', 'set', 'example.com', '--copies', 'default'])
    expect(set.exitCode, set.stderr).toBe(0)
    // Retires wait 60 s: a run that did not stop would still be waiting when the test gives up on it.
    const started = ring.startCli(['rebalance', '--yes', '--json-lines', '--retire-after', '60s'])
    await waitForOutput(started.child, '"type":"journal"', 30_000)
    // As a network would drop them: every connection of mailring's database user, the lock's among them.
    expect(await db.killConnections(db.user)).toBeGreaterThan(0)
    const r = await started.result
    expect(r.exitCode, `${r.stderr}\n${r.stdout}`).toBe(3)
    expect(r.stderr).toContain('Lost the cluster lock')
    const summary = JSON.parse(r.stdout.trim().split('\n').at(-1)!) as {type: string; interrupted: boolean}
    expect(summary).toMatchObject({type: 'summary', interrupted: true})

    const result = await rebalance()
    expect(result.summary).toMatchObject({failed: 0, left: 0})
    const sets = (m: Map<string, string[]>) => new Map([...m].map(([u, c]) => [u, [...c].sort()]))
    expect(sets(await copiesInStore())).toEqual(sets(placed(SERVERS, 2)))
    await expectEveryMessageOnEveryCopy()
  }, 180_000)
})
