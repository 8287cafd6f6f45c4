import mysql, {type RowDataPacket} from 'mysql2/promise'
import {afterAll, afterEach, beforeAll, beforeEach, describe, expect, it} from 'vitest'

import {ExitCode, MailringError} from '../../src/core/errors.js'
import {Placement} from '../../src/core/placement.js'
import {PLACEMENT_ALGORITHM_VERSION, type Topology} from '../../src/core/topology.js'
import {placedBatch} from '../../src/engine/cluster/cluster.js'
import {syncUsers} from '../../src/engine/cluster/users-sync.js'
import {latestVersion} from '../../src/store/migrations/index.js'
import {mysqlMigrations} from '../../src/store/migrations/mysql.js'
import {connectionOptions, MysqlStore} from '../../src/store/mysql.js'
import type {MysqlSettings} from '../../src/store/mysql-settings.js'
import type {ReplicationTask, Store, UserBatch} from '../../src/store/store.js'
import {startMariaDb, type MariaDb} from '../support/mariadb.js'
import {freePort} from '../support/ports.js'
import {failure, storeContract} from './contract.js'
import {dropDatabase, freshDatabase, settingsFor} from '../support/mysql-databases.js'

let db: MariaDb
beforeAll(async () => {
  db = await startMariaDb()
})
afterAll(async () => {
  await db?.stop()
})

storeContract('mysql (MariaDB)', async () => {
  const database = await freshDatabase(db)
  const settings = settingsFor(db, database)
  const {store} = await MysqlStore.init(settings)
  await store.close()
  return {
    open: () => MysqlStore.open(settings),
    cleanup: () => dropDatabase(db, database),
  }
})

const topology: Topology = {
  algorithm: PLACEMENT_ALGORITHM_VERSION,
  copies: 2,
  servers: Array.from({length: 10}, (_, i) => ({
    name: `mx${String(i + 1).padStart(2, '0')}`,
    address: `192.0.2.${i + 1}`,
    weight: 1,
    state: 'active' as const,
  })),
  domains: [],
}

function usersBatch(users: string[]): UserBatch {
  const placement = new Placement(topology)
  return placedBatch(placement, users)
}

/** Adds `count` users and queues them all, due at 1000 ms. */
async function queueUsers(store: Store, count: number): Promise<string[]> {
  const users = Array.from({length: count}, (_, i) => `user${i}@example.com`)
  await store.insertUsers([usersBatch(users)], {skipExisting: false})
  await store.enqueueReplication(
    users.map((user) => ({user, priority: 'mail' as const})),
    {nowMs: 1_000, debounceMs: 0, maxDelayMs: 0},
  )
  return users
}

