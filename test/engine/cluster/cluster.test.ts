/** The node, domain and user operations (engine/cluster/cluster.ts) on a SQLite store in a temp folder. */
import * as path from 'node:path'

import {afterEach, beforeEach, describe, expect, it} from 'vitest'

import {Placement} from '../../../src/core/placement.js'
import {
  addServer,
  addUsers,
  listServers,
  pinDomain,
  removeServer,
  removeUsers,
  setDomainCopies,
  setServer,
  showUser,
  unpinDomain,
} from '../../../src/engine/cluster/cluster.js'
import {SqliteStore} from '../../../src/store/sqlite.js'
import {makeTempDir, removeDir} from '../../support/proc.js'
import {makeServer} from '../../support/topologies.js'

let dir: string
let store: SqliteStore

async function threeServers(): Promise<void> {
  for (const name of ['mx01', 'mx02', 'mx03']) await addServer(store, makeServer(name))
}

beforeEach(async () => {
  dir = makeTempDir('mr-cluster')
  store = (await SqliteStore.init(path.join(dir, 'cluster.db'), {copies: 2})).store
})

afterEach(async () => {
  await store.close()
  removeDir(dir)
})

describe('servers', () => {
  it('adds servers one by one while the cluster has no users, fewer than its copies at first', async () => {
    const first = await addServer(store, makeServer('mx01'))
    expect(first.servers.map((s) => s.name)).toEqual(['mx01'])
    await addServer(store, makeServer('mx02', {zone: 'b', weight: 2}))
    expect((await store.readTopology()).servers).toEqual([
      makeServer('mx01'),
      makeServer('mx02', {zone: 'b', weight: 2}),
    ])
  })

  it('refuses a second server of the same name or address, and an unknown one to change', async () => {
    await addServer(store, makeServer('mx01'))
    await expect(addServer(store, makeServer('MX01', {address: 'other'}))).rejects.toThrow(
      'Server MX01 exists already: change it with `mailring node set`.',
    )
    await expect(addServer(store, makeServer('mx02', {address: 'MX01.example.net'}))).rejects.toThrow(
      'Address MX01.example.net belongs to server mx01 already.',
    )
    await expect(setServer(store, 'mx09', {weight: 2})).rejects.toThrow(
      'Unknown server mx09 (servers: mx01).',
    )
  })

  it('changes a server and takes its zone away with an empty one', async () => {
    await addServer(store, makeServer('mx01', {zone: 'a'}))
    expect(await setServer(store, 'mx01', {weight: 3, zone: ''})).toEqual(makeServer('mx01', {weight: 3}))
  })

  it('refuses more copies for a domain than there are servers, changing nothing', async () => {
    await threeServers()
    await addUsers(store, ['alice@example.com'])
    await expect(setDomainCopies(store, 'example.com', 4)).rejects.toThrow(/copies/)
    expect((await store.readTopology()).domains).toEqual([])
  })

  it('lists each server with the copies it holds and how many are primaries', async () => {
    await threeServers()
    const users = await addUsers(store, ['a@example.com', 'b@example.com', 'c@example.com', 'd@example.com'])
    const listed = await listServers(store)
    expect(listed.map((s) => s.name)).toEqual(['mx01', 'mx02', 'mx03'])
    for (const server of listed) {
      expect(server.copies).toBe(users.filter((u) => u.copies.includes(server.name)).length)
      expect(server.primaries).toBe(users.filter((u) => u.copies[0] === server.name).length)
    }
    expect(listed.reduce((n, s) => n + s.copies, 0)).toBe(8)
    expect(listed.reduce((n, s) => n + s.primaries, 0)).toBe(4)
  })

  it('deletes an empty server, and sets one that holds copies draining instead', async () => {
    await threeServers()
    await addServer(store, makeServer('mx04'))
    const [alice] = await addUsers(store, ['alice@example.com'])
    const holder = alice!.copies[0]!
    const empty = ['mx01', 'mx02', 'mx03', 'mx04'].find((s) => !alice!.copies.includes(s))!
    expect(await removeServer(store, empty)).toEqual({server: empty, removed: true, copiesLeft: 0})
    expect(await removeServer(store, holder)).toEqual({server: holder, removed: false, copiesLeft: 1})
    const servers = (await store.readTopology()).servers
    expect(servers.map((s) => s.name)).not.toContain(empty)
    expect(servers.find((s) => s.name === holder)?.state).toBe('draining')
  })

  it('refuses to remove a server a domain is pinned to', async () => {
    await threeServers()
    await pinDomain(store, 'example.com', ['mx01', 'mx02'])
    await expect(removeServer(store, 'mx02')).rejects.toThrow(
      'Server mx02 is pinned by example.com: change the pin first (mailring domain pin/unpin).',
    )
  })
})

