import {existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync} from 'node:fs'
import {hostname, tmpdir} from 'node:os'
import {join} from 'node:path'
import {spawnSync} from 'node:child_process'

import Database from 'better-sqlite3'
import {afterEach, beforeEach, describe, expect, it} from 'vitest'

import {ExitCode} from '../../src/core/errors.js'
import {PLACEMENT_ALGORITHM_VERSION, type Topology} from '../../src/core/topology.js'
import {latestVersion} from '../../src/store/migrations/index.js'
import {sqliteMigrations} from '../../src/store/migrations/sqlite.js'
import {SqliteStore} from '../../src/store/sqlite.js'
import {failure, storeContract} from './contract.js'

storeContract('sqlite', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'mailring-store-'))
  const path = join(dir, 'cluster.db')
  const {store} = await SqliteStore.init(path)
  await store.close()
  return {
    open: () => SqliteStore.open(path),
    cleanup: async () => rmSync(dir, {recursive: true, force: true}),
  }
})

describe('sqlite store', () => {
  let dir: string
  let path: string
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'mailring-sqlite-'))
    path = join(dir, 'cluster.db')
  })
  afterEach(() => rmSync(dir, {recursive: true, force: true}))

  it('runs in WAL mode and init finds an existing store instead of replacing it', async () => {
    const first = await SqliteStore.init(path, {copies: 3})
    expect(first.created).toBe(true)
    const {clusterId} = await first.store.meta()
    await first.store.close()
    const second = await SqliteStore.init(path)
    expect(second.created).toBe(false)
    expect((await second.store.meta()).clusterId).toBe(clusterId)
    expect((await second.store.readTopology()).copies).toBe(3)
    await second.store.close()
    const raw = new Database(path)
    expect(raw.pragma('journal_mode', {simple: true})).toBe('wal')
    raw.close()
  })

  it('says to run init when there is no store', async () => {
    const error = await failure(SqliteStore.open(path))
    expect(error.exitCode).toBe(ExitCode.store)
    expect(error.message).toBe(`No mailring store at ${path}: run \`mailring init\` first (or pass --db).`)
  })

  it('refuses a file that is not a SQLite database', async () => {
    writeFileSync(
      path,
      'this is not a database, just some text that is long enough to have a header. '.repeat(20),
    )
    const error = await failure(SqliteStore.open(path))
    expect(error.exitCode).toBe(ExitCode.store)
    expect(error.message).toMatch(/not a SQLite database/)
  })

  it('refuses a schema written by a newer mailring', async () => {
    const {store} = await SqliteStore.init(path)
    await store.close()
    const raw = new Database(path)
    raw.prepare("UPDATE mailring_meta SET value = '99' WHERE key = 'schema_version'").run()
    raw.close()
    const error = await failure(SqliteStore.open(path))
    expect(error.exitCode).toBe(ExitCode.store)
    expect(error.message).toBe(
      `The store sqlite:${path} has schema version 99, written by a newer mailring; this one knows up to version ${latestVersion(sqliteMigrations)}: upgrade mailring.`,
    )
  })

  it('upgrades a move journal of schema 4 (from and to NOT NULL) keeping its rows and indexes', async () => {
    // A store as the mailring before the copy-count migration left it, with a move journaled.
    const before = sqliteMigrations.filter((m) => m.version <= 4)
    const raw = new Database(path)
    for (const m of before) for (const statement of m.statements) raw.prepare(statement).run()
    const meta = raw.prepare('INSERT INTO mailring_meta (key, value) VALUES (?, ?)')
    for (const [k, v] of [
      ['schema_version', '4'],
      ['algorithm', String(PLACEMENT_ALGORITHM_VERSION)],
      ['cluster_id', 'c'],
      ['created_at', '2026-12-01T00:00:00.000Z'],
      ['copies', '2'],
    ])
      meta.run(k, v)
    raw
      .prepare(
        "INSERT INTO mailring_servers (id, name, weight, state) VALUES (1, 'mx01', 1, 'active'), (2, 'mx02', 1, 'active'), (3, 'mx03', 1, 'active')",
      )
      .run()
    raw
      .prepare("INSERT INTO mailring_users (id, address, domain) VALUES (7, 'a@example.com', 'example.com')")
      .run()
    raw
      .prepare('INSERT INTO mailring_copies (user_id, position, server_id) VALUES (7, 0, 1), (7, 1, 2)')
      .run()
    raw
      .prepare(
        "INSERT INTO mailring_moves (id, user_id, position, from_server_id, to_server_id, state, plan, attempts, last_error, updated_at, trash) VALUES (5, 7, 1, 2, 3, 'retired', 'p', 2, 'e', '2026-12-02T00:00:00.000Z', '/t/a')",
      )
      .run()
    expect(() =>
      raw
        .prepare(
          "INSERT INTO mailring_moves (user_id, position, from_server_id, to_server_id, state, plan, updated_at) VALUES (7, 1, NULL, 3, 'planned', 'p', 'now')",
        )
        .run(),
    ).toThrow(/NOT NULL/)
    raw.close()
    const store = await SqliteStore.open(path)
    try {
      expect((await store.meta()).schemaVersion).toBe(latestVersion(sqliteMigrations))
      expect(await store.retiredMoves('2026-12-03T00:00:00.000Z')).toEqual([
        {
          id: 5,
          user: 'a@example.com',
          position: 1,
          from: 'mx02',
          to: 'mx03',
          state: 'retired',
          plan: 'p',
          attempts: 2,
          lastError: 'e',
          updatedAt: '2026-12-02T00:00:00.000Z',
          trash: '/t/a',
        },
      ])
      await store.journalMoves('p2', [{user: 'a@example.com', position: 2, from: null, to: 'mx03'}])
      expect((await store.openMoves()).map((m) => [m.from, m.to])).toEqual([[null, 'mx03']])
    } finally {
      await store.close()
    }
    const check = new Database(path, {readonly: true})
    const indexes = check
      .prepare(
        "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'mailring_moves' AND name NOT LIKE 'sqlite_%' ORDER BY name",
      )
      .pluck()
      .all() as string[]
    expect(indexes).toEqual([
      'mailring_moves_from',
      'mailring_moves_state',
      'mailring_moves_to',
      'mailring_moves_user',
    ])
    expect(check.pragma('foreign_key_check')).toEqual([])
    expect(
      check.prepare("SELECT count(*) FROM sqlite_master WHERE name = 'mailring_moves_v5'").pluck().get(),
    ).toBe(0)
    check.close()
  })

  describe('opened read-only (a user who may read the store but not write it)', () => {
    const topology = (servers: string[]): Topology => ({
      algorithm: PLACEMENT_ALGORITHM_VERSION,
      copies: 1,
      servers: servers.map((name) => ({name, address: '', weight: 1, state: 'active' as const})),
      domains: [],
    })
    beforeEach(async () => {
      const {store} = await SqliteStore.init(path)
      await store.writeTopology(topology(['mx01', 'mx02']))
      await store.close()
    })

    it('reads everything, leaves the file as it was, and refuses a change in one line', async () => {
      const before = readFileSync(path)
      const store = await SqliteStore.open(path, {readOnly: true})
      expect((await store.readTopology()).servers.map((s) => s.name)).toEqual(['mx01', 'mx02'])
      expect(await store.countUsers()).toBe(0)
      expect(await store.lockHolder()).toBeUndefined()
      const scan = await store.scanPlacements()
      for await (const chunk of scan.chunks) expect(chunk.users).toEqual([])
      for (const change of [store.acquireLock('node add'), store.writeTopology(topology(['mx01']))]) {
        const error = await failure(change)
        expect(error.exitCode).toBe(ExitCode.store)
        expect(error.code).toBe('store_read_only')
        expect(error.message).toMatch(
          new RegExp(
            `^Store sqlite:${path} is read-only for user \\S+: run commands that change it as a user who may write ${path} and its folder ${dir} \\(its owner\\), or give user \\S+ write access to both\\.$`,
          ),
        )
      }
      await store.close()
      expect(readFileSync(path).equals(before)).toBe(true)
      expect(existsSync(`${path}-wal`)).toBe(false)
    })

    it('says so when another process wrote the store while it read it without the -wal file', async () => {
      const reader = await SqliteStore.open(path, {readOnly: true})
      expect((await reader.readTopology()).servers).toHaveLength(2)
      const writer = await SqliteStore.open(path)
      await writer.writeTopology(topology(['mx01', 'mx02', 'mx03']))
      await writer.close()
      const error = await failure(reader.readTopology())
      expect(error.exitCode).toBe(ExitCode.store)
      expect(error.message).toBe(
        `Store sqlite:${path} was written by another process while this one read it (read only, without a lock): run the command again.`,
      )
      await reader.close()
    })

    it('reads through the -wal file while another process has the store open, and sees its changes', async () => {
      const writer = await SqliteStore.open(path)
      await writer.writeTopology(topology(['mx01', 'mx02', 'mx03']))
      expect(existsSync(`${path}-wal`)).toBe(true)
      const reader = await SqliteStore.open(path, {readOnly: true})
      expect((await reader.readTopology()).servers).toHaveLength(3)
      await writer.writeTopology(topology(['mx01', 'mx02', 'mx03', 'mx04']))
      expect((await reader.readTopology()).servers).toHaveLength(4)
      expect((await failure(reader.acquireLock('node add'))).code).toBe('store_read_only')
      await writer.close()
      await reader.close()
    })

    it('says how to upgrade an older schema it may not write', async () => {
      const raw = new Database(path)
      raw.prepare("UPDATE mailring_meta SET value = '2' WHERE key = 'schema_version'").run()
      raw.close()
      const error = await failure(SqliteStore.open(path, {readOnly: true}))
      expect(error.exitCode).toBe(ExitCode.store)
      expect(error.message).toMatch(
        new RegExp(
          `^Store sqlite:${path} has schema 2, this mailring needs ${latestVersion(sqliteMigrations)}, and user \\S+ may not write it: run \`mailring init\` once as a user who may, to upgrade it\\.$`,
        ),
      )
    })
  })

  it('takes over a lock left by a process that no longer runs on this host', async () => {
    const {store} = await SqliteStore.init(path)
    const dead = spawnSync(process.execPath, ['-e', '0']).pid!
    const raw = new Database(path)
    raw
      .prepare(
        "INSERT INTO mailring_cluster_lock (id, token, pid, host, command, since) VALUES (1, 'x', ?, ?, 'rebalance', '2024-01-01T00:00:00Z')",
      )
      .run(dead, hostname())
    raw.close()
    const lock = await store.acquireLock('node add')
    expect(lock.replacedStale).toEqual({
      pid: dead,
      host: hostname(),
      command: 'rebalance',
      since: '2024-01-01T00:00:00Z',
    })
    await lock.release()
    await store.close()
  })

  it('never takes over a lock held from another host', async () => {
    const {store} = await SqliteStore.init(path)
    const raw = new Database(path)
    raw
      .prepare(
        "INSERT INTO mailring_cluster_lock (id, token, pid, host, command, since) VALUES (1, 'x', 999999, 'other-host', 'rebalance', '2024-01-01T00:00:00Z')",
      )
      .run()
    raw.close()
    const error = await failure(store.acquireLock('node add'))
    expect(error.exitCode).toBe(ExitCode.locked)
    expect(error.message).toBe(
      'The cluster is locked by "mailring rebalance" (pid 999999 on other-host, since 2024-01-01T00:00:00Z): wait for it to finish and try again (--wait 5m waits for it); if it no longer runs, `mailring unlock` frees the lock.',
    )
    await store.close()
  })
})