describe('mysql store on MariaDB', () => {
  let database: string
  let settings: MysqlSettings
  let store: MysqlStore
  beforeEach(async () => {
    database = await freshDatabase(db, 'm')
    settings = settingsFor(db, database)
    store = (await MysqlStore.init(settings)).store
    await store.writeTopology(topology)
  })
  afterEach(async () => {
    await store.close()
    await dropDatabase(db, database)
  })

  it('uses InnoDB, utf8mb4_bin addresses, and the same tables and columns as SQLite', async () => {
    const tables = await db.rootExec(
      `SELECT TABLE_NAME, ENGINE FROM information_schema.TABLES WHERE TABLE_SCHEMA = '${database}' ORDER BY TABLE_NAME`,
    )
    expect(tables.trim().split('\n').sort()).toEqual([
      'mailring_cluster_lock\tInnoDB',
      'mailring_copies\tInnoDB',
      'mailring_domain_servers\tInnoDB',
      'mailring_domains\tInnoDB',
      'mailring_hosts\tInnoDB',
      'mailring_meta\tInnoDB',
      'mailring_moves\tInnoDB',
      'mailring_replication_markers\tInnoDB',
      'mailring_replication_missed\tInnoDB',
      'mailring_replication_queue\tInnoDB',
      'mailring_server_health\tInnoDB',
      'mailring_servers\tInnoDB',
      'mailring_sync_states\tInnoDB',
      'mailring_users\tInnoDB',
    ])
    const columns = await db.rootExec(
      `SELECT TABLE_NAME, COLUMN_NAME, IFNULL(COLLATION_NAME, '-') FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = '${database}' AND TABLE_NAME IN ('mailring_users', 'mailring_copies', 'mailring_servers') ORDER BY TABLE_NAME, ORDINAL_POSITION`,
    )
    expect(columns.trim().split('\n')).toEqual([
      'mailring_copies\tuser_id\t-',
      'mailring_copies\tposition\t-',
      'mailring_copies\tserver_id\t-',
      'mailring_servers\tid\t-',
      'mailring_servers\tname\tutf8mb4_bin',
      'mailring_servers\taddress\tutf8mb4_bin',
      'mailring_servers\tzone\tutf8mb4_bin',
      'mailring_servers\tweight\t-',
      'mailring_servers\tstate\tutf8mb4_bin',
      'mailring_users\tid\t-',
      'mailring_users\taddress\tutf8mb4_bin',
      'mailring_users\tdomain\tutf8mb4_bin',
    ])
  })

  it("serves Dovecot's per-user and per-server lookups from indexes (EXPLAIN)", async () => {
    const users = Array.from({length: 3000}, (_, i) => `user${i}@example.com`)
    await store.insertUsers([usersBatch(users)], {skipExisting: false})
    await db.rootExec(`USE \`${database}\`; ANALYZE TABLE mailring_users, mailring_copies, mailring_servers;`)
    const explain = async (sql: string): Promise<{table: string; type: string; key: string}[]> => {
      const out = await db.rootExec(`USE \`${database}\`; EXPLAIN ${sql}`)
      // id select_type table type possible_keys key key_len ref rows Extra
      return out
        .trim()
        .split('\n')
        .map((line) => line.split('\t'))
        .map((cells) => ({table: cells[2]!, type: cells[3]!, key: cells[5]!}))
    }
    const userQuery = await explain(
      "SELECT s.address FROM mailring_users u JOIN mailring_copies c ON c.user_id = u.id JOIN mailring_servers s ON s.id = c.server_id WHERE u.address = 'user7@example.com' AND s.name = 'mx03'",
    )
    expect(userQuery.find((row) => row.table === 'u')).toMatchObject({
      type: 'const',
      key: 'mailring_users_address',
    })
    expect(userQuery.find((row) => row.table === 'c')?.key).toMatch(/PRIMARY|mailring_copies_server/)
    expect(userQuery.every((row) => row.type !== 'ALL')).toBe(true)

    const iterateQuery = await explain(
      "SELECT u.address FROM mailring_copies c JOIN mailring_users u ON u.id = c.user_id WHERE c.server_id = (SELECT id FROM mailring_servers WHERE name = 'mx03')",
    )
    expect(iterateQuery.find((row) => row.table === 'c')).toMatchObject({
      type: 'ref',
      key: 'mailring_copies_server',
    })
    expect(iterateQuery.find((row) => row.table === 'u')).toMatchObject({type: 'eq_ref', key: 'PRIMARY'})
    expect(iterateQuery.every((row) => row.type !== 'ALL')).toBe(true)
  })

  it('switches added and dropped copies of neighbouring users at once without a deadlock', async () => {
    // Users next to each other in mailring_copies' key: a switch renumbers one user's positions by range.
    const users = Array.from({length: 24}, (_, i) => `n${String(i).padStart(2, '0')}@example.com`)
    const placement = new Placement(topology)
    await store.insertUsers([placedBatch(placement, users)], {skipExisting: false})
    const moves = []
    for (const [i, user] of users.entries()) {
      const copies = (await store.getUser(user))!.copies
      const free = topology.servers.map((s) => s.name).find((n) => !copies.includes(n))!
      moves.push(
        i % 2 === 0
          ? {user, position: 0, from: null, to: free}
          : {user, position: 0, from: copies[0]!, to: null},
      )
    }
    await store.journalMoves('p', moves)
    const open = await store.openMoves()
    for (const m of open) await store.setMoveState(m.id, 'planned', 'verified')
    const others = await Promise.all(Array.from({length: 3}, () => MysqlStore.open(settings)))
    try {
      await Promise.all(open.map((m, i) => others[i % others.length]!.switchMove(m.id)))
    } finally {
      await Promise.all(others.map((o) => o.close()))
    }
    for (const [i, user] of users.entries()) {
      const copies = (await store.getUser(user))!.copies
      expect(copies, user).toEqual(
        i % 2 === 0 ? [moves[i]!.to, ...placement.serversFor(user)] : placement.serversFor(user).slice(1),
      )
    }
  })

  it('loses the cluster lock with its connection (KILL on the server), and then writes nothing', async () => {
    const lock = await store.acquireLock('users sync')
    const id = (await db.rootExec("SELECT IS_USED_LOCK('mailring_cluster')")).trim()
    expect(id).toMatch(/^\d+$/)
    await db.rootExec(`KILL ${id}`)
    const lost = await Promise.race([
      lock.lost,
      new Promise((resolve) => setTimeout(() => resolve('timeout'), 10_000)),
    ])
    expect(lost).toBeInstanceOf(MailringError)
    expect((lost as MailringError).message).toMatch(
      /^Lost the cluster lock: the database connection that held it/,
    )
    expect(() => lock.assertHeld()).toThrow(/Lost the cluster lock/)
    const refused = await failure(store.replaceUsers([usersBatch(['late@example.com'])], []))
    expect(refused.exitCode).toBe(ExitCode.locked)
    expect(await store.countUsers()).toBe(0)
    // The lock is free for others at once.
    const other = await MysqlStore.open(settings)
    const next = await other.acquireLock('node add')
    expect(next.replacedStale).toMatchObject({command: 'users sync', pid: process.pid})
    await next.release()
    await other.close()
    await lock.release()
  })

  it('a connection killed in the middle of a write: a store error (exit 4), nothing written, the store goes on', async () => {
    const users = Array.from({length: 200_000}, (_, i) => `k${i}@example.com`)
    const inserting = failure(store.insertUsers([usersBatch(users)], {skipExisting: false}))
    // KILL the connection once its transaction has written users and is writing their copies (InnoDB does
    // not count the rows of a bulk insert into an empty table in INNODB_TRX: the statement is what shows).
    let killed = ''
    for (const deadline = Date.now() + 30_000; !killed && Date.now() < deadline;) {
      killed = (
        await db.rootExec(
          `SELECT ID FROM information_schema.PROCESSLIST WHERE USER = '${db.user}' AND INFO LIKE 'INSERT INTO mailring_copies%'`,
        )
      ).trim()
      if (killed) await db.rootExec(`KILL CONNECTION ${killed}`)
    }
    expect(killed).toMatch(/^\d+$/)
    const error = await inserting
    expect(error.exitCode).toBe(ExitCode.store)
    expect(error.message).toMatch(/lost the connection to the server; nothing of the interrupted step/)
    expect(error.message).not.toContain(db.password)
    expect(await store.countUsers()).toBe(0)
    // Every idle pooled connection killed too: the next calls connect anew.
    await db.killConnections(db.user)
    await store.insertUsers([usersBatch(['after@example.com'])], {skipExisting: false})
    expect(await store.countUsers()).toBe(1)
  })

  it('unlock ends only the connection that holds GET_LOCK, never one the lock row does not name', async () => {
    const lock = await store.acquireLock('users sync')
    const holder = (await store.lockHolder())!
    // As a row left by a holder whose connection died, read while a new holder has just taken GET_LOCK.
    await db.rootExec(
      `USE \`${database}\`; UPDATE mailring_cluster_lock SET token = CONCAT('999999:', SUBSTRING_INDEX(token, ':', -1))`,
    )
    const other = await MysqlStore.open(settings)
    expect(await other.breakLock(holder)).toBe(false)
    lock.assertHeld()
    expect((await db.rootExec("SELECT IS_USED_LOCK('mailring_cluster') IS NOT NULL")).trim()).toBe('1')
    await other.close()
    await lock.release()
  })

  it('stops a sync whose lock was lost between reading and writing', async () => {
    await db.rootExec(
      `USE \`${database}\`; CREATE TABLE users (email VARCHAR(200) PRIMARY KEY); INSERT INTO users VALUES ('a@example.com'), ('b@example.com');`,
    )
    const lock = await store.acquireLock('users sync')
    const table = await store.usersTable({table: 'users', userColumn: 'email', source: 'test'})
    // The generic path (no differences from the database): read everything, then write.
    const killing = {
      ...table,
      differences: undefined,
      rows: async function* () {
        for await (const chunk of table.rows()) yield chunk
        const id = (await db.rootExec("SELECT IS_USED_LOCK('mailring_cluster')")).trim()
        await db.rootExec(`KILL ${id}`)
        await lock.lost
      },
    }
    const error = await failure(syncUsers(store, killing, {dryRun: false, lock}))
    expect(error.exitCode).toBe(ExitCode.locked)
    expect(await store.countUsers()).toBe(0)
    await lock.release()
  })

  it('syncs users from the operator table both ways and never alters it', async () => {
    await db.rootExec(
      `USE \`${database}\`; CREATE TABLE mailbox (local_part VARCHAR(64), domain VARCHAR(200), quota INT, PRIMARY KEY (local_part, domain)); INSERT INTO mailbox VALUES ('Alice', 'Example.COM', 1), ('bob', 'example.com', 1), ('bad user', 'example.com', 1);`,
    )
    const definition = await db.rootExec(`USE \`${database}\`; SHOW CREATE TABLE mailbox`)
    await store.insertUsers([usersBatch(['gone@example.com', 'bob@example.com'])], {skipExisting: false})
    const table = await store.usersTable({
      table: 'mailbox',
      localColumn: 'local_part',
      domainColumn: 'domain',
      source: 'test',
    })
    const dry = await syncUsers(store, table, {dryRun: true})
    expect(dry).toMatchObject({
      added: 1,
      retired: 1,
      addedUsers: ['alice@example.com'],
      retiredUsers: ['gone@example.com'],
    })
    expect(await store.countUsers()).toBe(2)
    const done = await syncUsers(store, table, {dryRun: false})
    expect(done).toMatchObject({added: 1, retired: 1, tableUsers: 2, invalidCount: 1})
    expect((await store.getUser('alice@example.com'))?.copies).toEqual(
      new Placement(topology).serversFor('alice@example.com'),
    )
    expect(await store.getUser('gone@example.com')).toBeUndefined()
    expect(await db.rootExec(`USE \`${database}\`; SHOW CREATE TABLE mailbox`)).toBe(definition)
    expect(await syncUsers(store, table, {dryRun: false})).toMatchObject({added: 0, retired: 0})
    // The same through the generic path (an unindexed column): the same answer.
    await db.rootExec(
      `USE \`${database}\`; CREATE TABLE plain (mail VARCHAR(200)); INSERT INTO plain VALUES ('alice@example.com'), ('BOB@example.com'), ('carol@example.com'), ('carol@example.com');`,
    )
    const plain = await store.usersTable({table: 'plain', userColumn: 'mail', source: 'test'})
    expect(await plain.differences?.()).toBeUndefined()
    expect(await syncUsers(store, plain, {dryRun: true})).toMatchObject({
      addedUsers: ['carol@example.com'],
      retiredUsers: [],
      duplicates: 1,
      tableUsers: 3,
    })
    // And with an index: spellings other than the canonical one still count as listed.
    await db.rootExec(`USE \`${database}\`; CREATE INDEX plain_mail ON plain (mail);`)
    expect(await syncUsers(store, plain, {dryRun: true})).toMatchObject({
      addedUsers: ['carol@example.com'],
      retiredUsers: [],
      tableUsers: 3,
    })
  })

  it('refuses a users table or column that does not exist with one line (exit 1)', async () => {
    await db.rootExec(
      `USE \`${database}\`; CREATE TABLE users (email VARCHAR(200) PRIMARY KEY, hostA VARCHAR(100));`,
    )
    const noTable = await failure(
      store.usersTable({table: 'accounts', userColumn: 'email', source: 'cfg.yaml:3: users_table'}),
    )
    expect(noTable.exitCode).toBe(ExitCode.error)
    expect(noTable.message).toBe(
      `cfg.yaml:3: users_table: the users table \`accounts\` does not exist in database ${database} (or this user may not see it).`,
    )
    const noColumn = await failure(
      store.usersTable({table: 'users', userColumn: 'mail', source: 'cfg.yaml:3: users_table'}),
    )
    expect(noColumn.exitCode).toBe(ExitCode.error)
    expect(noColumn.message).toBe(
      'cfg.yaml:3: users_table: the users table `users` has no column `mail` (it has email, hosta).',
    )
    const table = await store.usersTable({table: 'users', userColumn: 'email', source: 'test'})
    await expect(table.checkColumns(['hostA', 'hostB'], '--from-columns')).rejects.toThrow(
      '--from-columns: the users table `users` has no column `hostB`',
    )
  })

  it('shares the replication queue: replicators claiming at once never get the same user, and together get all', async () => {
    const users = await queueUsers(store, 150)
    const other = await MysqlStore.open(settings)
    try {
      const drain = async (from: Store, owner: string): Promise<string[]> => {
        const got: string[] = []
        for (;;) {
          const tasks = await from.claimReplication({owner, nowMs: 2_000, limit: 4, leaseMs: 60_000})
          got.push(...tasks.map((task) => task.user))
          if (tasks.length > 0) continue
          // Nothing free: done once nothing is due any more (others may be committing their claims).
          if ((await from.replicationStats(2_000)).byPriority[0]!.due === 0) return got
          await new Promise((resolve) => setTimeout(resolve, 5))
        }
      }
      const claimed = await Promise.all([
        drain(store, 'r1'),
        drain(store, 'r2'),
        drain(other, 'r3'),
        drain(other, 'r4'),
      ])
      const all = claimed.flat()
      expect(new Set(all).size).toBe(all.length)
      expect(all.sort()).toEqual([...users].sort())
      expect(claimed.filter((got) => got.length > 0).length).toBeGreaterThan(1)
      expect((await store.replicationStats(2_000)).inFlight).toBe(users.length)
    } finally {
      await other.close()
    }
  })

  it('claims past entries another transaction holds locked instead of waiting for them (SKIP LOCKED)', async () => {
    const users = await queueUsers(store, 6)
    const raw = await mysql.createConnection(connectionOptions(settings))
    try {
      await raw.query('START TRANSACTION')
      const [locked] = await raw.query<RowDataPacket[]>(
        'SELECT u.address FROM mailring_replication_queue q JOIN mailring_users u ON u.id = q.user_id ORDER BY q.user_id LIMIT 3 FOR UPDATE',
      )
      const held = locked.map((row) => String(row.address))
      const claim = store.claimReplication({owner: 'r1', nowMs: 2_000, limit: 10, leaseMs: 60_000})
      const tasks = await Promise.race([
        claim,
        new Promise<'waited'>((resolve) => setTimeout(() => resolve('waited'), 5_000)),
      ])
      expect(tasks).not.toBe('waited')
      const got = (tasks as ReplicationTask[]).map((task) => task.user)
      expect(got.sort()).toEqual(users.filter((user) => !held.includes(user)).sort())
      await raw.query('COMMIT')
      const rest = await store.claimReplication({owner: 'r2', nowMs: 2_000, limit: 10, leaseMs: 60_000})
      expect(rest.map((task) => task.user).sort()).toEqual([...held].sort())
    } finally {
      await raw.end()
    }
  })

  it('refuses a schema written by a newer mailring (exit 4)', async () => {
    await db.rootExec(
      `USE \`${database}\`; UPDATE mailring_meta SET value = '99' WHERE \`key\` = 'schema_version';`,
    )
    const error = await failure(MysqlStore.open(settings))
    expect(error.exitCode).toBe(ExitCode.store)
    expect(error.message).toMatch(
      /schema version 99, written by a newer mailring; this one knows up to version \d+: upgrade mailring/,
    )
  })
})

