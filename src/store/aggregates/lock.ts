/**
 * The cluster lock, held by whoever changes placements: the holder and the errors every store gives alike,
 * then each dialect. SQLite: a row in the file with a token that every write checks. MySQL: GET_LOCK held by
 * a dedicated connection for the life of the lock, and a row naming the holder.
 */
import {randomUUID} from 'node:crypto'
import {hostname} from 'node:os'

import type {Connection, ConnectionOptions, Pool} from 'mysql2/promise'

import {formatDuration} from '../../core/duration.js'
import {ExitCode, MailringError} from '../../core/errors.js'
import type {ClusterLock, LockHolder} from '../store.js'
import type {MysqlConn, MysqlGuard, Row, SqliteDb, SqliteGuard} from './sql.js'

/** Whether a process with this pid runs on this host (EPERM: it runs, as another user). */
export function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM'
  }
}

/** This process, taking the cluster lock now for `command`. */
function holderNow(command: string): LockHolder {
  return {pid: process.pid, host: hostname(), command, since: new Date().toISOString()}
}

export function describeHolder(holder: LockHolder): string {
  return `"mailring ${holder.command}" (pid ${holder.pid} on ${holder.host}, since ${holder.since})`
}

/** Whether two records name the same holder (compare-and-delete of `mailring unlock`). */
function sameHolder(a: LockHolder, b: LockHolder): boolean {
  return a.pid === b.pid && a.host === b.host && a.command === b.command && a.since === b.since
}

/** The cluster lock is taken: the one-line error of every store, which keeps the holder for callers that wait. */
export class LockedError extends MailringError {
  constructor(
    message: string,
    /** Unknown while another process is just taking or releasing the lock. */
    readonly holder?: LockHolder,
  ) {
    super(message, {code: 'locked', exitCode: ExitCode.locked})
  }
}

/** The error when `holder` has the lock; `waitedMs`: after waiting that long for it (--wait). */
export function lockedError(holder: LockHolder, waitedMs?: number): LockedError {
  // A holder on this host that no longer runs is taken over at once: only one elsewhere may need unlock.
  const gone = holder.host === hostname() ? '' : '; if it no longer runs, `mailring unlock` frees the lock'
  return new LockedError(
    waitedMs === undefined
      ? `The cluster is locked by ${describeHolder(holder)}: wait for it to finish and try again (--wait 5m waits for it)${gone}.`
      : `The cluster is still locked by ${describeHolder(holder)} after waiting ${formatDuration(waitedMs)}: try again later${gone}.`,
    holder,
  )
}

/** The error of a holder whose lock another process broke with `mailring unlock`. */
function lockBrokenError(holder: LockHolder): MailringError {
  return new MailringError(
    `Lost the cluster lock of ${describeHolder(holder)}: \`mailring unlock\` broke it; stopped before writing anything more. Run the command again.`,
    {code: 'lock_lost', exitCode: ExitCode.locked},
  )
}

const HOLDER_SQL = 'SELECT pid, host, command, since FROM mailring_cluster_lock WHERE id = 1'
const RELEASE_SQL = 'DELETE FROM mailring_cluster_lock WHERE id = 1 AND token = ?'

function holderOfRow(row: Row): LockHolder {
  return {
    pid: Number(row.pid),
    host: String(row.host),
    command: String(row.command),
    since: String(row.since),
  }
}

/** The cluster lock of a SQLite store: a row in the file, whose token every write of the holder checks. */
export class SqliteLocking {
  /** The lock this store holds: its token in the lock row. */
  private held?: {token: string; holder: LockHolder}

  constructor(
    private readonly db: SqliteDb,
    private readonly guard: SqliteGuard,
  ) {}

  /** Takes the lock, or takes over one left by a process of this host that no longer runs. */
  acquire(command: string): ClusterLock {
    const token = randomUUID()
    const holder = holderNow(command)
    const replacedStale = this.guard(() =>
      this.db
        .transaction(() => {
          const current = this.row()
          let stale: LockHolder | undefined
          if (current) {
            if (current.host === holder.host && !processAlive(current.pid)) stale = current
            else throw lockedError(current)
          }
          this.db
            .prepare(
              `INSERT INTO mailring_cluster_lock (id, token, pid, host, command, since) VALUES (1, ?, ?, ?, ?, ?)
               ON CONFLICT (id) DO UPDATE SET token = excluded.token, pid = excluded.pid, host = excluded.host,
                 command = excluded.command, since = excluded.since`,
            )
            .run(token, holder.pid, holder.host, holder.command, holder.since)
          return stale
        })
        .immediate(),
    )
    const held = {token, holder}
    this.held = held
    return {
      holder,
      ...(replacedStale ? {replacedStale} : {}),
      // The lock is a row in the file: only `mailring unlock` takes it away, which the checks below notice.
      lost: new Promise<Error>(() => {}),
      assertHeld: () => {
        if (this.held === held) this.guard(() => this.check())
      },
      release: async () => {
        if (this.held !== held) return
        this.held = undefined
        if (!this.db.open) return
        this.guard(() => this.db.prepare(RELEASE_SQL).run(token))
      },
    }
  }

