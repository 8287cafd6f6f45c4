/**
 * Store benchmark, on the embedded SQLite store:
 *
 * - import 1,000,000 users through the code path of `mailring users import` (parse, validate, place,
 *   insert under the cluster lock), against the reference: better-sqlite3's own bulk insert of the same
 *   rows (prepared INSERTs in one transaction, same schema), measured in the same run;
 * - plan the rebalance after adding one server to 50, with 1,000,000 users, in a child process so that its
 *   peak memory (maxRSS) is the plan's alone.
 */
import {mkdtempSync, rmSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'

import Database from 'better-sqlite3'

import {domainOf} from '../src/core/address.js'
import {Placement} from '../src/core/placement.js'
import type {Topology} from '../src/core/topology.js'
import {addServer} from '../src/engine/cluster/cluster.js'
import {SqliteStore} from '../src/store/sqlite.js'
import {checkTarget, count, printTable, seconds, times} from './report.js'
import {importRows, ringTopology, timeImport, writeBenchUsers} from './import-measure.js'
import {measurePlan, planRows} from './plan-measure.js'

const SUITE = 'store'
const USERS = 1_000_000
const SERVERS = 50
const IMPORT_TARGET_RATIO = 2
const IMPORT_TARGET_MS = 20_000
const PLAN_TARGET_MS = 5_000
const PLAN_TARGET_MB = 600

/** The ring the benchmark imports into (no addresses: nothing connects to them). */
function topology(): Topology {
  return ringTopology(SERVERS, () => '')
}

/** Inserts the rows mailring's import writes, with nothing but prepared statements in one transaction. */
function referenceInsert(path: string, users: readonly string[], placement: Placement): number {
  const db = new Database(path)
  db.pragma('journal_mode = WAL')
  db.pragma('synchronous = NORMAL')
  db.pragma('foreign_keys = ON')
  const serverIds = new Map(
    (db.prepare('SELECT id, name FROM mailring_servers').raw().all() as [number, string][]).map(
      ([id, name]) => [name, id],
    ),
  )
  const idOfIndex = Int32Array.from(placement.servers, (server) => serverIds.get(server.name)!)
  // The rows, computed before the clock starts: the reference measures inserting them, nothing else.
  const domains = users.map(domainOf)
  const copies = new Int32Array(users.length * 2)
  const out = new Int32Array(4)
  users.forEach((user, i) => {
    placement.placeInto(user, out)
    copies[i * 2] = idOfIndex[out[0]!]!
    copies[i * 2 + 1] = idOfIndex[out[1]!]!
  })
  const insertUser = db.prepare('INSERT INTO mailring_users (address, domain) VALUES (?, ?)')
  const insertCopy = db.prepare('INSERT INTO mailring_copies (user_id, position, server_id) VALUES (?, ?, ?)')
  const start = performance.now()
  db.transaction(() => {
    for (let i = 0; i < users.length; i++) {
      const id = insertUser.run(users[i], domains[i]).lastInsertRowid
      insertCopy.run(id, 0, copies[i * 2])
      insertCopy.run(id, 1, copies[i * 2 + 1])
    }
  })()
  const elapsed = performance.now() - start
  db.close()
  return elapsed
}

async function freshStore(path: string): Promise<SqliteStore> {
  const {store} = await SqliteStore.init(path)
  await store.writeTopology(topology())
  return store
}

async function runStoreBench(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'mailring-bench-'))
  try {
    const {users, file} = writeBenchUsers(dir, USERS)
    const placement = new Placement(topology())

    const referencePath = join(dir, 'reference.db')
    await (await freshStore(referencePath)).close()
    const referenceMs = referenceInsert(referencePath, users, placement)

    const mailringPath = join(dir, 'mailring.db')
    const store = await freshStore(mailringPath)
    const importMs = await timeImport(store, file, USERS)

    const ratio = importMs / referenceMs
    const ratioResult = checkTarget(
      SUITE,
      'import 1M users vs bulk insert',
      times(ratio),
      `<= ${IMPORT_TARGET_RATIO}x`,
      ratio <= IMPORT_TARGET_RATIO,
    )
    const timeResult = checkTarget(
      SUITE,
      'import 1M users',
      seconds(importMs),
      `< ${seconds(IMPORT_TARGET_MS)}`,
      importMs < IMPORT_TARGET_MS,
    )
    printTable(
      `Import ${count(USERS)} users, ${SERVERS} servers, 2 copies (embedded SQLite)`,
      ['path', 'time', 'users/s', 'vs reference', 'target', 'result'],
      importRows(
        USERS,
        {label: 'better-sqlite3 bulk insert (reference)', ms: referenceMs},
        importMs,
        `<= ${IMPORT_TARGET_RATIO}x, < ${seconds(IMPORT_TARGET_MS)}`,
        ratioResult === 'PASS' && timeResult === 'PASS' ? 'PASS' : 'FAIL',
      ),
      [
        'Reference: prepared INSERTs of the same users and copies rows into the same schema, in one transaction; its rows are computed before its clock starts.',
        'mailring: reads the file as a stream, validates and canonicalises every address, checks duplicates, places each user, writes in one transaction under the cluster lock.',
      ],
    )

    // Plan after adding one server, measured in a child process: its peak RSS is the plan's own.
    await addServer(store, {name: 'mx51', address: '', weight: 1, state: 'active'})
    await store.close()
    const report = await measurePlan(['sqlite', mailringPath])
    printTable(
      `Plan after adding one server to ${SERVERS} (${count(report.users)} users, equal weights, 2 copies)`,
      ['metric', 'value', 'target', 'result'],
      [...planRows(SUITE, report, PLAN_TARGET_MS, PLAN_TARGET_MB)],
    )
  } finally {
    rmSync(dir, {recursive: true, force: true})
  }
}

export const storeBench = {
  name: SUITE,
  description: `embedded store: import ${count(USERS)} users against a bulk-insert reference; plan after adding a server to ${SERVERS}`,
  run: runStoreBench,
}
