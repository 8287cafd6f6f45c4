import {mkdtempSync, rmSync, writeFileSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'

import {afterEach, beforeEach, describe, expect, it} from 'vitest'

import {PLACEMENT_ALGORITHM_VERSION, type Topology} from '../../src/core/topology.js'
import {adoptPlacements, csvSource, parsePairs} from '../../src/engine/adopt.js'
import {SqliteStore} from '../../src/store/sqlite.js'

const topology: Topology = {
  algorithm: PLACEMENT_ALGORITHM_VERSION,
  copies: 2,
  servers: ['mx01', 'mx02', 'mx03', 'mx04'].map((name, i) => ({
    name,
    address: `10.0.0.${i + 1}`,
    weight: 1,
    state: 'active' as const,
  })),
  domains: [],
}

describe('adopt', () => {
  let dir: string
  let store: SqliteStore
  beforeEach(async () => {
    dir = mkdtempSync(join(tmpdir(), 'mailring-adopt-'))
    store = (await SqliteStore.init(join(dir, 'cluster.db'))).store
    await store.writeTopology(topology)
  })
  afterEach(async () => {
    await store.close()
    rmSync(dir, {recursive: true, force: true})
  })

  it('records copies from a CSV, by server name or address, reporting unknown servers and bad rows', async () => {
    const csv = join(dir, 'placements.csv')
    writeFileSync(
      csv,
      '# exported from the old setup\nuser,server,server\nAlice@Example.com,mx02,10.0.0.3\nbob@example.com,MX04\ncarol@example.com,mx01,mail9\nnot-an-address,mx01\ndave@example.com,,\n',
    )
    const dry = await adoptPlacements(store, csvSource(csv), {dryRun: true})
    expect(dry).toMatchObject({
      recorded: 2,
      users: [
        {user: 'alice@example.com', copies: ['mx02', 'mx03']},
        {user: 'bob@example.com', copies: ['mx04']},
      ],
      unknownServers: [{user: 'carol@example.com', where: `${csv}:5`, reason: 'unknown server "mail9"'}],
      invalidCount: 1,
      noCopies: 1,
    })
    expect(await store.countUsers()).toBe(0)

    await store.insertUsers(
      [
        {
          users: ['bob@example.com'],
          domains: ['example.com'],
          copyStart: Int32Array.of(0, 2),
          copyServers: Int32Array.of(0, 1),
          servers: ['mx01', 'mx02'],
        },
      ],
      {skipExisting: false},
    )
    const done = await adoptPlacements(store, csvSource(csv), {dryRun: false})
    expect(done).toMatchObject({recorded: 2, created: 1, replaced: 1})
    expect((await store.getUser('bob@example.com'))?.copies).toEqual(['mx04'])
    expect((await store.getUser('alice@example.com'))?.copies).toEqual(['mx02', 'mx03'])
  })

  it('completes a pair layout: every user of A is also on B, and of B on A', async () => {
    const csv = join(dir, 'single.csv')
    writeFileSync(csv, 'a@example.com,mx01\nb@example.com,10.0.0.2\nc@example.com,mx03\n')
    const pairs = parsePairs('mx01:mx02, 10.0.0.3:mx04', topology)
    expect(pairs).toEqual([
      ['mx01', 'mx02'],
      ['mx03', 'mx04'],
    ])
    const result = await adoptPlacements(store, csvSource(csv), {dryRun: false, pairs})
    expect(result.users).toEqual([
      {user: 'a@example.com', copies: ['mx01', 'mx02']},
      {user: 'b@example.com', copies: ['mx02', 'mx01']},
      {user: 'c@example.com', copies: ['mx03', 'mx04']},
    ])
    expect(() => parsePairs('mx01:mx09', topology)).toThrow('--pairs: unknown server "mx09" in "mx01:mx09".')
    expect(() => parsePairs('mx01:mx02,mx02:mx03', topology)).toThrow(/mx02 is in more than one pair/)
  })
})
