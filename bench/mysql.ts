/**
 * MySQL store benchmark, on a local MariaDB that the benchmark starts itself (test/support/mariadb.ts):
 *
 * - import 1,000,000 users through the code path of `mailring users import` (parse, validate, place,
 *   insert under the cluster lock), against the reference: `LOAD DATA LOCAL INFILE` of the same rows into
 *   the same schema, measured in the same run;
 * - read 1,000,000 placements and plan after adding a server, in a child process (peak memory = maxRSS);
 * - `mailring users sync` of 10,000 new users in the operator's users table (beside 1,000,000 known).
 */
import {createReadStream, mkdtempSync, rmSync, writeFileSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'

import mysql from 'mysql2/promise'

import {domainOf} from '../src/core/address.js'
import {Placement} from '../src/core/placement.js'
import type {Topology} from '../src/core/topology.js'
import {addServer} from '../src/engine/cluster/cluster.js'
import {withClusterLock} from '../src/engine/lock.js'
import {syncUsers} from '../src/engine/cluster/users-sync.js'
import {connectionOptions, MysqlStore} from '../src/store/mysql.js'
import type {MysqlSettings} from '../src/store/mysql-settings.js'
import {startMariaDb, type MariaDb} from '../test/support/mariadb.js'
import {checkTarget, count, printTable, seconds, times} from './report.js'
import {BENCH_DOMAINS, importRows, ringTopology, timeImport, writeBenchUsers} from './import-measure.js'
import {measurePlan, planRows} from './plan-measure.js'

const SUITE = 'mysql'
const USERS = 1_000_000
const NEW_USERS = 10_000
const SERVERS = 50
const IMPORT_TARGET_RATIO = 2
const PLAN_TARGET_MS = 10_000
const PLAN_TARGET_MB = 600
const SYNC_TARGET_MS = 5_000

/** The ring the benchmark imports into (distinct addresses). */
function topology(): Topology {
  return ringTopology(SERVERS, (i) => `10.0.${i >> 8}.${(i & 255) + 1}`)
}

function settingsFor(db: MariaDb, database: string): MysqlSettings {
  return {
    host: db.host,
    port: db.port,
    user: db.user,
    database,
    password: db.password,
    passwordSource: 'MAILRING_DB_PASSWORD',
    location: `mysql://${db.user}@${db.host}:${db.port}/${database}`,
  }
}

async function freshStore(db: MariaDb, database: string): Promise<MysqlStore> {
  await db.rootExec(
    `CREATE DATABASE IF NOT EXISTS \`${database}\` CHARACTER SET utf8mb4; GRANT ALL PRIVILEGES ON \`${database}\`.* TO '${db.user}'@'127.0.0.1';`,
  )
  const {store} = await MysqlStore.init(settingsFor(db, database))
  await store.writeTopology(topology())
  return store
}

/** LOAD DATA LOCAL INFILE of the rows mailring's import writes; the files are written before the clock starts. */
async function referenceLoad(
  db: MariaDb,
  dir: string,
  users: readonly string[],
  placement: Placement,
): Promise<number> {
  const store = await freshStore(db, 'reference')
  await store.close()
  const conn = await mysql.createConnection({
    ...connectionOptions(settingsFor(db, 'reference')),
    infileStreamFactory: (path: string) => createReadStream(path),
  })
  try {
    const [servers] = await conn.query<mysql.RowDataPacket[]>('SELECT id, name FROM mailring_servers')
    const idOf = new Map(servers.map((row) => [String(row.name), Number(row.id)]))
    const idOfIndex = Int32Array.from(placement.servers, (server) => idOf.get(server.name)!)
    const out = new Int32Array(4)
    const userLines: string[] = []
    const copyLines: string[] = []
    users.forEach((user, i) => {
      userLines.push(`${i + 1}\t${user}\t${domainOf(user)}`)
      placement.placeInto(user, out)
      copyLines.push(`${i + 1}\t0\t${idOfIndex[out[0]!]}`, `${i + 1}\t1\t${idOfIndex[out[1]!]}`)
    })
    const usersFile = join(dir, 'reference-users.tsv')
    const copiesFile = join(dir, 'reference-copies.tsv')
    writeFileSync(usersFile, `${userLines.join('\n')}\n`)
    writeFileSync(copiesFile, `${copyLines.join('\n')}\n`)
    const start = performance.now()
    await conn.query('START TRANSACTION')
    await conn.query(`LOAD DATA LOCAL INFILE ? INTO TABLE mailring_users (id, address, domain)`, [usersFile])
    await conn.query(`LOAD DATA LOCAL INFILE ? INTO TABLE mailring_copies (user_id, position, server_id)`, [
      copiesFile,
    ])
    await conn.query('COMMIT')
    return performance.now() - start
  } finally {
    await conn.end()
  }
}

async function runMysqlBench(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'mailring-bench-mysql-'))
  const db = await startMariaDb({
    serverArgs: ['--local-infile=1', '--innodb-buffer-pool-size=1G', '--innodb-log-file-size=512M'],
  })
  try {
    const {users, file} = writeBenchUsers(dir, USERS)
    const placement = new Placement(topology())

    const referenceMs = await referenceLoad(db, dir, users, placement)

    const store = await freshStore(db, 'mailring')
    const importMs = await timeImport(store, file, USERS)
    const ratio = importMs / referenceMs
    printTable(
      `Import ${count(USERS)} users, ${SERVERS} servers, 2 copies (MariaDB, local)`,
      ['path', 'time', 'users/s', 'vs reference', 'target', 'result'],
      importRows(
        USERS,
        {label: 'LOAD DATA LOCAL INFILE (reference)', ms: referenceMs},
        importMs,
        `<= ${IMPORT_TARGET_RATIO}x`,
        checkTarget(
          SUITE,
          'import 1M users vs LOAD DATA',
          times(ratio),
          `<= ${IMPORT_TARGET_RATIO}x`,
          ratio <= IMPORT_TARGET_RATIO,
        ),
      ),
      [
        'Reference: LOAD DATA LOCAL INFILE of the same users and copies rows (ids given) into the same schema, in one transaction; its files are written before its clock starts.',
        'mailring: reads the file as a stream, validates and canonicalises every address, checks duplicates, places each user, writes with bulk INSERTs in one transaction under the cluster lock (GET_LOCK).',
      ],
    )

    // Plan after adding one server, in a child process: its peak RSS is the plan's own.
    await addServer(store, {name: 'mx51', address: '10.0.9.51', weight: 1, state: 'active'})
    const {password: _password, ...withoutPassword} = settingsFor(db, 'mailring')
    const report = await measurePlan(['mysql', JSON.stringify(withoutPassword)], {
      ...process.env,
      MAILRING_DB_PASSWORD: db.password,
    })

    // users sync: the operator's table holds every known user and 10,000 new ones.
    await db.rootExec(
      `USE mailring; CREATE TABLE users (email VARCHAR(255) NOT NULL PRIMARY KEY, password VARCHAR(128) NOT NULL DEFAULT '') ENGINE=InnoDB; INSERT INTO users (email) SELECT address FROM mailring_users;`,
    )
    const conn = await mysql.createConnection(connectionOptions(settingsFor(db, 'mailring')))
    const fresh = Array.from({length: NEW_USERS}, (_, i) => [
      `fresh${i}@${BENCH_DOMAINS[i % BENCH_DOMAINS.length]}`,
    ])
    await conn.query('INSERT INTO users (email) VALUES ?', [fresh])
    await conn.end()
    const syncStart = performance.now()
    const synced = await withClusterLock(store, 'users sync', async (lock) =>
      syncUsers(store, await store.usersTable({table: 'users', userColumn: 'email', source: 'bench'}), {
        dryRun: false,
        lock,
      }),
    )
    const syncMs = performance.now() - syncStart
    if (synced.added !== NEW_USERS || synced.retired !== 0)
      throw new Error(`users sync added ${synced.added}, retired ${synced.retired}`)
    await store.close()

    printTable(
      `Plan after adding one server to ${SERVERS}, and users sync (${count(report.users)} users, MariaDB)`,
      ['metric', 'value', 'target', 'result'],
      [
        ...planRows(SUITE, report, PLAN_TARGET_MS, PLAN_TARGET_MB),
        [
          `users sync: ${count(NEW_USERS)} new users beside ${count(USERS)} known`,
          seconds(syncMs),
          `<= ${seconds(SYNC_TARGET_MS)}`,
          checkTarget(
            SUITE,
            'users sync 10k new',
            seconds(syncMs),
            `<= ${seconds(SYNC_TARGET_MS)}`,
            syncMs <= SYNC_TARGET_MS,
          ),
        ],
      ],
      [
        'users sync: the database finds, through indexes, the operator rows no mailring user matches and the mailring users no row names (unindexed tables: everything is read and compared in mailring); the new users are placed and written in one transaction under the cluster lock.',
      ],
    )
  } finally {
    await db.stop()
    rmSync(dir, {recursive: true, force: true})
  }
}

export const mysqlBench = {
  name: SUITE,
  description: `MySQL store on a local MariaDB: import ${count(USERS)} users against LOAD DATA LOCAL INFILE; plan after adding a server; users sync of ${count(NEW_USERS)} new users`,
  run: runMysqlBench,
}
