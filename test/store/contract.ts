/**
 * The behaviour every store must have, written against the Store interface only: the SQLite store
 * (sqlite.test.ts) and the MySQL/MariaDB store (mysql.int.test.ts, on a real MariaDB) both run it unchanged.
 */
import {hostname} from 'node:os'

import {afterEach, beforeEach, describe, expect, it} from 'vitest'

import {ExitCode, MailringError} from '../../src/core/errors.js'
import {PLACEMENT_ALGORITHM_VERSION, type Topology} from '../../src/core/topology.js'
import {latestVersion} from '../../src/store/migrations/index.js'
import {mysqlMigrations} from '../../src/store/migrations/mysql.js'
import {sqliteMigrations} from '../../src/store/migrations/sqlite.js'
import type {ClaimOptions, PlacementChunk, ReplicationTask, Store} from '../../src/store/store.js'
import {userBatch} from '../support/user-batch.js'

export interface ContractTarget {
  /** Opens a connection to the (fresh, initialised, empty) store; may be called more than once. */
  open(): Promise<Store>
  cleanup(): Promise<void>
}

const topology: Topology = {
  algorithm: PLACEMENT_ALGORITHM_VERSION,
  copies: 2,
  servers: [
    {name: 'mx01', address: '192.0.2.1', zone: 'rack-a', weight: 1, state: 'active'},
    {name: 'mx02', address: '192.0.2.2', zone: 'rack-b', weight: 2, state: 'active'},
    {name: 'mx03', address: '', weight: 0.5, state: 'draining'},
  ],
  domains: [
    {domain: 'archive.example.net', servers: ['mx01', 'mx02'], copies: 2},
    {domain: 'example.com', copies: 3},
  ],
}

async function collect(
  store: Store,
  chunkSize?: number,
): Promise<{chunks: PlacementChunk[]; users: Map<string, string[]>}> {
  const scan = await store.scanPlacements(chunkSize)
  const chunks: PlacementChunk[] = []
  const users = new Map<string, string[]>()
  for await (const chunk of scan.chunks) {
    chunks.push(chunk)
    chunk.users.forEach((user, i) => {
      const copies = Array.from(chunk.copyServers.subarray(chunk.copyStart[i]!, chunk.copyStart[i + 1]!))
      users.set(
        user,
        copies.map((index) => scan.servers[index]!),
      )
    })
  }
  return {chunks, users}
}

/** The MailringError a promise rejects with (and an assertion that it does reject with one). */
export async function failure(promise: Promise<unknown>): Promise<MailringError> {
  const error = await promise.then(
    () => undefined,
    (caught: unknown) => caught,
  )
  expect(error).toBeInstanceOf(MailringError)
  return error as MailringError
}

async function expectMailringError(
  promise: Promise<unknown>,
  exitCode: number,
  pattern: RegExp,
): Promise<void> {
  const error = await failure(promise)
  expect(error.exitCode).toBe(exitCode)
  expect(error.message).toMatch(pattern)
}