describe('domains', () => {
  beforeEach(threeServers)

  it('pins a domain (normalised) and unpins it; a policy that sets nothing is dropped', async () => {
    expect(await pinDomain(store, 'Example.COM', ['mx02', 'mx03'])).toEqual({
      domain: 'example.com',
      servers: ['mx02', 'mx03'],
    })
    expect(await unpinDomain(store, 'example.com')).toBeUndefined()
    expect((await store.readTopology()).domains).toEqual([])
    await expect(unpinDomain(store, 'example.com')).rejects.toThrow('Domain example.com is not pinned.')
  })

  it('refuses a pin naming a server twice or one that does not exist', async () => {
    await expect(pinDomain(store, 'example.com', ['mx01', 'mx01'])).rejects.toThrow(
      'A server is listed twice in the pin.',
    )
    await expect(pinDomain(store, 'example.com', ['mx07'])).rejects.toThrow('Unknown server mx07')
  })

  it("sets a domain's copy count beside its pin, and returns it to the default", async () => {
    await pinDomain(store, 'example.com', ['mx01', 'mx02', 'mx03'])
    expect(await setDomainCopies(store, 'example.com', 3)).toEqual({
      domain: 'example.com',
      servers: ['mx01', 'mx02', 'mx03'],
      copies: 3,
    })
    expect(await setDomainCopies(store, 'example.com', undefined)).toEqual({
      domain: 'example.com',
      servers: ['mx01', 'mx02', 'mx03'],
    })
  })

  it('places the users of a pinned domain on its servers only', async () => {
    await addServer(store, makeServer('mx04'))
    await pinDomain(store, 'pinned.example', ['mx03', 'mx04'])
    const added = await addUsers(store, ['a@pinned.example', 'b@pinned.example', 'c@pinned.example'])
    for (const user of added) expect([...user.copies].sort()).toEqual(['mx03', 'mx04'])
  })
})

describe('users', () => {
  beforeEach(threeServers)

  it('adds users where the ring puts them, normalised', async () => {
    const added = await addUsers(store, ['Alice@Example.COM', 'bob@example.org'])
    const placement = new Placement(await store.readTopology())
    expect(added).toEqual([
      {user: 'alice@example.com', copies: placement.serversFor('alice@example.com')},
      {user: 'bob@example.org', copies: placement.serversFor('bob@example.org')},
    ])
    expect((await store.getUser('alice@example.com'))?.copies).toEqual(added[0]!.copies)
  })

  it('adds all or none: a user given twice or existing already adds nobody', async () => {
    await addUsers(store, ['alice@example.com'])
    await expect(addUsers(store, ['bob@example.com', 'BOB@example.com'])).rejects.toThrow(
      'bob@example.com is given twice.',
    )
    await expect(addUsers(store, ['carol@example.com', 'alice@example.com'])).rejects.toThrow(
      'alice@example.com exists already; nothing added.',
    )
    expect(await store.countUsers()).toBe(1)
  })

  it('refuses to place users before the cluster has servers', async () => {
    const empty = (await SqliteStore.init(path.join(dir, 'empty.db'))).store
    try {
      await expect(addUsers(empty, ['alice@example.com'])).rejects.toThrow(
        'The cluster has no servers yet: add them first (mailring node add, or mailring topology apply -f FILE).',
      )
    } finally {
      await empty.close()
    }
  })

  it('removes all or none: an unknown user removes nobody', async () => {
    await addUsers(store, ['alice@example.com', 'bob@example.com'])
    await expect(removeUsers(store, ['alice@example.com', 'nobody@example.com'])).rejects.toThrow(
      'Unknown user: nobody@example.com; nothing removed.',
    )
    expect(await store.countUsers()).toBe(2)
    expect(await removeUsers(store, ['Alice@example.com'])).toEqual(['alice@example.com'])
    expect(await store.countUsers()).toBe(1)
  })

  it("shows a user's target, current copies and the moves a rebalance would make", async () => {
    const [alice] = await addUsers(store, ['alice@example.com'])
    expect(await showUser(store, 'ALICE@example.com')).toEqual({
      user: 'alice@example.com',
      domain: 'example.com',
      target: alice!.copies,
      current: alice!.copies,
      pendingMoves: [],
    })
    // Draining a server that holds a copy: the copy has to move to the server that takes its place.
    const leaving = alice!.copies[0]!
    await setServer(store, leaving, {state: 'draining'})
    const shown = await showUser(store, 'alice@example.com')
    const arriving = ['mx01', 'mx02', 'mx03'].find((s) => !alice!.copies.includes(s))!
    expect(shown.current).toEqual(alice!.copies)
    expect(shown.target).not.toContain(leaving)
    expect(shown.pendingMoves).toEqual([{user: 'alice@example.com', from: leaving, to: arriving}])
    await expect(showUser(store, 'nobody@example.com')).rejects.toThrow('Unknown user nobody@example.com.')
  })
})
