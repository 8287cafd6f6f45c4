/**
 * Users and their copies (mailring_users, mailring_copies): batches as rows, the tallies of inserts and
 * replacements, placements packed into chunks; then the users' methods in each dialect. SQLite writes a
 * row per statement; MySQL in bulk INSERTs.
 */
import {MailringError} from '../../core/errors.js'
import type {
  InsertUsersResult,
  PlacementChunk,
  PlacementScan,
  ReplaceUsersResult,
  UserBatch,
  UserListOptions,
  UserRecord,
} from '../store.js'
import {mysqlServers, sqliteServers, type ServerRow} from './servers.js'
import {
  arrayRows,
  type MysqlConn,
  type MysqlGuard,
  type MysqlSnapshot,
  type Row,
  type SqliteDb,
  type SqliteGuard,
} from './sql.js'
import type {ResultSetHeader} from 'mysql2/promise'

/** Thrown inside a transaction to roll it back without an error reaching the caller. */
export class Rollback extends Error {}

/** The server ids of a batch's server indices; refuses (writes nothing) a copy on an unknown server. */
function batchServerIds(batch: UserBatch, serverIds: ReadonlyMap<string, number>): number[] {
  return batch.servers.map((name) => {
    const id = serverIds.get(name)
    if (id === undefined) throw new MailringError(`Unknown server ${name}.`, {code: 'unknown_server'})
    return id
  })
}

/** Calls `row` with each copy of user `i` of the batch as its mailring_copies (position, server_id). */
function forEachCopy(
  batch: UserBatch,
  i: number,
  ids: readonly number[],
  row: (position: number, serverId: number) => void,
): void {
  const start = batch.copyStart[i]!
  const end = batch.copyStart[i + 1]!
  for (let k = start; k < end; k++) row(k - start, ids[batch.copyServers[k]!]!)
}

/**
 * Tells, for insertUsers, the users it adds from those that existed before the call and those given
 * again in it, by user id: the transaction first notes the highest id (`begin`), so a user row whose id
 * lies above it was added by this call.
 */
export class InsertTally {
  readonly result: InsertUsersResult = {inserted: 0, existing: [], repeated: []}
  private firstNewId = 1
  /** Where each new user came from (batch, index), by id - firstNewId: two ints per user, no objects. */
  private addedAt = new Int32Array(1 << 16).fill(-1)

  constructor(private readonly skipExisting: boolean) {}

  /** At the start of the transaction, with the highest user id then (0 for none). */
  begin(topId: number): void {
    this.firstNewId = topId + 1
  }

  /** Notes the user at [batch, index] whose row has `id`; true when this is the entry that added it. */
  add(id: number, batch: number, index: number): boolean {
    if (id < this.firstNewId) {
      this.result.existing.push([batch, index])
      return false
    }
    const slot = (id - this.firstNewId) * 2
    if (slot + 1 >= this.addedAt.length) {
      const bigger = new Int32Array(Math.max(this.addedAt.length * 2, slot + 2))
      bigger.fill(-1, this.addedAt.length)
      bigger.set(this.addedAt)
      this.addedAt = bigger
    }
    if (this.addedAt[slot]! >= 0) {
      this.result.repeated.push({at: [batch, index], first: [this.addedAt[slot]!, this.addedAt[slot + 1]!]})
      return false
    }
    this.addedAt[slot] = batch
    this.addedAt[slot + 1] = index
    this.result.inserted++
    return true
  }

  /** At the end of the transaction: without skipExisting, an existing or repeated user rolls it all back. */
  end(): void {
    if (!this.skipExisting && this.result.existing.length + this.result.repeated.length > 0)
      throw new Rollback()
  }
}

/** Runs insertUsers' transaction `write` and returns its result; a Rollback means nothing was inserted. */
export async function tallyInserts(
  options: {skipExisting: boolean},
  write: (tally: InsertTally) => void | Promise<void>,
): Promise<InsertUsersResult> {
  const tally = new InsertTally(options.skipExisting)
  try {
    await write(tally)
  } catch (error) {
    if (!(error instanceof Rollback)) throw error
    tally.result.inserted = 0
  }
  return tally.result
}