export function storeContract(name: string, makeStore: () => Promise<ContractTarget>): void {
  describe(`store contract: ${name}`, () => {
    let target: ContractTarget
    let store: Store
    const others: Store[] = []

    beforeEach(async () => {
      target = await makeStore()
      store = await target.open()
    })
    /** The topology above with these users (address, copies). */
    const withUsers = async (users: [string, string[]][]): Promise<void> => {
      await store.writeTopology(topology)
      await store.insertUsers([userBatch(users)], {skipExisting: false})
    }
    afterEach(async () => {
      for (const other of others.splice(0)) await other.close()
      await store.close()
      await target.cleanup()
    })

    it('records the schema version, the placement algorithm and a cluster id', async () => {
      const meta = await store.meta()
      expect(meta.schemaVersion).toBe(latestVersion(sqliteMigrations))
      expect(latestVersion(mysqlMigrations)).toBe(latestVersion(sqliteMigrations))
      expect(meta.algorithm).toBe(PLACEMENT_ALGORITHM_VERSION)
      expect(meta.clusterId).toMatch(/^[0-9a-f-]{36}$/)
    })

    it('starts with no servers and no users', async () => {
      const empty = await store.readTopology()
      expect(empty.servers).toEqual([])
      expect(empty.domains).toEqual([])
      expect(await store.countUsers()).toBe(0)
      expect(await store.lockHolder()).toBeUndefined()
    })

    it('keeps a topology as written, servers and domains sorted by name', async () => {
      await store.writeTopology({...topology, servers: [...topology.servers].reverse()})
      expect(await store.readTopology()).toEqual(topology)
      const changed: Topology = {
        ...topology,
        copies: 3,
        servers: topology.servers.map((s) => (s.name === 'mx02' ? {...s, weight: 4, zone: 'rack-c'} : s)),
        domains: [{domain: 'example.com', servers: ['mx02']}],
      }
      await store.writeTopology(changed)
      expect(await store.readTopology()).toEqual(changed)
    })

    it('adds users with their copies in order, and finds, lists and removes them', async () => {
      await store.writeTopology(topology)
      const result = await store.insertUsers(
        [
          userBatch([
            ['bob@example.com', ['mx02', 'mx01']],
            ['alice@example.com', ['mx01', 'mx02']],
          ]),
          userBatch([['carol@archive.example.net', ['mx02', 'mx01']]]),
        ],
        {skipExisting: false},
      )
      expect(result).toEqual({inserted: 3, existing: [], repeated: []})
      expect(await store.countUsers()).toBe(3)
      expect(await store.getUser('bob@example.com')).toEqual({
        user: 'bob@example.com',
        domain: 'example.com',
        copies: ['mx02', 'mx01'],
      })
      expect(await store.getUser('nobody@example.com')).toBeUndefined()

      const firstPage = await store.listUsers({limit: 2})
      expect(firstPage.map((u) => u.user)).toEqual(['alice@example.com', 'bob@example.com'])
      const secondPage = await store.listUsers({limit: 2, after: 'bob@example.com'})
      expect(secondPage.map((u) => u.user)).toEqual(['carol@archive.example.net'])
      const archive = await store.listUsers({limit: 10, domain: 'archive.example.net'})
      expect(archive).toEqual([
        {user: 'carol@archive.example.net', domain: 'archive.example.net', copies: ['mx02', 'mx01']},
      ])

      expect(await store.removeUsers(['bob@example.com', 'nobody@example.com'])).toEqual(['bob@example.com'])
      expect(await store.getUser('bob@example.com')).toBeUndefined()
      expect(await store.countUsers()).toBe(2)
    })

    it('writes nothing when a user exists already, unless told to skip existing users', async () => {
      await store.writeTopology(topology)
      await store.insertUsers([userBatch([['alice@example.com', ['mx01', 'mx02']]])], {skipExisting: false})
      const attempt = userBatch([
        ['new@example.com', ['mx01', 'mx02']],
        ['alice@example.com', ['mx02', 'mx01']],
      ])
      expect(await store.insertUsers([attempt], {skipExisting: false})).toEqual({
        inserted: 0,
        existing: [[0, 1]],
        repeated: [],
      })
      expect(await store.countUsers()).toBe(1)
      expect((await store.getUser('alice@example.com'))?.copies).toEqual(['mx01', 'mx02'])

      expect(await store.insertUsers([attempt], {skipExisting: true})).toEqual({
        inserted: 1,
        existing: [[0, 1]],
        repeated: [],
      })
      expect(await store.countUsers()).toBe(2)
      expect((await store.getUser('alice@example.com'))?.copies).toEqual(['mx01', 'mx02'])
    })

    it('tells users given twice in one call from users that existed before', async () => {
      await store.writeTopology(topology)
      await store.insertUsers([userBatch([['old@example.com', ['mx01', 'mx02']]])], {skipExisting: false})
      const attempt = [
        userBatch([
          ['a@example.com', ['mx01', 'mx02']],
          ['b@example.com', ['mx01', 'mx02']],
        ]),
        userBatch([
          ['old@example.com', ['mx02', 'mx01']],
          ['b@example.com', ['mx02', 'mx01']],
        ]),
      ]
      const expected = {existing: [[1, 0]], repeated: [{at: [1, 1], first: [0, 1]}]}
      expect(await store.insertUsers(attempt, {skipExisting: false})).toEqual({inserted: 0, ...expected})
      expect(await store.countUsers()).toBe(1)
      expect(await store.insertUsers(attempt, {skipExisting: true})).toEqual({inserted: 2, ...expected})
      expect((await store.getUser('b@example.com'))?.copies).toEqual(['mx01', 'mx02'])
    })

    it('refuses copies on an unknown server and writes nothing', async () => {
      await store.writeTopology(topology)
      const attempt = [
        userBatch([['a@example.com', ['mx01', 'mx02']]]),
        userBatch([['b@example.com', ['mx01', 'mx99']]]),
      ]
      await expectMailringError(store.insertUsers(attempt, {skipExisting: false}), ExitCode.error, /mx99/)
      expect(await store.countUsers()).toBe(0)
    })

    it('counts copies and primaries per server', async () => {
      await store.writeTopology(topology)
      await store.insertUsers(
        [
          userBatch([
            ['a@example.com', ['mx01', 'mx02']],
            ['b@example.com', ['mx02', 'mx01']],
            ['c@example.com', ['mx02', 'mx03']],
          ]),
        ],
        {skipExisting: false},
      )
      expect(await store.serverUsage()).toEqual([
        {server: 'mx01', copies: 2, primaries: 1},
        {server: 'mx02', copies: 3, primaries: 2},
        {server: 'mx03', copies: 1, primaries: 0},
      ])
    })

    it('streams every placement in chunks, copies primary first', async () => {
      await store.writeTopology(topology)
      const users: [string, string[]][] = Array.from({length: 25}, (_, i) => [
        `user${i}@example.com`,
        i % 2 === 0 ? ['mx01', 'mx02'] : ['mx02', 'mx03', 'mx01'],
      ])
      await store.insertUsers([userBatch(users.slice(0, 10)), userBatch(users.slice(10))], {
        skipExisting: false,
      })
      const addresses: string[][] = []
      for await (const chunk of store.scanUsers(10)) addresses.push(chunk)
      expect(addresses.map((chunk) => chunk.length)).toEqual([10, 10, 5])
      expect(addresses.flat()).toEqual(users.map(([user]) => user))
      const scanned = await collect(store, 10)
      expect(scanned.chunks.map((chunk) => chunk.users.length)).toEqual([10, 10, 5])
      expect(scanned.users).toEqual(new Map(users))
    })

    it('deletes an empty server, but never one that still holds copies', async () => {
      await store.writeTopology(topology)
      await store.insertUsers([userBatch([['a@example.com', ['mx01', 'mx03']]])], {skipExisting: false})
      const withoutMx03 = {...topology, servers: topology.servers.filter((s) => s.name !== 'mx03')}
      await expectMailringError(store.writeTopology(withoutMx03), ExitCode.error, /mx03 still holds copies/)
      expect((await store.readTopology()).servers.map((s) => s.name)).toEqual(['mx01', 'mx02', 'mx03'])

      await store.removeUsers(['a@example.com'])
      await store.writeTopology(withoutMx03)
      expect((await store.readTopology()).servers.map((s) => s.name)).toEqual(['mx01', 'mx02'])
    })

    it('replaces current copies, creates missing users and removes others, all in one transaction', async () => {
      await store.writeTopology(topology)
      await store.insertUsers(
        [
          userBatch([
            ['a@example.com', ['mx01', 'mx02']],
            ['b@example.com', ['mx02', 'mx01']],
            ['gone@example.com', ['mx01', 'mx02']],
          ]),
        ],
        {skipExisting: false},
      )
      const result = await store.replaceUsers(
        [
          userBatch([
            ['a@example.com', ['mx03']],
            ['new@example.com', ['mx02', 'mx03']],
          ]),
          userBatch([['a@example.com', ['mx02', 'mx03', 'mx01']]]),
        ],
        ['gone@example.com', 'nobody@example.com'],
      )
      expect(result).toEqual({created: 1, replaced: 1, removed: 1})
      expect((await store.getUser('a@example.com'))?.copies).toEqual(['mx02', 'mx03', 'mx01'])
      expect((await store.getUser('b@example.com'))?.copies).toEqual(['mx02', 'mx01'])
      expect(await store.getUser('new@example.com')).toEqual({
        user: 'new@example.com',
        domain: 'example.com',
        copies: ['mx02', 'mx03'],
      })
      expect(await store.getUser('gone@example.com')).toBeUndefined()

      await expectMailringError(
        store.replaceUsers([userBatch([['b@example.com', ['mx99']]])], ['a@example.com']),
        ExitCode.error,
        /mx99/,
      )
      expect((await store.getUser('b@example.com'))?.copies).toEqual(['mx02', 'mx01'])
      expect(await store.countUsers()).toBe(3)
    })

    it('refuses an operator users table it cannot read, naming the table', async () => {
      await expect(
        store.usersTable({table: 'no_such_table', userColumn: 'email', source: 'test: users_table'}),
      ).rejects.toThrow(/test: users_table: .*no_such_table|test: users_table: .*MySQL/)
    })

    it('gives the cluster lock to one holder at a time and names the holder to the others', async () => {
      const other = await target.open()
      others.push(other)
      const lock = await store.acquireLock('node add mx13')
      expect(lock.holder).toMatchObject({pid: process.pid, host: hostname(), command: 'node add mx13'})
      expect(await other.lockHolder()).toEqual(lock.holder)
      await expectMailringError(
        other.acquireLock('users import'),
        ExitCode.locked,
        new RegExp(`locked by "mailring node add mx13" \\(pid ${process.pid} on ${hostname()}`),
      )
      lock.assertHeld()
      await lock.release()
      expect(await store.lockHolder()).toBeUndefined()
      const second = await other.acquireLock('users import')
      expect(second.replacedStale).toBeUndefined()
      await second.release()
    })

    it('breaks the lock only while the holder it names holds it, and the broken holder writes nothing more', async () => {
      const other = await target.open()
      others.push(other)
      const lock = await store.acquireLock('users import')
      const holder = (await other.lockHolder())!
      expect(holder).toEqual(lock.holder)
      expect(await other.breakLock({...holder, since: '2000-01-01T00:00:00.000Z'})).toBe(false)
      expect(await other.lockHolder()).toEqual(lock.holder)

      expect(await other.breakLock(holder)).toBe(true)
      expect(await other.lockHolder()).toBeUndefined()
      await expectMailringError(store.writeTopology(topology), ExitCode.locked, /^Lost the cluster lock/)
      expect((await other.readTopology()).servers).toEqual([])
      expect(await other.breakLock(holder)).toBe(false)

      // Taken again by someone else: a break naming the old holder, or its late release, leaves it alone.
      const next = await other.acquireLock('node add mx13')
      expect(await store.breakLock(holder)).toBe(false)
      await lock.release()
      expect(await store.lockHolder()).toEqual(next.holder)
      await other.writeTopology(topology)
      await next.release()
      expect(await store.lockHolder()).toBeUndefined()
    })

    describe('the move journal', () => {
      beforeEach(() =>
        withUsers([
          ['a@example.com', ['mx01', 'mx02']],
          ['b@example.com', ['mx02', 'mx01']],
        ]),
      )

      it('journals a plan, advances a move only from the state it is in, and switches the copy in one step', async () => {
        expect(
          await store.journalMoves('plan-1', [
            {user: 'a@example.com', position: 1, from: 'mx02', to: 'mx03'},
            {user: 'b@example.com', position: 0, from: 'mx02', to: 'mx03'},
          ]),
        ).toBe(2)
        const [a, b] = await store.openMoves()
        expect(a).toMatchObject({
          user: 'a@example.com',
          position: 1,
          from: 'mx02',
          to: 'mx03',
          state: 'planned',
        })
        expect(a).toMatchObject({plan: 'plan-1', attempts: 0, lastError: null})
        expect(b?.user).toBe('b@example.com')

        // Two runs racing: only the first advances it.
        expect(await store.setMoveState(a!.id, 'planned', 'copying')).toBe(true)
        expect(await store.setMoveState(a!.id, 'planned', 'copying')).toBe(false)
        // A failed step is counted and its error kept.
        expect(await store.setMoveState(a!.id, 'copying', 'copying', 'doveadm sync exited 75')).toBe(true)
        // Not verified yet: the placement stays as it is.
        await expectMailringError(
          store.switchMove(a!.id),
          ExitCode.error,
          /Cannot switch move \d+: it is copying, not verified/,
        )
        expect((await store.getUser('a@example.com'))?.copies).toEqual(['mx01', 'mx02'])

        expect(await store.setMoveState(a!.id, 'copying', 'verified')).toBe(true)
        await store.switchMove(a!.id)
        expect((await store.getUser('a@example.com'))?.copies).toEqual(['mx01', 'mx03'])
        const after = (await store.openMoves()).find((m) => m.id === a!.id)
        expect(after).toMatchObject({state: 'switched', attempts: 1, lastError: 'doveadm sync exited 75'})
        // Switching twice is refused and changes nothing.
        await expectMailringError(store.switchMove(a!.id), ExitCode.error, /it is switched, not verified/)
        expect((await store.getUser('a@example.com'))?.copies).toEqual(['mx01', 'mx03'])
      })

      it('refuses a move that does not match the placement, or a second open move of a user, writing nothing', async () => {
        await expectMailringError(
          store.journalMoves('p', [
            {user: 'a@example.com', position: 0, from: 'mx01', to: 'mx03'},
            {user: 'b@example.com', position: 0, from: 'mx01', to: 'mx03'},
          ]),
          ExitCode.error,
          /Cannot journal the move of b@example.com from mx01 to mx03: its copy 1 is not on mx01/,
        )
        expect(await store.openMoves()).toEqual([])
        await expectMailringError(
          store.journalMoves('p', [{user: 'zed@example.com', position: 0, from: 'mx01', to: 'mx03'}]),
          ExitCode.error,
          /no such user/,
        )
        await expectMailringError(
          store.journalMoves('p', [{user: 'a@example.com', position: 0, from: 'mx01', to: 'mx99'}]),
          ExitCode.error,
          /unknown server mx99/,
        )
        await expectMailringError(
          store.journalMoves('p', [{user: 'a@example.com', position: 0, from: 'mx01', to: 'mx02'}]),
          ExitCode.error,
          /it has a copy on mx02 already/,
        )
        await store.journalMoves('p', [{user: 'a@example.com', position: 0, from: 'mx01', to: 'mx03'}])
        await expectMailringError(
          store.journalMoves('p', [{user: 'a@example.com', position: 1, from: 'mx02', to: 'mx03'}]),
          ExitCode.error,
          /has a move that is not finished/,
        )
      })

      it('switches only a copy still on the server it leaves', async () => {
        await store.journalMoves('p', [{user: 'a@example.com', position: 0, from: 'mx01', to: 'mx03'}])
        const [move] = await store.openMoves()
        await store.setMoveState(move!.id, 'planned', 'verified')
        // Meanwhile the user's placement changed under it (a users sync, an adopt).
        await store.replaceUsers([userBatch([['a@example.com', ['mx02', 'mx01']]])], [])
        await expectMailringError(
          store.switchMove(move!.id),
          ExitCode.error,
          /no longer on the server it leaves/,
        )
        expect((await store.getUser('a@example.com'))?.copies).toEqual(['mx02', 'mx01'])
        expect((await store.openMoves())[0]?.state).toBe('verified')
      })

      it('keeps a server with open moves, and lets it go with its finished moves once empty', async () => {
        await store.journalMoves('p', [{user: 'a@example.com', position: 1, from: 'mx02', to: 'mx03'}])
        const [move] = await store.openMoves()
        const withoutMx03 = {...topology, servers: topology.servers.filter((s) => s.name !== 'mx03')}
        await expectMailringError(
          store.writeTopology(withoutMx03),
          ExitCode.error,
          /Server mx03 is part of moves that are not finished/,
        )
        expect((await store.readTopology()).servers.map((s) => s.name)).toContain('mx03')
        expect(await store.cancelUnswitchedMoves()).toBe(1)
        await store.writeTopology(withoutMx03)
        expect((await store.readTopology()).servers.map((s) => s.name)).not.toContain('mx03')
        expect(await store.setMoveState(move!.id, 'cancelled', 'planned')).toBe(false) // gone with its server
      })

      it('cancels the moves not switched yet, and keeps the switched ones open until they finish', async () => {
        await store.journalMoves('p', [
          {user: 'a@example.com', position: 1, from: 'mx02', to: 'mx03'},
          {user: 'b@example.com', position: 1, from: 'mx01', to: 'mx03'},
        ])
        const [a] = await store.openMoves()
        await store.setMoveState(a!.id, 'planned', 'verified')
        await store.switchMove(a!.id)
        expect(await store.cancelUnswitchedMoves()).toBe(1)
        expect((await store.openMoves()).map((m) => [m.user, m.state])).toEqual([
          ['a@example.com', 'switched'],
        ])
        // A removed user takes its moves along.
        await store.removeUsers(['a@example.com'])
        expect(await store.openMoves()).toEqual([])
      })

      it('adds a copy at its position and drops one, renumbering the positions after it', async () => {
        await store.insertUsers([userBatch([['c@example.com', ['mx01']]])], {skipExisting: false})
        await store.journalMoves('p', [
          {user: 'a@example.com', position: 1, from: null, to: 'mx03'},
          {user: 'b@example.com', position: 0, from: 'mx02', to: null},
        ])
        const [add, drop] = await store.openMoves()
        expect([add, drop].map((m) => [m!.user, m!.position, m!.from, m!.to, m!.state])).toEqual([
          ['a@example.com', 1, null, 'mx03', 'planned'],
          ['b@example.com', 0, 'mx02', null, 'planned'],
        ])
        // Nothing changes in the placement before the switch.
        expect((await store.getUser('a@example.com'))?.copies).toEqual(['mx01', 'mx02'])
        await store.setMoveState(add!.id, 'planned', 'verified')
        await store.setMoveState(drop!.id, 'planned', 'verified')
        await store.switchMove(add!.id)
        await store.switchMove(drop!.id)
        expect((await store.getUser('a@example.com'))?.copies).toEqual(['mx01', 'mx03', 'mx02'])
        expect((await store.getUser('b@example.com'))?.copies).toEqual(['mx01'])
        expect((await store.openMoves()).map((m) => m.state)).toEqual(['switched', 'switched'])
        for (const m of [add!, drop!]) {
          await store.setMoveState(m.id, 'switched', 'caught-up')
          expect(await store.retireMove(m.id, null)).toBe(true)
        }
        // The middle copy dropped: the last one takes its position (a move journaled at position 1 finds it).
        await store.journalMoves('p', [{user: 'a@example.com', position: 1, from: 'mx03', to: null}])
        const [middle] = await store.openMoves()
        await store.setMoveState(middle!.id, 'planned', 'verified')
        await store.switchMove(middle!.id)
        expect((await store.getUser('a@example.com'))?.copies).toEqual(['mx01', 'mx02'])
        await store.setMoveState(middle!.id, 'switched', 'caught-up')
        await store.retireMove(middle!.id, null)
        await store.journalMoves('p', [{user: 'a@example.com', position: 1, from: 'mx02', to: 'mx03'}])
        // A copy added at the front becomes the primary; the others move one further.
        await store.journalMoves('p', [{user: 'c@example.com', position: 0, from: null, to: 'mx02'}])
        const front = (await store.openMoves()).find((m) => m.user === 'c@example.com')!
        await store.setMoveState(front.id, 'planned', 'verified')
        await store.switchMove(front.id)
        expect((await store.getUser('c@example.com'))?.copies).toEqual(['mx02', 'mx01'])
        const usage = new Map((await store.serverUsage()).map((u) => [u.server, u]))
        expect([usage.get('mx01')?.primaries, usage.get('mx02')?.primaries]).toEqual([2, 1]) // a, b / c
      })

      it('refuses a copy added where the user has one, at no position, a last copy dropped, or no server', async () => {
        await store.insertUsers([userBatch([['c@example.com', ['mx01']]])], {skipExisting: false})
        await expectMailringError(
          store.journalMoves('p', [{user: 'b@example.com', position: 0, from: null, to: 'mx01'}]),
          ExitCode.error,
          /Cannot journal the new copy of b@example.com on mx01: it has a copy on mx01 already/,
        )
        await expectMailringError(
          store.journalMoves('p', [{user: 'b@example.com', position: 3, from: null, to: 'mx03'}]),
          ExitCode.error,
          /it has 2 copies: no position 4 for a new one/,
        )
        await expectMailringError(
          store.journalMoves('p', [{user: 'c@example.com', position: 0, from: 'mx01', to: null}]),
          ExitCode.error,
          /Cannot journal the drop of c@example.com's copy on mx01: it would have no copy left/,
        )
        await expectMailringError(
          store.journalMoves('p', [{user: 'c@example.com', position: 0, from: null, to: null}]),
          ExitCode.error,
          /it names no server/,
        )
        expect(await store.openMoves()).toEqual([])
        // A copy that appeared on the target after journaling: the switch refuses, and changes nothing.
        await store.journalMoves('p', [{user: 'c@example.com', position: 1, from: null, to: 'mx02'}])
        const [move] = await store.openMoves()
        await store.replaceUsers([userBatch([['c@example.com', ['mx01', 'mx02']]])], [])
        await store.setMoveState(move!.id, 'planned', 'verified')
        await expectMailringError(
          store.switchMove(move!.id),
          ExitCode.error,
          /has a copy on that server already/,
        )
        expect((await store.getUser('c@example.com'))?.copies).toEqual(['mx01', 'mx02'])
        expect((await store.openMoves())[0]?.state).toBe('verified')
      })

      it('retires only a caught-up move, keeps where its old copy went, and lists it for cleanup by age', async () => {
        await store.journalMoves('p', [
          {user: 'a@example.com', position: 1, from: 'mx02', to: 'mx03'},
          {user: 'b@example.com', position: 1, from: 'mx01', to: 'mx03'},
        ])
        const [a, b] = await store.openMoves()
        expect(await store.retireMove(a!.id, '/var/vmail/.mailring-trash/x/a')).toBe(false)
        await store.setMoveState(a!.id, 'planned', 'caught-up')
        await store.setMoveState(b!.id, 'planned', 'caught-up')
        expect(await store.retireMove(a!.id, '/var/vmail/.mailring-trash/2026-12-03/a@example.com.1')).toBe(
          true,
        )
        expect(await store.retireMove(a!.id, '/elsewhere')).toBe(false)
        expect(await store.retireMove(b!.id, null)).toBe(true) // mx01 held nothing for b
        expect(await store.openMoves()).toEqual([])
        const later = new Date(Date.now() + 60_000).toISOString()
        expect(await store.retiredMoves(new Date(0).toISOString())).toEqual([])
        const retired = await store.retiredMoves(later)
        expect(retired.map((m) => [m.user, m.state, m.trash])).toEqual([
          ['a@example.com', 'retired', '/var/vmail/.mailring-trash/2026-12-03/a@example.com.1'],
        ])
        expect(await store.setMoveState(a!.id, 'retired', 'cleaned')).toBe(true)
        expect(await store.retiredMoves(later)).toEqual([])
      })
    })

    describe("dsync's saved states (schema 7)", () => {
      beforeEach(() =>
        withUsers([
          ['a@example.com', ['mx01', 'mx02']],
          ['b@example.com', ['mx02', 'mx01']],
        ]),
      )
      const pair = (from: string, to: string, state: string) => ({from, to, state})
      /** Moves a@example.com's second copy, through the journal, to the end of the move. */
      const moveSecondCopy = async (from: string, to: string) => {
        await store.journalMoves('p', [{user: 'a@example.com', position: 1, from, to}])
        const [open] = await store.openMoves()
        expect(await store.setMoveState(open!.id, 'planned', 'verified')).toBe(true)
        await store.switchMove(open!.id)
        expect(await store.setMoveState(open!.id, 'switched', 'caught-up')).toBe(true)
        expect(await store.retireMove(open!.id, null)).toBe(true)
      }

      it("keeps the states of the user's last sync only, one per ordered pair of copies", async () => {
        expect(await store.syncStates('a@example.com')).toEqual([])
        expect(
          await store.saveSyncStates('a@example.com', [
            pair('mx02', 'mx01', 's21'),
            pair('mx01', 'mx02', 's12'),
          ]),
        ).toBe(2)
        await store.saveSyncStates('b@example.com', [pair('mx02', 'mx01', 'b21')])
        // The next sync's states replace the user's whole set: mx02 -> mx01 no longer holds.
        expect(await store.saveSyncStates('a@example.com', [pair('mx01', 'mx02', 's12-next')])).toBe(1)
        expect(await store.syncStates('a@example.com')).toEqual([pair('mx01', 'mx02', 's12-next')])
        // A sync that printed none drops them; another user's stay.
        expect(await store.saveSyncStates('a@example.com', [])).toBe(0)
        expect(await store.syncStates('a@example.com')).toEqual([])
        expect(await store.syncStates('b@example.com')).toEqual([pair('mx02', 'mx01', 'b21')])
      })

      it('saves no state for a server that holds no copy of the user, nor for an unknown user', async () => {
        expect(
          await store.saveSyncStates('a@example.com', [
            pair('mx01', 'mx03', 'x'),
            pair('mx01', 'mx02', 's12'),
          ]),
        ).toBe(1)
        expect(await store.saveSyncStates('nobody@example.com', [pair('mx01', 'mx02', 'x')])).toBe(0)
        expect(await store.syncStates('a@example.com')).toEqual([pair('mx01', 'mx02', 's12')])
      })

      it('drops the states of a user whose copy moves, and of a user removed', async () => {
        await store.saveSyncStates('a@example.com', [
          pair('mx01', 'mx02', 'a12'),
          pair('mx02', 'mx01', 'a21'),
        ])
        await store.saveSyncStates('b@example.com', [pair('mx02', 'mx01', 'b21')])
        await moveSecondCopy('mx02', 'mx03')
        // The move's syncs changed the copies: the next sync is full; b's states stay.
        expect(await store.syncStates('a@example.com')).toEqual([])
        expect(await store.syncStates('b@example.com')).toEqual([pair('mx02', 'mx01', 'b21')])
        expect(await store.saveSyncStates('a@example.com', [pair('mx01', 'mx03', 'a13')])).toBe(1)
        expect(await store.syncStates('a@example.com')).toEqual([pair('mx01', 'mx03', 'a13')])
        // Back on mx02: the states it had before it left are gone, not brought back.
        await moveSecondCopy('mx03', 'mx02')
        expect(await store.syncStates('a@example.com')).toEqual([])

        await store.removeUsers(['b@example.com'])
        await withUsers([['b@example.com', ['mx02', 'mx01']]])
        expect(await store.syncStates('b@example.com')).toEqual([])
      })
    })

    describe('the changes down servers missed (schema 8)', () => {
      beforeEach(() =>
        withUsers([
          ['a@example.com', ['mx01', 'mx02']],
          ['b@example.com', ['mx02', 'mx03']],
          ['c@example.com', ['mx03', 'mx01']],
        ]),
      )

      it('lists the users whose copy on a server missed a change, until a sync clears them', async () => {
        expect(await store.recordMissed('a@example.com', ['mx02'], 1_000)).toBe(1)
        expect(await store.recordMissed('b@example.com', ['mx02', 'mx03'], 2_000)).toBe(2)
        // Again: kept once. A server without a copy of the user, or an unknown user: nothing.
        expect(await store.recordMissed('a@example.com', ['mx02'], 3_000)).toBe(0)
        expect(await store.recordMissed('a@example.com', ['mx03'], 3_000)).toBe(0)
        expect(await store.recordMissed('nobody@example.com', ['mx02'], 3_000)).toBe(0)
        expect(await store.missedUsers('mx02')).toEqual(['a@example.com', 'b@example.com'])
        expect(await store.missedUsers('mx03')).toEqual(['b@example.com'])
        expect(await store.missedUsers('mx01')).toEqual([])

        expect(await store.clearMissed('a@example.com', ['mx02', 'mx01'])).toBe(1)
        expect(await store.missedUsers('mx02')).toEqual(['b@example.com'])
        expect(await store.missedUsers('mx03')).toEqual(['b@example.com'])
      })

      it('forgets a removed user, and lists only current copies', async () => {
        await store.recordMissed('a@example.com', ['mx02'], 1_000)
        await store.recordMissed('c@example.com', ['mx01'], 1_000)
        await store.removeUsers(['c@example.com'])
        expect(await store.missedUsers('mx01')).toEqual([])
        // a's copy leaves mx02: what that copy missed no longer counts.
        await store.journalMoves('p', [{user: 'a@example.com', position: 1, from: 'mx02', to: 'mx03'}])
        const [open] = await store.openMoves()
        expect(await store.setMoveState(open!.id, 'planned', 'verified')).toBe(true)
        await store.switchMove(open!.id)
        expect(await store.missedUsers('mx02')).toEqual([])
      })
    })

    describe('the replication queue, server health and hosts (schema 5)', () => {
      const T = 1_000_000
      const timing = (nowMs: number) => ({nowMs, debounceMs: 500, maxDelayMs: 2_000})
      const claim = (owner: string, nowMs: number, more: Partial<ClaimOptions> = {}) =>
        store.claimReplication({owner, nowMs, limit: 10, leaseMs: 60_000, ...more})
      const usersOf = (tasks: ReplicationTask[]) => tasks.map((task) => task.user)

      beforeEach(() =>
        withUsers([
          ['a@example.com', ['mx01', 'mx02']],
          ['b@example.com', ['mx02', 'mx03']],
          ['c@example.com', ['mx03', 'mx02']],
          ['d@example.com', ['mx02', 'mx03']],
        ]),
      )

      it('merges requests per user: most urgent priority, one source or none, due after the debounce but within the max delay', async () => {
        expect(
          await store.enqueueReplication(
            [{user: 'a@example.com', priority: 'mail', source: 'mx01'}],
            timing(T),
          ),
        ).toEqual({queued: 1, unknownUsers: 0})
        expect(await claim('r1', T + 499)).toEqual([])
        // Another change 400 ms later: due 500 ms after it.
        await store.enqueueReplication(
          [{user: 'a@example.com', priority: 'change', source: 'mx01'}],
          timing(T + 400),
        )
        expect(await claim('r1', T + 899)).toEqual([])
        // Changes keep coming: never later than 2 s after the first.
        await store.enqueueReplication(
          [{user: 'a@example.com', priority: 'change', source: 'mx02'}],
          timing(T + 1_800),
        )
        expect(await claim('r1', T + 1_999)).toEqual([])
        expect(await claim('r1', T + 2_000)).toEqual([
          {
            user: 'a@example.com',
            priority: 'mail',
            source: null,
            generation: 3,
            firstQueuedMs: T,
            attempts: 0,
          },
        ])

        // In one call: a user twice (one source kept), unknown users counted and left out.
        expect(
          await store.enqueueReplication(
            [
              {user: 'b@example.com', priority: 'full', source: 'mx03'},
              {user: 'nobody@example.com', priority: 'mail'},
              {user: 'b@example.com', priority: 'change', source: 'mx03'},
              {user: 'nobody@example.com', priority: 'mail'},
              {user: 'c@example.com', priority: 'catch-up', source: 'mx99'},
              {user: 'd@example.com', priority: 'full', source: 'mx02'},
              {user: 'd@example.com', priority: 'full', source: 'mx03'},
            ],
            timing(T),
          ),
        ).toEqual({queued: 3, unknownUsers: 2})
        expect(await claim('r1', T + 500)).toEqual([
          {
            user: 'b@example.com',
            priority: 'change',
            source: 'mx03',
            generation: 2,
            firstQueuedMs: T,
            attempts: 0,
          },
          {
            user: 'c@example.com',
            priority: 'catch-up',
            source: null,
            generation: 1,
            firstQueuedMs: T,
            attempts: 0,
          },
          {
            user: 'd@example.com',
            priority: 'full',
            source: null,
            generation: 2,
            firstQueuedMs: T,
            attempts: 0,
          },
        ])
      })

      it('hands out the most urgent first, then the oldest due, up to the limit', async () => {
        await store.enqueueReplication(
          [
            {user: 'a@example.com', priority: 'full'},
            {user: 'b@example.com', priority: 'change'},
          ],
          timing(T),
        )
        await store.enqueueReplication(
          [
            {user: 'c@example.com', priority: 'catch-up'},
            {user: 'd@example.com', priority: 'change'},
          ],
          timing(T - 100),
        )
        await store.enqueueReplication([{user: 'a@example.com', priority: 'mail'}], timing(T + 1))
        expect(usersOf(await claim('r1', T + 600, {limit: 3}))).toEqual([
          'a@example.com',
          'd@example.com',
          'b@example.com',
        ])
        expect(usersOf(await claim('r2', T + 600))).toEqual(['c@example.com'])
        expect(await claim('r2', T + 600)).toEqual([])
      })

      it('syncs again a user whose request came during the sync (generation)', async () => {
        await store.enqueueReplication([{user: 'a@example.com', priority: 'mail'}], timing(T))
        const [task] = await claim('r1', T + 500)
        expect(task).toMatchObject({user: 'a@example.com', generation: 1})
        await store.enqueueReplication([{user: 'a@example.com', priority: 'change'}], timing(T + 600))
        // Held: nobody else takes it meanwhile.
        expect(await claim('r2', T + 5_000)).toEqual([])
        expect(await store.finishReplication('r1', task!, {ok: true})).toBe(true)
        const [again] = await claim('r2', T + 700)
        expect(again).toMatchObject({user: 'a@example.com', generation: 2, priority: 'mail', attempts: 0})
        expect(await store.finishReplication('r2', again!, {ok: true})).toBe(true)
        expect(await claim('r2', T + 10_000)).toEqual([])
        expect((await store.replicationStats(T + 10_000)).byPriority.every((p) => p.waiting === 0)).toBe(true)
      })

      it('lets another replicator take an entry whose lease expired; the first may then neither finish nor renew it', async () => {
        await store.enqueueReplication([{user: 'a@example.com', priority: 'mail'}], timing(T))
        const [task] = await claim('r1', T + 500, {leaseMs: 1_000})
        expect(await store.renewReplication('r1', ['a@example.com', 'b@example.com'], T + 2_000)).toEqual([
          'a@example.com',
        ])
        expect(await claim('r2', T + 1_999)).toEqual([])
        const [taken] = await claim('r2', T + 2_000, {leaseMs: 1_000})
        expect(taken).toMatchObject({user: 'a@example.com', generation: 1})
        expect(await store.renewReplication('r1', ['a@example.com'], T + 9_000)).toEqual([])
        expect(await store.finishReplication('r1', task!, {ok: true})).toBe(false)
        expect(
          await store.finishReplication('r1', task!, {ok: false, error: 'x', retryAtMs: T, server: 'mx01'}),
        ).toBe(false)
        expect((await store.serverHealth()).find((h) => h.server === 'mx01')?.syncFailures).toBe(0)
        expect(await store.finishReplication('r2', taken!, {ok: true})).toBe(true)
        expect(await store.finishReplication('r2', taken!, {ok: true})).toBe(false)
      })

      it('leaves out users with an open move, and users with a copy on a server to avoid', async () => {
        await store.enqueueReplication(
          ['a', 'b', 'c', 'd'].map((u) => ({user: `${u}@example.com`, priority: 'mail' as const})),
          timing(T),
        )
        await store.journalMoves('p', [{user: 'b@example.com', position: 1, from: 'mx03', to: 'mx01'}])
        expect(usersOf(await claim('r1', T + 500, {avoidServers: ['mx01', 'mx99']}))).toEqual([
          'c@example.com',
          'd@example.com',
        ])
        // a's copy on mx01 is avoided no more; b's move is still open.
        expect(usersOf(await claim('r1', T + 500))).toEqual(['a@example.com'])
        expect(await store.cancelUnswitchedMoves()).toBe(1)
        expect(usersOf(await claim('r1', T + 500))).toEqual(['b@example.com'])
      })

      it('backs a failed task off until its retry time and counts the failure against the server', async () => {
        const {createdAt} = await store.meta()
        await store.enqueueReplication([{user: 'a@example.com', priority: 'mail'}], timing(T))
        const [task] = await claim('r1', T + 500)
        expect(
          await store.finishReplication('r1', task!, {
            ok: false,
            error: 'doveadm sync: connection refused',
            retryAtMs: T + 5_000,
            server: 'mx02',
          }),
        ).toBe(true)
        expect(await claim('r1', T + 4_999)).toEqual([])
        expect((await store.replicationStats(T + 4_999)).retrying).toBe(1)
        const [retry] = await claim('r1', T + 5_000)
        expect(retry).toMatchObject({user: 'a@example.com', attempts: 1, generation: 1})
        await store.finishReplication('r1', retry!, {
          ok: false,
          error: 'timed out',
          retryAtMs: T + 6_000,
          server: 'mx02',
        })
        expect((await store.serverHealth()).find((h) => h.server === 'mx02')).toEqual({
          server: 'mx02',
          health: 'up',
          since: createdAt,
          detail: '',
          syncFailures: 2,
          lastSyncError: 'timed out',
        })
        // A failure that names no server counts against none.
        const [third] = await claim('r1', T + 6_000)
        expect(third?.attempts).toBe(2)
        await store.finishReplication('r1', third!, {ok: false, error: 'odd', retryAtMs: T + 7_000})
        expect((await store.serverHealth()).map((h) => h.syncFailures)).toEqual([0, 2, 0])
        // Back up again after being down: failures cleared.
        expect(await store.setServerHealth('mx02', 'up', 'down', 'doveadm: connection refused')).toBe(true)
        expect(await store.setServerHealth('mx02', 'down', 'returning', '')).toBe(true)
        expect((await store.serverHealth())[1]?.syncFailures).toBe(2)
        expect(await store.setServerHealth('mx02', 'returning', 'up', '')).toBe(true)
        expect((await store.serverHealth())[1]).toMatchObject({
          health: 'up',
          syncFailures: 0,
          lastSyncError: null,
        })
        // Success clears the attempts.
        const [fourth] = await claim('r1', T + 7_000)
        await store.enqueueReplication([{user: 'a@example.com', priority: 'change'}], timing(T + 7_001))
        await store.finishReplication('r1', fourth!, {ok: true})
        expect((await claim('r1', T + 7_002))[0]).toMatchObject({attempts: 0, generation: 2})
      })

      it('gives back every task of a replicator that stops, due at once', async () => {
        await store.enqueueReplication(
          [
            {user: 'a@example.com', priority: 'mail'},
            {user: 'b@example.com', priority: 'full'},
          ],
          timing(T),
        )
        expect(usersOf(await claim('r1', T + 500))).toEqual(['a@example.com', 'b@example.com'])
        // A change during the sync would make it due later; released, it is due at once.
        await store.enqueueReplication([{user: 'a@example.com', priority: 'mail'}], timing(T + 600))
        expect(await store.releaseReplication('r2')).toBe(0)
        expect(await store.releaseReplication('r1')).toBe(2)
        expect(usersOf(await claim('r2', T + 601))).toEqual(['a@example.com', 'b@example.com'])
        expect(
          await store.finishReplication(
            'r1',
            {
              user: 'a@example.com',
              priority: 'mail',
              source: null,
              generation: 2,
              firstQueuedMs: T,
              attempts: 0,
            },
            {ok: true},
          ),
        ).toBe(false)
      })

      it('counts waiting, due, in-flight and retrying entries and the age of the oldest change', async () => {
        expect(await store.replicationStats(T)).toEqual({
          byPriority: [
            {priority: 'mail', waiting: 0, due: 0, oldestQueuedMs: null},
            {priority: 'change', waiting: 0, due: 0, oldestQueuedMs: null},
            {priority: 'catch-up', waiting: 0, due: 0, oldestQueuedMs: null},
            {priority: 'full', waiting: 0, due: 0, oldestQueuedMs: null},
          ],
          inFlight: 0,
          retrying: 0,
        })
        await store.enqueueReplication(
          [
            {user: 'a@example.com', priority: 'mail'},
            {user: 'b@example.com', priority: 'mail'},
            {user: 'c@example.com', priority: 'full'},
          ],
          timing(T),
        )
        await store.enqueueReplication([{user: 'd@example.com', priority: 'mail'}], timing(T + 1_000))
        const [a] = await claim('r1', T + 500, {limit: 1})
        await store.finishReplication('r1', a!, {ok: false, error: 'x', retryAtMs: T + 9_000})
        await claim('r1', T + 500, {limit: 1}) // b, in flight
        expect(await store.replicationStats(T + 1_200)).toEqual({
          byPriority: [
            {priority: 'mail', waiting: 3, due: 0, oldestQueuedMs: 1_200},
            {priority: 'change', waiting: 0, due: 0, oldestQueuedMs: null},
            {priority: 'catch-up', waiting: 0, due: 0, oldestQueuedMs: null},
            {priority: 'full', waiting: 1, due: 1, oldestQueuedMs: 1_200},
          ],
          inFlight: 1,
          retrying: 1,
        })
        expect((await store.replicationStats(T + 1_500)).byPriority[0]).toMatchObject({waiting: 3, due: 1})
      })

      it('treats an empty enqueue or renewal as nothing to write, even for a holder whose lock was broken', async () => {
        const other = await target.open()
        others.push(other)
        const lock = await store.acquireLock('replicator run')
        expect(await other.breakLock(lock.holder)).toBe(true)
        expect(await store.enqueueReplication([], timing(T))).toEqual({queued: 0, unknownUsers: 0})
        expect(await store.renewReplication('r1', [], T + 60_000)).toEqual([])
        // A call that writes something is refused: the broken holder writes nothing more.
        await expectMailringError(
          store.enqueueReplication([{user: 'a@example.com', priority: 'mail'}], timing(T)),
          ExitCode.locked,
          /^Lost the cluster lock/,
        )
        expect((await other.replicationStats(T + 5_000)).byPriority.every((p) => p.waiting === 0)).toBe(true)
        await lock.release()
      })

      it('keeps named markers', async () => {
        expect(await store.replicationMarker('full-sync-cursor')).toBeUndefined()
        await store.setReplicationMarker('full-sync-cursor', 'b@example.com')
        await store.setReplicationMarker('full-sync-cursor', 'c@example.com')
        await store.setReplicationMarker('other', '')
        expect(await store.replicationMarker('full-sync-cursor')).toBe('c@example.com')
        expect(await store.replicationMarker('other')).toBe('')
      })

      it('reads every server as up until probed, and sets health only from the health it expects', async () => {
        const {createdAt} = await store.meta()
        expect(await store.serverHealth()).toEqual(
          ['mx01', 'mx02', 'mx03'].map((server) => ({
            server,
            health: 'up',
            since: createdAt,
            detail: '',
            syncFailures: 0,
            lastSyncError: null,
          })),
        )
        expect(await store.setServerHealth('mx01', 'down', 'up', '')).toBe(false)
        const before = new Date().toISOString()
        expect(
          await store.setServerHealth('mx01', 'up', 'down', 'imap: connection refused\nlmtp: timeout'),
        ).toBe(true)
        // A second replicator that saw it up too: refused.
        expect(await store.setServerHealth('mx01', 'up', 'down', 'late')).toBe(false)
        const [mx01] = await store.serverHealth()
        expect(mx01).toMatchObject({health: 'down', detail: 'imap: connection refused lmtp: timeout'})
        expect(mx01!.since >= before).toBe(true)
        // Same health, new detail: since stays.
        expect(await store.setServerHealth('mx01', 'down', 'down', 'imap: timeout')).toBe(true)
        expect((await store.serverHealth())[0]).toMatchObject({
          health: 'down',
          since: mx01!.since,
          detail: 'imap: timeout',
        })
        expect(await store.setServerHealth('mx99', 'up', 'down', '')).toBe(false)
        expect((await store.serverHealth()).map((h) => h.health)).toEqual(['down', 'up', 'up'])
      })

      it('keeps proxy and director hosts, and refuses a host named as a server', async () => {
        expect(await store.listHosts()).toEqual([])
        await store.putHost({name: 'proxy2', address: '192.0.2.22', role: 'proxy', dovecotVersion: null})
        await store.putHost({
          name: 'director1',
          address: '192.0.2.30',
          role: 'director',
          dovecotVersion: '2.3.21',
        })
        await store.putHost({name: 'proxy2', address: '192.0.2.23', role: 'proxy', dovecotVersion: '2.4.1'})
        expect(await store.listHosts()).toEqual([
          {name: 'director1', address: '192.0.2.30', role: 'director', dovecotVersion: '2.3.21'},
          {name: 'proxy2', address: '192.0.2.23', role: 'proxy', dovecotVersion: '2.4.1'},
        ])
        await expectMailringError(
          store.putHost({name: 'mx02', address: '192.0.2.9', role: 'proxy', dovecotVersion: null}),
          ExitCode.error,
          /Cannot add host mx02: a mail server has that name already/,
        )
        // Nor may a new server take a host's name.
        await expectMailringError(
          store.writeTopology({
            ...topology,
            servers: [
              ...topology.servers,
              {name: 'proxy2', address: '192.0.2.23', weight: 1, state: 'active'},
            ],
          }),
          ExitCode.error,
          /Cannot add server proxy2: a proxy or director host has that name already/,
        )
        expect((await store.readTopology()).servers.map((s) => s.name)).toEqual(['mx01', 'mx02', 'mx03'])
        expect(await store.removeHost('proxy2')).toBe(true)
        expect(await store.removeHost('proxy2')).toBe(false)
        expect((await store.listHosts()).map((h) => h.name)).toEqual(['director1'])
      })

      it('drops the entry of a removed user, and the health of a removed server', async () => {
        await store.enqueueReplication(
          [
            {user: 'a@example.com', priority: 'mail'},
            {user: 'd@example.com', priority: 'mail', source: 'mx01'},
          ],
          timing(T),
        )
        await store.removeUsers(['a@example.com'])
        expect((await store.replicationStats(T)).byPriority[0]?.waiting).toBe(1)
        await store.setServerHealth('mx01', 'up', 'down', '')
        await store.removeUsers(['b@example.com', 'c@example.com'])
        await store.replaceUsers([userBatch([['d@example.com', ['mx02', 'mx03']]])], [])
        await store.writeTopology({
          ...topology,
          servers: topology.servers.filter((s) => s.name !== 'mx01'),
          domains: [],
        })
        expect((await store.serverHealth()).map((h) => [h.server, h.health])).toEqual([
          ['mx02', 'up'],
          ['mx03', 'up'],
        ])
        expect(await claim('r1', T + 500)).toEqual([
          {
            user: 'd@example.com',
            priority: 'mail',
            source: null,
            generation: 1,
            firstQueuedMs: T,
            attempts: 0,
          },
        ])
      })
    })
  })
}
