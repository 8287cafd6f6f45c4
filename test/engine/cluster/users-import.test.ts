/** `users import` (engine/cluster/users-import.ts) on a SQLite store in a temp folder. */
import * as path from 'node:path'
import {Readable} from 'node:stream'

import {afterEach, beforeEach, describe, expect, it} from 'vitest'

import {Placement} from '../../../src/core/placement.js'
import {addServer, addUsers} from '../../../src/engine/cluster/cluster.js'
import {importUsers} from '../../../src/engine/cluster/users-import.js'
import {SqliteStore} from '../../../src/store/sqlite.js'
import {makeTempDir, removeDir} from '../../support/proc.js'
import {makeServer} from '../../support/topologies.js'

let dir: string
let store: SqliteStore

function lines(...text: string[]): Readable {
  return Readable.from([`${text.join('\n')}\n`])
}

const importFrom = (input: Readable, skipInvalid = false) =>
  importUsers(store, input, {source: 'users.txt', skipInvalid})

beforeEach(async () => {
  dir = makeTempDir('mr-import')
  store = (await SqliteStore.init(path.join(dir, 'cluster.db'), {copies: 2})).store
  for (const name of ['mx01', 'mx02', 'mx03']) await addServer(store, makeServer(name))
})

afterEach(async () => {
  await store.close()
  removeDir(dir)
})

describe('users import', () => {
  it('imports one address a line, normalised, skipping blank lines and comments, each placed by the ring', async () => {
    const result = await importFrom(lines('# the users', 'Alice@Example.COM', '', '  bob@example.org  '))
    expect(result).toEqual({
      source: 'users.txt',
      imported: 2,
      skipped: {invalid: 0, duplicate: 0, exists: 0},
      problems: [],
    })
    const placement = new Placement(await store.readTopology())
    for (const user of ['alice@example.com', 'bob@example.org'])
      expect((await store.getUser(user))?.copies).toEqual(placement.serversFor(user))
  })

  it('reads the address column of a CSV file named in its header', async () => {
    const result = await importFrom(
      lines('name,"Email",plan', 'Alice,alice@example.com,big', 'Bob,"bob@example.com",small'),
    )
    expect(result.imported).toBe(2)
    expect(await store.getUser('bob@example.com')).toBeDefined()
  })

  it('refuses a first line that is neither an address nor a header naming one', async () => {
    await expect(importFrom(lines('name,plan', 'alice@example.com'))).rejects.toThrow(
      'users.txt:1: "name,plan" is neither an address nor a CSV header with an address column (address, email, e-mail, user, mail, username); nothing imported.',
    )
  })

  it('imports nothing when a line is invalid, a duplicate or an existing user, and lists them all', async () => {
    await addUsers(store, ['carol@example.com'])
    const input = lines('alice@example.com', 'not an address', 'ALICE@example.com', 'carol@example.com')
    await expect(importFrom(input)).rejects.toThrow(
      /^users\.txt:2: .*\n.*users\.txt:3: alice@example\.com is a duplicate of line 1\n/,
    )
    expect(await store.countUsers()).toBe(1)
  })

  it('says what the one problem is when there is one', async () => {
    await expect(importFrom(lines('alice@example.com', 'alice@example.com'))).rejects.toThrow(
      'users.txt:2: alice@example.com is a duplicate of line 1: nothing imported (fix it, or pass --skip-invalid to import the rest).',
    )
  })

  it('with skipInvalid, imports the rest and reports what it skipped, by line', async () => {
    await addUsers(store, ['carol@example.com'])
    const result = await importFrom(
      lines(
        'alice@example.com',
        'not an address',
        'alice@example.com',
        'carol@example.com',
        'dave@example.com',
      ),
      true,
    )
    expect(result.imported).toBe(2)
    expect(result.skipped).toEqual({invalid: 1, duplicate: 1, exists: 1})
    expect(result.problems.map((p) => [p.line, p.kind])).toEqual([
      [2, 'invalid'],
      [3, 'duplicate'],
      [4, 'exists'],
    ])
    expect(result.problems.slice(1).map((p) => p.message)).toEqual([
      'alice@example.com is a duplicate of line 1',
      'carol@example.com exists already',
    ])
    expect(await store.countUsers()).toBe(3)
  })
})