  holder(): LockHolder | undefined {
    return this.row()
  }

  /** Compare-and-delete: breaks the lock only if `expected` holds it. */
  break(expected: LockHolder): boolean {
    return (
      this.db
        .prepare(
          'DELETE FROM mailring_cluster_lock WHERE id = 1 AND pid = ? AND host = ? AND command = ? AND since = ?',
        )
        .run(expected.pid, expected.host, expected.command, expected.since).changes === 1
    )
  }

  /** Throws (exit code 3) when the lock this store holds was broken by `mailring unlock`; every write calls it. */
  check(): void {
    if (!this.held) return
    const token = this.db.prepare('SELECT token FROM mailring_cluster_lock WHERE id = 1').pluck().get()
    if (token !== this.held.token) throw lockBrokenError(this.held.holder)
  }

  private row(): LockHolder | undefined {
    return this.db.prepare(HOLDER_SQL).get() as LockHolder | undefined
  }
}

/** The name of the cluster lock (GET_LOCK). */
const CLUSTER_LOCK_NAME = 'mailring_cluster'

/** The cluster lock of a MySQL store: GET_LOCK on a connection of its own; the lock is lost with it. */
export class MysqlLocking {
  private held?: MysqlLock

  constructor(
    private readonly pool: Pool,
    private readonly options: ConnectionOptions,
    private readonly location: string,
    private readonly guard: MysqlGuard,
    private readonly storeError: (error: unknown) => unknown,
  ) {}

  async acquire(command: string): Promise<ClusterLock> {
    if (this.held && !this.held.isLost()) throw lockedError(this.held.holder)
    const holder = holderNow(command)
    let conn: Connection | undefined
    try {
      // mysql2 loads when a MySQL store is used, not with every command (engine/lock.ts imports this file).
      const {default: mysql} = await import('mysql2/promise')
      conn = await mysql.createConnection(this.options)
      const [[row]] = await conn.query<Row[]>(
        `SELECT GET_LOCK('${CLUSTER_LOCK_NAME}', 0) AS got, CONNECTION_ID() AS id`,
      )
      if (Number(row!.got) !== 1) {
        const current = await this.row(this.pool)
        throw current
          ? lockedError(current)
          : new LockedError(
              `The cluster is locked by another mailring process that is just starting or stopping: try again.`,
            )
      }
      // A row left behind means its holder's connection died without releasing: tell the new holder.
      const previous = await this.row(conn)
      // The token names the connection that holds GET_LOCK, so that `mailring unlock` ends that one only.
      const token = `${Number(row!.id)}:${randomUUID()}`
      await conn.query(
        'REPLACE INTO mailring_cluster_lock (id, token, pid, host, command, since) VALUES (1, ?, ?, ?, ?, ?)',
        [token, holder.pid, holder.host, holder.command, holder.since],
      )
      const lock = new MysqlLock(conn, Number(row!.id), token, holder, previous, this.location, () => {
        if (this.held === lock) this.held = undefined
      })
      this.held = lock
      return lock
    } catch (error) {
      await conn?.end().catch(() => {})
      throw this.storeError(error)
    }
  }

  async holder(): Promise<LockHolder | undefined> {
    return this.guard(async () => ((await this.connection()) === undefined ? undefined : this.row(this.pool)))
  }