/** Counts, for replaceUsers, each user once however often it comes: created or replaced. */
class ReplaceTally {
  readonly result: ReplaceUsersResult = {created: 0, replaced: 0, removed: 0}
  private readonly seen = new Set<number>()

  /** Notes user `id`, whose row this call created (`created`) or found. */
  user(id: number, created: boolean): void {
    if (this.seen.has(id)) return
    this.seen.add(id)
    if (created) this.result.created++
    else this.result.replaced++
  }
}

/**
 * One number per copy, as both dialects select it: user id, position and server id packed (server ids stay
 * far below 2^12), so that a chunk of copies is a list of numbers, not of rows.
 */
const PACKED_COPY = 'user_id * 65536 + position * 4096 + server_id'
const COPIES_BETWEEN_SQL = `SELECT ${PACKED_COPY} FROM mailring_copies WHERE user_id BETWEEN ? AND ? ORDER BY user_id, position`

/** Index into `servers` by server id (-1 for an id that is no server's). */
function serverIndexById(servers: readonly ServerRow[]): Int32Array {
  const indexOfId = new Int32Array(Math.max(0, ...servers.map((row) => row.id)) + 1).fill(-1)
  servers.forEach((row, i) => (indexOfId[row.id] = i))
  return indexOfId
}

/**
 * A chunk of placements from users (`ids` ascending, with their `users` addresses) and the PACKED_COPY
 * numbers of their copies ordered by user id and position.
 */
function placementChunk(
  ids: ArrayLike<number>,
  users: string[],
  packedCopies: ArrayLike<number>,
  indexOfId: Int32Array,
): PlacementChunk {
  const copyStart = new Int32Array(ids.length + 1)
  const copyServers = new Int32Array(packedCopies.length)
  let k = 0
  for (let i = 0; i < ids.length; i++) {
    const id = ids[i]!
    copyStart[i] = k
    while (k < packedCopies.length && Math.floor(packedCopies[k]! / 65536) === id) {
      copyServers[k] = indexOfId[packedCopies[k]! % 4096]!
      k++
    }
  }
  copyStart[ids.length] = k
  return {users, copyStart, copyServers}
}

/** The users listUsers reads: after an address, of a domain or all. */
function listFilter(options: UserListOptions): {where: string; params: unknown[]} {
  return options.domain === undefined
    ? {where: 'address > ?', params: [options.after ?? '']}
    : {where: 'address > ? AND domain = ?', params: [options.after ?? '', options.domain]}
}

const USERS_WHERE_SQL = (where: string) =>
  `SELECT id, address, domain FROM mailring_users WHERE ${where} ORDER BY address LIMIT ?`
const USER_ID_SQL = 'SELECT id FROM mailring_users WHERE address = ?'
const USERS_PAGE_SQL = 'SELECT id, address FROM mailring_users WHERE id > ? ORDER BY id LIMIT ?'
const INSERT_COPY_SQL = 'INSERT INTO mailring_copies (user_id, position, server_id) VALUES (?, ?, ?)'
const DELETE_USER_SQL = 'DELETE FROM mailring_users WHERE address = ?'