describe('mysql store: schema upgrades', () => {
  it('upgrades a move journal of schema 4 (from and to NOT NULL), keeping its rows', async () => {
    const database = await freshDatabase(db, 'u')
    try {
      // A store as the mailring before the copy-count migration left it, with a move journaled.
      const statements = mysqlMigrations.filter((m) => m.version <= 4).flatMap((m) => m.statements)
      await db.rootExec(
        [
          `USE \`${database}\``,
          ...statements,
          "INSERT INTO mailring_meta (`key`, value) VALUES ('schema_version', '4'), ('algorithm', '1'), ('cluster_id', 'c'), ('created_at', '2026-12-01T00:00:00.000Z'), ('copies', '2')",
          "INSERT INTO mailring_servers (id, name, weight, state) VALUES (1, 'mx01', 1, 'active'), (2, 'mx02', 1, 'active'), (3, 'mx03', 1, 'active')",
          "INSERT INTO mailring_users (id, address, domain) VALUES (7, 'a@example.com', 'example.com')",
          'INSERT INTO mailring_copies (user_id, position, server_id) VALUES (7, 0, 1), (7, 1, 2)',
          "INSERT INTO mailring_moves (id, user_id, position, from_server_id, to_server_id, state, plan, attempts, last_error, updated_at, trash) VALUES (5, 7, 1, 2, 3, 'retired', 'p', 2, 'e', '2026-12-02T00:00:00.000Z', '/t/a')",
        ].join(';\n') + ';',
      )
      await expect(
        db.rootExec(
          `USE \`${database}\`; INSERT INTO mailring_moves (user_id, position, from_server_id, to_server_id, state, plan, updated_at) VALUES (7, 1, NULL, 3, 'planned', 'p', 'now');`,
        ),
      ).rejects.toThrow(/cannot be null/i)
      const store = await MysqlStore.open(settingsFor(db, database))
      try {
        expect((await store.meta()).schemaVersion).toBe(latestVersion(mysqlMigrations))
        expect(
          (await store.retiredMoves('2026-12-03T00:00:00.000Z')).map((m) => [m.id, m.from, m.to, m.trash]),
        ).toEqual([[5, 'mx02', 'mx03', '/t/a']])
        await store.journalMoves('p2', [{user: 'a@example.com', position: 2, from: null, to: 'mx03'}])
        expect((await store.openMoves()).map((m) => [m.from, m.to])).toEqual([[null, 'mx03']])
      } finally {
        await store.close()
      }
      // Neither end: refused by the database itself too.
      await expect(
        db.rootExec(
          `USE \`${database}\`; INSERT INTO mailring_moves (user_id, position, from_server_id, to_server_id, state, plan, updated_at) VALUES (7, 1, NULL, NULL, 'planned', 'p', 'now');`,
        ),
      ).rejects.toThrow(/CONSTRAINT/i)
    } finally {
      await dropDatabase(db, database)
    }
  })
})

