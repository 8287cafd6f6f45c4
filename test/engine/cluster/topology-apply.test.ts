/** `topology apply` (engine/cluster/topology-apply.ts) on a SQLite store in a temp folder. */
import * as path from 'node:path'

import {afterEach, beforeEach, describe, expect, it} from 'vitest'

import {PLACEMENT_ALGORITHM_VERSION, type Server, type Topology} from '../../../src/core/topology.js'
import {addServer, addUsers} from '../../../src/engine/cluster/cluster.js'
import {applyTopology, previewTopology} from '../../../src/engine/cluster/topology-apply.js'
import {SqliteStore} from '../../../src/store/sqlite.js'
import {makeTempDir, removeDir} from '../../support/proc.js'
import {makeServer} from '../../support/topologies.js'

let dir: string
let store: SqliteStore

const topology = (servers: Server[], extra: Partial<Topology> = {}): Topology => ({
  algorithm: PLACEMENT_ALGORITHM_VERSION,
  copies: 2,
  servers,
  domains: [],
  ...extra,
})

const USERS = Array.from({length: 60}, (_, i) => `user${i}@example.com`)

beforeEach(async () => {
  dir = makeTempDir('mr-topology')
  store = (await SqliteStore.init(path.join(dir, 'cluster.db'), {copies: 2})).store
  for (const name of ['mx01', 'mx02', 'mx03']) await addServer(store, makeServer(name))
  await addUsers(store, USERS)
})

afterEach(async () => {
  await store.close()
  removeDir(dir)
})

describe('topology apply', () => {
  it('previews a change with its diff and the moves it would cause, writing nothing', async () => {
    const before = await store.readTopology()
    const proposed = topology(
      [makeServer('mx01'), makeServer('mx02', {weight: 2}), makeServer('mx03'), makeServer('mx04')],
      {
        domains: [{domain: 'example.org', copies: 3}],
      },
    )
    const preview = await previewTopology(store, proposed)
    expect(preview.changed).toBe(true)
    expect(preview.diff).toEqual({
      copies: null,
      servers: {added: ['mx04'], removed: [], changed: [{name: 'mx02', fields: ['weight 1 -> 2']}]},
      domains: {added: ['example.org'], removed: [], changed: []},
      keptDraining: [],
    })
    expect(preview.outcome.plan.summary.moves).toBeGreaterThan(0)
    expect(await store.readTopology()).toEqual(before)
  })

  it('writes the topology it previewed', async () => {
    const proposed = topology(
      [makeServer('mx01'), makeServer('mx02'), makeServer('mx03'), makeServer('mx04')],
      {copies: 3},
    )
    const applied = await applyTopology(store, proposed)
    expect(applied.diff.copies).toEqual({from: 2, to: 3})
    expect(await store.readTopology()).toEqual(applied.topology)
    expect((await store.readTopology()).copies).toBe(3)
  })

  it('keeps a left-out server that holds copies, draining, and deletes an empty one', async () => {
    await addServer(store, makeServer('mx04'))
    const applied = await applyTopology(
      store,
      topology([makeServer('mx01'), makeServer('mx02'), makeServer('mx04')]),
    )
    expect(applied.diff.keptDraining).toEqual(['mx03'])
    expect(applied.diff.servers.removed).toEqual([])
    expect(applied.diff.servers.changed).toEqual([{name: 'mx03', fields: ['state active -> draining']}])
    const servers = (await store.readTopology()).servers
    expect(servers.find((s) => s.name === 'mx03')?.state).toBe('draining')
    // mx04 holds nothing yet (users were placed before it came): left out, it is gone.
    const again = await applyTopology(
      store,
      topology([makeServer('mx01'), makeServer('mx02'), makeServer('mx03')]),
    )
    expect(again.diff.servers.removed).toEqual(['mx04'])
    expect((await store.readTopology()).servers.map((s) => s.name)).toEqual(['mx01', 'mx02', 'mx03'])
  })

  it('changes nothing when the file says what the store has', async () => {
    const same = await applyTopology(store, await store.readTopology())
    expect(same.changed).toBe(false)
    expect(same.outcome.plan.summary.moves).toBe(0)
  })

  it('refuses a topology that fails validation, and another placement algorithm, writing nothing', async () => {
    const before = await store.readTopology()
    await expect(
      applyTopology(
        store,
        topology([makeServer('mx01'), makeServer('mx02')], {domains: [{domain: 'x.org', servers: ['mx09']}]}),
      ),
    ).rejects.toThrow(/mx09/)
    await expect(
      applyTopology(store, {...before, algorithm: PLACEMENT_ALGORITHM_VERSION + 1}),
    ).rejects.toThrow(
      `The topology asks for placement algorithm ${PLACEMENT_ALGORITHM_VERSION + 1}, the store uses ${PLACEMENT_ALGORITHM_VERSION}: changing the algorithm is not supported.`,
    )
    expect(await store.readTopology()).toEqual(before)
  })
})
