/**
 * `mailring rebalance` on the MySQL store, through the built CLI: four real Dovecot 2.3 servers whose
 * userdb is the rendered SQL read by Dovecot's mysql driver from a real MariaDB (test/support/mariadb.ts)
 * as a read-only database user, an sshd on each server's address for retiring old copies. A server is
 * added and rebalanced onto, then a domain's copy count is raised from 2 to 3: every message on every
 * current copy over IMAP, Dovecot knows each user on exactly its servers (the rendered queries read the
 * journal on MariaDB), old copies in the trash.
 */
import * as fs from 'node:fs'
import * as path from 'node:path'

import {afterAll, beforeAll, describe, expect, it} from 'vitest'

import type {RebalanceRunOutput} from '../../src/commands/rebalance.js'
import {Placement} from '../../src/core/placement.js'
import {PLACEMENT_ALGORITHM_VERSION, type Topology} from '../../src/core/topology.js'
import {startMariaDb, type MariaDb} from '../support/mariadb.js'
import type {JsonEnvelope} from './cli.js'
import {startRingCluster, type RingCluster} from './ring-cluster.js'

const SERVERS = ['mx-a', 'mx-b', 'mx-c', 'mx-d']
const USERS = Array.from({length: 8}, (_, i) => `user${i + 1}@example.com`)

function placed(servers: string[], copies: number): Map<string, string[]> {
  const topology: Topology = {
    algorithm: PLACEMENT_ALGORITHM_VERSION,
    copies,
    servers: servers.map((name) => ({name, address: '', weight: 1, state: 'active'})),
    domains: [],
  }
  const placement = new Placement(topology)
  return new Map(USERS.map((u) => [u, placement.serversFor(u)]))
}

let db: MariaDb
let ring: RingCluster
const sent = new Map<string, string[]>(USERS.map((u) => [u, []]))

async function copiesInStore(): Promise<Map<string, string[]>> {
  const store = await ring.openStore()
  try {
    return new Map((await store.listUsers({limit: 1000})).map((u) => [u.user, u.copies]))
  } finally {
    await store.close()
  }
}

async function deliver(subject: string): Promise<void> {
  const copies = await copiesInStore()
  for (const user of USERS) {
    await ring.host(copies.get(user)![0]!).deliver(user, `Subject: ${subject} ${user}\r\n\r\nbody\r\n`)
    sent.get(user)!.push(`${subject} ${user}`)
  }
}

async function expectEveryMessageOnEveryCopy(): Promise<void> {
  const copies = await copiesInStore()
  for (const user of USERS) {
    for (const server of copies.get(user)!) {
      const subjects = (await ring.mailbox(server, user)).map((m) => m.subject)
      expect(subjects, `${user} on ${server}`).toEqual([...sent.get(user)!].sort())
    }
    for (const server of SERVERS) {
      const known = (await ring.host(server).doveadm(['user', user])).exitCode === 0
      expect(known, `${server} knows ${user}`).toBe(copies.get(user)!.includes(server))
    }
  }
}

async function rebalance(): Promise<RebalanceRunOutput> {
  const r = await ring.cli<JsonEnvelope<RebalanceRunOutput>>([
    'rebalance',
    '--yes',
    '--json',
    '--parallel',
    '3',
    '--retire-after',
    '1s',
  ])
  expect(r.exitCode, r.stderr + r.stdout).toBe(0)
  return r.json!.result!
}

beforeAll(async () => {
  db = await startMariaDb()
  const three = placed(['mx-a', 'mx-b', 'mx-c'], 2)
  ring = await startRingCluster({
    servers: SERVERS,
    users: USERS.map((u) => [u, three.get(u)!]),
    copies: 2,
    ssh: true,
    mariadb: db,
  })
  const removed = await ring.cli(['node', 'remove', 'mx-d'])
  expect(removed.exitCode, removed.stderr).toBe(0)
  await deliver('first')
  const synced = await ring.cli(['sync', 'domain', 'example.com'])
  expect(synced.exitCode, synced.stderr).toBe(0)
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
})