describe('mysql store: bad connections and privileges', () => {
  it('says so when the server cannot be reached (exit 4)', async () => {
    const port = await freePort('127.0.0.1')
    const error = await failure(
      MysqlStore.open({...settingsFor(db, 'x'), port, location: `mysql://${db.user}@127.0.0.1:${port}/x`}),
    )
    expect(error.exitCode).toBe(ExitCode.store)
    expect(error.message).toBe(
      `Cannot reach the MySQL/MariaDB server at 127.0.0.1:${port} (connection refused): is it running, and are host and port in mysql://${db.user}@127.0.0.1:${port}/x right?`,
    )
  })

  it('refuses a wrong password without echoing it (exit 4)', async () => {
    const error = await failure(MysqlStore.open(settingsFor(db, db.database, {password: 'Wrong-Secret-42'})))
    expect(error.exitCode).toBe(ExitCode.store)
    expect(error.message).toMatch(
      /refused user mailring \(access denied\): check the password \(from MAILRING_DB_PASSWORD\)/,
    )
    expect(error.message).not.toContain('Wrong-Secret-42')
    expect(error.message).not.toContain(db.password)
  })

  it('names a database that does not exist (exit 4)', async () => {
    const error = await failure(MysqlStore.open(settingsFor(db, 'no_such_db')))
    expect(error.exitCode).toBe(ExitCode.store)
    expect(error.message).toMatch(/(may not use database no_such_db|database no_such_db does not exist)/)
  })

  it('names the missing privilege and writes nothing (exit 4)', async () => {
    const database = await freshDatabase(db, 'p')
    try {
      const reader = await db.createUser('reader', `SELECT ON \`${database}\`.*`)
      const asReader = settingsFor(db, database, reader)
      const init = await failure(MysqlStore.init(asReader))
      expect(init.exitCode).toBe(ExitCode.store)
      expect(init.message).toMatch(
        /user reader lacks the CREATE privilege on table mailring_meta: GRANT SELECT, INSERT/,
      )
      expect(await db.rootExec(`SHOW TABLES FROM \`${database}\``)).toBe('')

      const {store} = await MysqlStore.init(settingsFor(db, database))
      await store.writeTopology(topology)
      await store.close()
      const readOnly = await MysqlStore.open(asReader)
      const write = await failure(readOnly.replaceUsers([usersBatch(['a@example.com', 'b@example.com'])], []))
      expect(write.exitCode).toBe(ExitCode.store)
      expect(write.message).toMatch(
        /user reader lacks the INSERT(, UPDATE)? privileges? on table mailring_users: GRANT/,
      )
      expect(await readOnly.countUsers()).toBe(0)
      await readOnly.close()
    } finally {
      await db.rootExec("DROP USER IF EXISTS 'reader'@'127.0.0.1', 'reader'@'localhost'")
      await dropDatabase(db, database)
    }
  })
})
