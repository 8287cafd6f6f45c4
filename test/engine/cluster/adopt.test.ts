import {mkdtempSync, rmSync, writeFileSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'

import {afterEach, beforeEach, describe, expect, it} from 'vitest'

import {PLACEMENT_ALGORITHM_VERSION, type Topology} from '../../../src/core/topology.js'
import {adoptPlacements, csvSource, parsePairs} from '../../../src/engine/cluster/adopt.js'
import {SqliteStore} from '../../../src/store/sqlite.js'

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

  it('records copies from a CSV, by server name or address, and marks the users it creates', async () => {
    const csv = join(dir, 'placements.csv')
    writeFileSync(
      csv,
      '# exported from the old setup\nuser,server,server\nAlice@Example.com,mx02,10.0.0.3\nbob@example.com,MX04\n',
    )
    const dry = await adoptPlacements(store, csvSource(csv), {dryRun: true, skipInvalid: false})
    expect(dry).toMatchObject({
      recorded: 2,
      created: 2,
      replaced: 0,
      users: [
        {user: 'alice@example.com', copies: ['mx02', 'mx03'], new: true},
        {user: 'bob@example.com', copies: ['mx04'], new: true},
      ],
      problems: [],
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
    const again = await adoptPlacements(store, csvSource(csv), {dryRun: true, skipInvalid: false})
    expect(again).toMatchObject({created: 1, replaced: 1})
    expect(again.users.map((u) => u.new)).toEqual([true, false])
    const done = await adoptPlacements(store, csvSource(csv), {dryRun: false, skipInvalid: false})
    expect(done).toMatchObject({recorded: 2, created: 1, replaced: 1})
    expect((await store.getUser('bob@example.com'))?.copies).toEqual(['mx04'])
    expect((await store.getUser('alice@example.com'))?.copies).toEqual(['mx02', 'mx03'])
  })

  it('records nothing when a row cannot be recorded, listing each by line, unless told to skip them', async () => {
    const csv = join(dir, 'bad.csv')
    writeFileSync(
      csv,
      'alice@example.com,mx01,mx02\ncarol@example.com,mx01,mail9\nnot-an-address,mx01\ndave@example.com,,\nALICE@example.com,mx03\nerin@example.com,mx01 mx02\n',
    )
    const refused = await adoptPlacements(store, csvSource(csv), {dryRun: false, skipInvalid: false}).catch(
      (error: unknown) => error as Error,
    )
    expect((refused as Error).message.split('\n')).toEqual([
      `${csv}:2: carol@example.com: unknown server "mail9" (mailring node list shows the servers)`,
      `${csv}:3: "not-an-address" is not an address of the form user@domain`,
      `${csv}:4: dave@example.com names no server`,
      `${csv}:5: alice@example.com is a duplicate of line 1`,
      `${csv}:6: erin@example.com: "mx01 mx02" is not one server: separate the user and its servers with ",", ";" or a tab`,
      `5 lines of ${csv} cannot be recorded (1 invalid address, 2 naming an unknown server, 1 naming no server, 1 duplicate): nothing recorded (fix them, or pass --skip-invalid to record the rest).`,
    ])
    expect(await store.countUsers()).toBe(0)

    const skipped = await adoptPlacements(store, csvSource(csv), {dryRun: false, skipInvalid: true})
    expect(skipped).toMatchObject({
      recorded: 1,
      created: 1,
      users: [{user: 'alice@example.com', copies: ['mx01', 'mx02'], new: true}],
      skipped: {invalid: 1, 'unknown-server': 2, 'no-server': 1, duplicate: 1},
    })
    expect(skipped.problems.map((p) => [p.where, p.kind])).toEqual([
      [`${csv}:2`, 'unknown-server'],
      [`${csv}:3`, 'invalid'],
      [`${csv}:4`, 'no-server'],
      [`${csv}:5`, 'duplicate'],
      [`${csv}:6`, 'unknown-server'],
    ])
    expect(await store.countUsers()).toBe(1)
  })

  it('reads ",", ";" and a tab between the fields', async () => {
    const csv = join(dir, 'separators.csv')
    writeFileSync(
      csv,
      'a@example.com;mx01;mx02\nb@example.com\tmx02\t10.0.0.3\n"c@example.com", "mx03" ; mx04\n',
    )
    const result = await adoptPlacements(store, csvSource(csv), {dryRun: true, skipInvalid: false})
    expect(result.users.map((u) => [u.user, u.copies])).toEqual([
      ['a@example.com', ['mx01', 'mx02']],
      ['b@example.com', ['mx02', 'mx03']],
      ['c@example.com', ['mx03', 'mx04']],
    ])
  })

  it('completes a pair layout: every user of A is also on B, and of B on A', async () => {
    const csv = join(dir, 'single.csv')
    writeFileSync(csv, 'a@example.com,mx01\nb@example.com,10.0.0.2\nc@example.com,mx03\n')
    const pairs = parsePairs('mx01:mx02, 10.0.0.3:mx04', topology)
    expect(pairs).toEqual([
      ['mx01', 'mx02'],
      ['mx03', 'mx04'],
    ])
    const result = await adoptPlacements(store, csvSource(csv), {dryRun: false, skipInvalid: false, pairs})
    expect(result.users).toEqual([
      {user: 'a@example.com', copies: ['mx01', 'mx02'], new: true},
      {user: 'b@example.com', copies: ['mx02', 'mx01'], new: true},
      {user: 'c@example.com', copies: ['mx03', 'mx04'], new: true},
    ])
    expect(() => parsePairs('mx01:mx09', topology)).toThrow('--pairs: unknown server "mx09" in "mx01:mx09".')
    expect(() => parsePairs('mx01:mx02,mx02:mx03', topology)).toThrow(/mx02 is in more than one pair/)
  })
})