export const sqliteUsers = {
  insert(db: SqliteDb, batches: Iterable<UserBatch>, tally: InsertTally): void {
    const serverIds = sqliteServers.ids(db)
    const insertUser = db.prepare(
      'INSERT INTO mailring_users (address, domain) VALUES (?, ?) ON CONFLICT (address) DO NOTHING',
    )
    const insertCopy = db.prepare(INSERT_COPY_SQL)
    const idOf = db.prepare(USER_ID_SQL).pluck()
    // Rows added from here on get ids above every older one (INTEGER PRIMARY KEY: max + 1).
    tally.begin((db.prepare('SELECT max(id) FROM mailring_users').pluck().get() as number | null) ?? 0)
    let batchIndex = 0
    for (const batch of batches) {
      const ids = batchServerIds(batch, serverIds)
      for (let i = 0; i < batch.users.length; i++) {
        const info = insertUser.run(batch.users[i], batch.domains[i])
        const userId = (info.changes === 0 ? idOf.get(batch.users[i]) : info.lastInsertRowid) as number
        if (!tally.add(userId, batchIndex, i)) continue
        forEachCopy(batch, i, ids, (position, serverId) => insertCopy.run(userId, position, serverId))
      }
      batchIndex++
    }
    tally.end()
  },
  replace(db: SqliteDb, batches: Iterable<UserBatch>, remove: readonly string[]): ReplaceUsersResult {
    const tally = new ReplaceTally()
    const serverIds = sqliteServers.ids(db)
    const idOf = db.prepare(USER_ID_SQL).pluck()
    const insertUser = db.prepare('INSERT INTO mailring_users (address, domain) VALUES (?, ?)')
    const deleteCopies = db.prepare('DELETE FROM mailring_copies WHERE user_id = ?')
    const insertCopy = db.prepare(INSERT_COPY_SQL)
    for (const batch of batches) {
      const ids = batchServerIds(batch, serverIds)
      for (let i = 0; i < batch.users.length; i++) {
        const found = idOf.get(batch.users[i]) as number | undefined
        if (found !== undefined) deleteCopies.run(found)
        const userId = found ?? (insertUser.run(batch.users[i], batch.domains[i]).lastInsertRowid as number)
        tally.user(userId, found === undefined)
        forEachCopy(batch, i, ids, (position, serverId) => insertCopy.run(userId, position, serverId))
      }
    }
    const removeUser = db.prepare(DELETE_USER_SQL)
    for (const user of remove) tally.result.removed += removeUser.run(user).changes
    return tally.result
  },
  remove(db: SqliteDb, users: readonly string[]): string[] {
    const remove = db.prepare(DELETE_USER_SQL)
    return users.filter((user) => remove.run(user).changes > 0)
  },
  get(db: SqliteDb, user: string): UserRecord | undefined {
    return sqliteUsers.withCopies(db, 'address = ?', [user], 1)[0]
  },
  list(db: SqliteDb, options: UserListOptions): UserRecord[] {
    const {where, params} = listFilter(options)
    return sqliteUsers.withCopies(db, where, params, options.limit)
  },
  withCopies(db: SqliteDb, where: string, params: unknown[], limit: number): UserRecord[] {
    const users = db
      .prepare(USERS_WHERE_SQL(where))
      .raw()
      .all(...params, limit) as [number, string, string][]
    const copiesOf = db
      .prepare(
        'SELECT s.name FROM mailring_copies c JOIN mailring_servers s ON s.id = c.server_id WHERE c.user_id = ? ORDER BY c.position',
      )
      .pluck()
    return users.map(([id, user, domain]) => ({user, domain, copies: copiesOf.all(id) as string[]}))
  },
  count(db: SqliteDb): number {
    return db.prepare('SELECT count(*) FROM mailring_users').pluck().get() as number
  },
  /** In one read transaction unless the caller has one: a consistent snapshot even while another process writes (WAL). */
  async *scan(db: SqliteDb, chunkSize: number, guard: SqliteGuard): AsyncGenerator<string[]> {
    const page = db.prepare(USERS_PAGE_SQL).raw()
    const ownTransaction = !db.inTransaction
    if (ownTransaction) db.prepare('BEGIN').run()
    try {
      let after = 0
      for (;;) {
        const rows = guard(() => page.all(after, chunkSize) as [number, string][])
        if (rows.length === 0) return
        after = rows[rows.length - 1]![0]
        yield rows.map((row) => row[1])
      }
    } finally {
      if (ownTransaction && db.inTransaction) db.prepare('COMMIT').run()
    }
  },
  placements(db: SqliteDb, chunkSize: number, guard: SqliteGuard): PlacementScan {
    const servers = guard(() => sqliteServers.rows(db))
    const indexOfId = serverIndexById(servers)
    // Plucked numbers and strings, not row arrays: a million users would otherwise be millions of arrays.
    const idsAfter = db.prepare('SELECT id FROM mailring_users WHERE id > ? ORDER BY id LIMIT ?').pluck()
    const addressesBetween = db
      .prepare('SELECT address FROM mailring_users WHERE id BETWEEN ? AND ? ORDER BY id')
      .pluck()
    const copiesBetween = db.prepare(COPIES_BETWEEN_SQL).pluck()
    async function* chunks(): AsyncGenerator<PlacementChunk> {
      // One read transaction: a consistent snapshot even while another process writes (WAL).
      const ownTransaction = !db.inTransaction
      if (ownTransaction) db.prepare('BEGIN').run()
      try {
        let after = 0
        for (;;) {
          const chunk = guard(() => {
            const ids = idsAfter.all(after, chunkSize) as number[]
            if (ids.length === 0) return undefined
            const first = ids[0]!
            const last = ids[ids.length - 1]!
            const users = addressesBetween.all(first, last) as string[]
            const copies = copiesBetween.all(first, last) as number[]
            after = last
            return placementChunk(ids, users, copies, indexOfId)
          })
          if (!chunk) return
          yield chunk
        }
      } finally {
        if (ownTransaction && db.inTransaction) db.prepare('COMMIT').run()
      }
    }
    return {servers: servers.map((row) => row.name), chunks: chunks()}
  },
}