  /**
   * Compare-and-delete: breaks the lock only if `expected` holds it, by killing the connection that holds
   * GET_LOCK (so that it is free at once).
   */
  async break(expected: LockHolder): Promise<boolean> {
    return this.guard(async () => {
      const holding = await this.connection()
      if (holding === undefined) return false
      const [rows] = await this.pool.query<Row[]>(
        'SELECT token, pid, host, command, since FROM mailring_cluster_lock WHERE id = 1',
      )
      const row = rows[0]
      // The row must be the holding connection's own: a row left by a holder whose connection died, read
      // while a new holder has just taken GET_LOCK, names someone who no longer holds it.
      if (
        !row ||
        !sameHolder(holderOfRow(row), expected) ||
        String(row.token).split(':')[0] !== String(holding)
      )
        return false
      try {
        await this.pool.query(`KILL CONNECTION ${holding}`)
      } catch (error) {
        // Gone already: its holder released the lock, or its connection ended, in the meantime.
        if ((error as {code?: string}).code === 'ER_NO_SUCH_THREAD') return false
        throw error
      }
      await this.pool.query(RELEASE_SQL, [row.token])
      // KILL returns before the killed connection has ended and freed GET_LOCK: wait for that (briefly).
      for (let waited = 0; waited < 5_000 && (await this.connection()) === holding; waited += 50)
        await new Promise((resolve) => setTimeout(resolve, 50))
      return true
    })
  }

  /** Checks, inside a write transaction about to commit, that a lock this store holds is still its own. */
  async verify(conn: MysqlConn): Promise<void> {
    if (this.held) await this.held.verify(conn)
  }

  /** Releases the lock this store holds, if any (closing the store). */
  async release(): Promise<void> {
    await this.held?.release()
  }

  /** The id of the connection that holds GET_LOCK, if one does. */
  private async connection(): Promise<number | undefined> {
    const [[row]] = await this.pool.query<Row[]>(`SELECT IS_USED_LOCK('${CLUSTER_LOCK_NAME}') AS id`)
    return row!.id === null ? undefined : Number(row!.id)
  }

  private async row(conn: MysqlConn): Promise<LockHolder | undefined> {
    const [rows] = await conn.query<Row[]>(HOLDER_SQL)
    return rows[0] && holderOfRow(rows[0])
  }
}

/** The cluster lock: GET_LOCK held by a dedicated connection; the lock is lost when that connection is. */
class MysqlLock implements ClusterLock {
  readonly lost: Promise<Error>
  readonly replacedStale?: LockHolder
  private lostError?: MailringError
  private released = false
  private resolveLost!: (error: Error) => void

  constructor(
    private readonly conn: Connection,
    private readonly connectionId: number,
    private readonly token: string,
    readonly holder: LockHolder,
    previous: LockHolder | undefined,
    private readonly location: string,
    private readonly onEnd: () => void,
  ) {
    if (previous) this.replacedStale = previous
    this.lost = new Promise((resolve) => (this.resolveLost = resolve))
    const markLost = (): void => {
      if (this.released || this.lostError) return
      this.lostError = new MailringError(
        `Lost the cluster lock: the database connection that held it (${location}) broke; stopped before writing anything more. Run the command again.`,
        {code: 'lock_lost', exitCode: ExitCode.locked},
      )
      // The store keeps this lock as its own until released: every write it tries now is refused.
      this.resolveLost(this.lostError)
    }
    conn.on('error', markLost)
    conn.on('end', markLost)
    // The underlying socket closing (e.g. KILL on the server) also ends the lock.
    ;(conn as unknown as {connection: {stream?: NodeJS.EventEmitter}}).connection.stream?.on(
      'close',
      markLost,
    )
  }

  isLost(): boolean {
    return this.lostError !== undefined
  }

  assertHeld(): void {
    if (this.lostError) throw this.lostError
    if (this.released)
      throw new MailringError(`The cluster lock of ${describeHolder(this.holder)} was released.`, {
        code: 'lock_lost',
        exitCode: ExitCode.locked,
      })
  }

  /** Checks, inside a transaction about to commit, that this connection still holds the lock. */
  async verify(conn: MysqlConn): Promise<void> {
    this.assertHeld()
    const [[row]] = await conn.query<Row[]>(`SELECT IS_USED_LOCK('${CLUSTER_LOCK_NAME}') AS id`)
    if (row!.id === null || Number(row!.id) !== this.connectionId) {
      this.lostError ??= new MailringError(
        `Lost the cluster lock: the database (${this.location}) no longer holds it for this process; nothing of this step was written. Run the command again.`,
        {code: 'lock_lost', exitCode: ExitCode.locked},
      )
      this.resolveLost(this.lostError)
      throw this.lostError
    }
  }

  async release(): Promise<void> {
    if (this.released) return
    this.released = true
    this.onEnd()
    if (!this.lostError) {
      await this.conn.query(RELEASE_SQL, [this.token]).catch(() => {})
      await this.conn.query(`DO RELEASE_LOCK('${CLUSTER_LOCK_NAME}')`).catch(() => {})
    }
    await this.conn.end().catch(() => {})
  }
}