/** Rows per bulk INSERT: well below max_allowed_packet, large enough to be fast. */
const INSERT_CHUNK = 10_000

export const mysqlUsers = {
  /**
   * Chunks of users as one multi-row INSERT each: where the ids it gets are consecutive (`consecutive`,
   * see consecutiveAutoIncrement) and no user of the chunk exists, the ids follow from the first; otherwise
   * the chunk is upserted and its ids read back.
   */
  async insert(
    conn: MysqlConn,
    batches: Iterable<UserBatch>,
    tally: InsertTally,
    consecutive: boolean,
  ): Promise<void> {
    const serverIds = await mysqlServers.ids(conn)
    tally.begin(await mysqlUsers.lockIds(conn))
    let batchIndex = 0
    for (const batch of batches) {
      const ids = batchServerIds(batch, serverIds)
      for (let from = 0; from < batch.users.length; from += INSERT_CHUNK) {
        const to = Math.min(batch.users.length, from + INSERT_CHUNK)
        const rows: [string, string][] = []
        for (let i = from; i < to; i++) rows.push([batch.users[i]!, batch.domains[i]!])
        // userIds[i - from]: the id of a user added now, 0 for one that existed or repeats.
        const userIds = new Float64Array(to - from)
        let fast = false
        if (consecutive) {
          await conn.query('SAVEPOINT chunk')
          try {
            const [info] = await conn.query<ResultSetHeader>(
              'INSERT INTO mailring_users (address, domain) VALUES ?',
              [rows],
            )
            if (info.affectedRows === rows.length) {
              for (let i = from; i < to; i++) {
                userIds[i - from] = info.insertId + (i - from)
                tally.add(info.insertId + (i - from), batchIndex, i)
              }
              fast = true
            } else await conn.query('ROLLBACK TO SAVEPOINT chunk')
          } catch (error) {
            if ((error as {code?: string}).code !== 'ER_DUP_ENTRY') throw error
            await conn.query('ROLLBACK TO SAVEPOINT chunk')
          }
        }
        if (!fast) {
          // Some of these users exist or repeat: insert the others, then tell them apart by id.
          const idOf = await mysqlUsers.upsert(conn, rows)
          for (let i = from; i < to; i++) {
            const id = idOf.get(batch.users[i]!)!
            if (tally.add(id, batchIndex, i)) userIds[i - from] = id
          }
        }
        const copies: number[][] = []
        for (let i = from; i < to; i++) {
          const userId = userIds[i - from]!
          if (userId === 0) continue
          forEachCopy(batch, i, ids, (position, serverId) => copies.push([userId, position, serverId]))
        }
        await mysqlUsers.insertCopies(conn, copies)
      }
      batchIndex++
    }
    tally.end()
  },
  async replace(
    conn: MysqlConn,
    batches: Iterable<UserBatch>,
    remove: readonly string[],
  ): Promise<ReplaceUsersResult> {
    const tally = new ReplaceTally()
    const serverIds = await mysqlServers.ids(conn)
    const firstNewId = (await mysqlUsers.lockIds(conn)) + 1
    for (const batch of batches) {
      const ids = batchServerIds(batch, serverIds)
      for (let from = 0; from < batch.users.length; from += INSERT_CHUNK) {
        const to = Math.min(batch.users.length, from + INSERT_CHUNK)
        // The last entry of a user wins: index of each user's last entry in this chunk.
        const last = new Map<string, number>()
        for (let i = from; i < to; i++) last.set(batch.users[i]!, i)
        const rows = [...last.values()].map((i) => [batch.users[i]!, batch.domains[i]!])
        const idOf = await mysqlUsers.upsert(conn, rows)
        const userIds = [...idOf.values()]
        await conn.query('DELETE FROM mailring_copies WHERE user_id IN (?)', [userIds])
        const copies: number[][] = []
        for (const i of last.values()) {
          const id = idOf.get(batch.users[i]!)!
          tally.user(id, id >= firstNewId)
          forEachCopy(batch, i, ids, (position, serverId) => copies.push([id, position, serverId]))
        }
        await mysqlUsers.insertCopies(conn, copies)
      }
    }
    for (let from = 0; from < remove.length; from += INSERT_CHUNK) {
      const [info] = await conn.query<ResultSetHeader>('DELETE FROM mailring_users WHERE address IN (?)', [
        remove.slice(from, from + INSERT_CHUNK),
      ])
      tally.result.removed += info.affectedRows
    }
    return tally.result
  },
  async remove(conn: MysqlConn, users: readonly string[]): Promise<string[]> {
    const removed: string[] = []
    for (let from = 0; from < users.length; from += INSERT_CHUNK) {
      const part = users.slice(from, from + INSERT_CHUNK)
      const existing = await mysqlUsers.ids(conn, part)
      if (existing.size === 0) continue
      await conn.query('DELETE FROM mailring_users WHERE id IN (?)', [[...existing.values()]])
      removed.push(...part.filter((user) => existing.has(user)))
    }
    return removed
  },
  async get(conn: MysqlConn, user: string): Promise<UserRecord | undefined> {
    return (await mysqlUsers.withCopies(conn, 'address = ?', [user], 1))[0]
  },
  async list(conn: MysqlConn, options: UserListOptions): Promise<UserRecord[]> {
    const {where, params} = listFilter(options)
    return mysqlUsers.withCopies(conn, where, params, options.limit)
  },
  async withCopies(conn: MysqlConn, where: string, params: unknown[], limit: number): Promise<UserRecord[]> {
    const [users] = await conn.query<Row[]>(USERS_WHERE_SQL(where), [...params, limit])
    if (users.length === 0) return []
    const [copies] = await conn.query<Row[]>(
      'SELECT c.user_id, s.name FROM mailring_copies c JOIN mailring_servers s ON s.id = c.server_id WHERE c.user_id IN (?) ORDER BY c.user_id, c.position',
      [users.map((row) => row.id)],
    )
    const byUser = new Map<number, string[]>()
    for (const row of copies) {
      const list = byUser.get(Number(row.user_id)) ?? []
      list.push(String(row.name))
      byUser.set(Number(row.user_id), list)
    }
    return users.map((row) => ({
      user: String(row.address),
      domain: String(row.domain),
      copies: byUser.get(Number(row.id)) ?? [],
    }))
  },
  async count(conn: MysqlConn): Promise<number> {
    const [[row]] = await conn.query<Row[]>('SELECT COUNT(*) AS n FROM mailring_users')
    return Number(row!.n)
  },
  /** The ids of these users that exist, by address. */
  async ids(conn: MysqlConn, users: readonly string[]): Promise<Map<string, number>> {
    if (users.length === 0) return new Map()
    const rows = await arrayRows(conn, 'SELECT address, id FROM mailring_users WHERE address IN (?)', [users])
    return new Map(rows.map((row) => [row[0] as string, Number(row[1])]))
  },
  /** The highest user id (0 for none), read FOR UPDATE: ids above it are then the users this transaction adds. */
  async lockIds(conn: MysqlConn): Promise<number> {
    const [[top]] = await conn.query<Row[]>(
      'SELECT COALESCE(MAX(id), 0) AS top FROM mailring_users FOR UPDATE',
    )
    return Number(top!.top)
  },
  /** Whether a multi-row INSERT gets consecutive ids (innodb_autoinc_lock_mode 0 or 1, increment 1). */
  async consecutiveAutoIncrement(conn: MysqlConn): Promise<boolean> {
    const [[row]] = await conn.query<Row[]>(
      'SELECT @@innodb_autoinc_lock_mode AS mode, @@auto_increment_increment AS step',
    )
    return Number(row!.mode) !== 2 && Number(row!.step) === 1
  },
  /** Adds the users (address, domain) that do not exist yet; the ids of all of them, by address. */
  async upsert(conn: MysqlConn, rows: string[][]): Promise<Map<string, number>> {
    await conn.query(
      'INSERT INTO mailring_users (address, domain) VALUES ? ON DUPLICATE KEY UPDATE id = id',
      [rows],
    )
    return mysqlUsers.ids(
      conn,
      rows.map((row) => row[0]!),
    )
  },
  async insertCopies(conn: MysqlConn, copies: number[][]): Promise<void> {
    for (let from = 0; from < copies.length; from += INSERT_CHUNK * 2)
      await conn.query('INSERT INTO mailring_copies (user_id, position, server_id) VALUES ?', [
        copies.slice(from, from + INSERT_CHUNK * 2),
      ])
  },
  async *scan(snapshot: MysqlSnapshot, chunkSize: number, guard: MysqlGuard): AsyncGenerator<string[]> {
    try {
      let after = 0
      for (;;) {
        const rows = await guard(() => arrayRows(snapshot.conn, USERS_PAGE_SQL, [after, chunkSize]))
        if (rows.length === 0) return
        after = Number(rows[rows.length - 1]![0])
        yield rows.map((row) => row[1] as string)
      }
    } finally {
      await snapshot.end()
    }
  },
  /** The snapshot is ended when the chunks are (or when reading the servers fails). */
  async placements(snapshot: MysqlSnapshot, chunkSize: number, guard: MysqlGuard): Promise<PlacementScan> {
    const {conn} = snapshot
    let servers: ServerRow[]
    try {
      servers = await guard(() => mysqlServers.rows(conn))
    } catch (error) {
      await snapshot.end()
      throw error
    }
    const indexOfId = serverIndexById(servers)
    async function* chunks(): AsyncGenerator<PlacementChunk> {
      try {
        let after = 0
        for (;;) {
          const chunk = await guard(async () => {
            const users = await arrayRows(conn, USERS_PAGE_SQL, [after, chunkSize])
            if (users.length === 0) return undefined
            const first = users[0]![0] as number
            const last = users[users.length - 1]![0] as number
            const copies = await arrayRows(conn, COPIES_BETWEEN_SQL, [first, last])
            after = last
            return placementChunk(
              users.map((row) => row[0] as number),
              users.map((row) => row[1] as string),
              copies.map((row) => Number(row[0])),
              indexOfId,
            )
          })
          if (!chunk) return
          yield chunk
        }
      } finally {
        await snapshot.end()
      }
    }
    return {servers: servers.map((row) => row.name), chunks: chunks()}
  },
}
