/**
 * The move journal (mailring_moves, docs/decisions/0002-rebalance-execution.md): which states are open,
 * the checks a move must pass before it is journaled, the switch's statements, a row as a MoveRecord; then
 * the journal's methods in each dialect.
 */
import {MailringError} from '../../core/errors.js'
import {OPEN_MOVE_STATES, type MoveRecord, type MoveState, type NewMove} from '../store.js'
import {mysqlServers, sqliteServers} from './servers.js'
import {affected, type MysqlConn, type Row, type SqliteDb} from './sql.js'
import {DROP_USER_STATES_SQL} from './sync-states.js'

/** The open states as SQL literals, for `state IN (...)`. */
export const OPEN_STATES_SQL = OPEN_MOVE_STATES.map((s) => `'${s}'`).join(', ')

/** States a move may be in before its switch: cancelling it changes nothing in the placement. */
const UNSWITCHED_STATES_SQL = ['planned', 'copying', 'verified'].map((s) => `'${s}'`).join(', ')

/** What a store knows about a move's user before journaling it. */
interface MoveCheck {
  userId: number | undefined
  /** The server id of the user's copy at the move's position, if any. */
  copyAt: number | undefined
  /** How many copies the user has. */
  copies: number
  hasOpenMove: boolean
  /** Whether the user already has a copy on the server the move goes to. */
  holdsTarget: boolean
}

/** A move in words: a transfer, a copy added, or a copy dropped. */
function moveText(move: {user: string; from: string | null; to: string | null}): string {
  if (move.from === null) return `the new copy of ${move.user} on ${String(move.to)}`
  if (move.to === null) return `the drop of ${move.user}'s copy on ${move.from}`
  return `the move of ${move.user} from ${move.from} to ${move.to}`
}

/** Refuses a move that cannot be journaled, naming why. */
function checkMove(move: NewMove, check: MoveCheck, ids: ReadonlyMap<string, number>): void {
  const refuse = (why: string) =>
    new MailringError(`Cannot journal ${moveText(move)}: ${why}.`, {code: 'move_refused'})
  if (check.userId === undefined) throw refuse('no such user')
  if (move.from === null && move.to === null) throw refuse('it names no server')
  const unknown = [move.from, move.to].find((s) => s !== null && !ids.has(s))
  if (unknown) throw refuse(`unknown server ${unknown}`)
  const from = move.from === null ? undefined : ids.get(move.from)
  const to = move.to === null ? undefined : ids.get(move.to)
  if (from === to) throw refuse('the two servers are the same')
  if (check.hasOpenMove)
    throw refuse('the user has a move that is not finished (see mailring rebalance status)')
  if (from !== undefined && check.copyAt !== from)
    throw refuse(`its copy ${move.position + 1} is not on ${move.from}`)
  if (
    from === undefined &&
    (!Number.isInteger(move.position) || move.position < 0 || move.position > check.copies)
  )
    throw refuse(`it has ${check.copies} copies: no position ${move.position + 1} for a new one`)
  if (to === undefined && check.copies <= 1) throw refuse('it would have no copy left')
  if (check.holdsTarget) throw refuse(`it has a copy on ${move.to} already`)
}

interface MoveRow {
  id: number
  user: string
  position: number
  from: string | null
  to: string | null
  state: string
  plan: string
  attempts: number
  last_error: string | null
  updated_at: string
  trash: string | null
}

function moveRecordOf(row: MoveRow): MoveRecord {
  return {
    id: Number(row.id),
    user: row.user,
    position: Number(row.position),
    from: row.from,
    to: row.to,
    state: row.state as MoveState,
    plan: row.plan,
    attempts: Number(row.attempts),
    lastError: row.last_error,
    updatedAt: row.updated_at,
    trash: row.trash,
  }
}

/** The SELECT of moves with their user's address and the servers' names. */
const MOVE_SELECT =
  'SELECT m.id, u.address AS user, m.position, sf.name AS `from`, st.name AS `to`, m.state, m.plan, ' +
  'm.attempts, m.last_error, m.updated_at, m.trash FROM mailring_moves m ' +
  'JOIN mailring_users u ON u.id = m.user_id ' +
  'LEFT JOIN mailring_servers sf ON sf.id = m.from_server_id LEFT JOIN mailring_servers st ON st.id = m.to_server_id'
const OPEN_MOVES_SQL = `${MOVE_SELECT} WHERE m.state IN (${OPEN_STATES_SQL}) ORDER BY m.id`
/** Retired moves whose old copy is still in a trash folder. */
const RETIRED_MOVES_SQL = `${MOVE_SELECT} WHERE m.state = 'retired' AND m.trash IS NOT NULL AND m.updated_at < ? ORDER BY m.id`

/** What journaling a move reads about its user. */
const USER_ID_SQL = 'SELECT id FROM mailring_users WHERE address = ?'
const COPY_AT_SQL = 'SELECT server_id FROM mailring_copies WHERE user_id = ? AND position = ?'
const HOLDS_COPY_SQL = 'SELECT 1 FROM mailring_copies WHERE user_id = ? AND server_id = ? LIMIT 1'
const OPEN_MOVE_OF_USER_SQL = `SELECT 1 FROM mailring_moves WHERE user_id = ? AND state IN (${OPEN_STATES_SQL}) LIMIT 1`
const INSERT_MOVE_SQL =
  'INSERT INTO mailring_moves (user_id, position, from_server_id, to_server_id, state, plan, updated_at) ' +
  "VALUES (?, ?, ?, ?, 'planned', ?, ?)"
/** The server ids of a move's insert (null: no such side). */
function serverIdsOf(move: NewMove, ids: ReadonlyMap<string, number>): (number | null | undefined)[] {
  return [move.from, move.to].map((name) => (name === null ? null : ids.get(name)))
}

/** Compare-and-set of a move's state (params from setStateParams). */
const SET_STATE_SQL =
  'UPDATE mailring_moves SET state = ?, attempts = attempts + ?, last_error = COALESCE(?, last_error), ' +
  'updated_at = ? WHERE id = ? AND state = ?'
function setStateParams(id: number, expected: MoveState, next: MoveState, error?: string): unknown[] {
  return [next, error === undefined ? 0 : 1, error ?? null, new Date().toISOString(), id, expected]
}

/** The move a switch works on, as it reads it (FOR UPDATE appended by MySQL). */
const SWITCH_MOVE_SQL =
  'SELECT user_id, position, from_server_id, to_server_id, state FROM mailring_moves WHERE id = ?'
const SWITCHED_SQL = "UPDATE mailring_moves SET state = 'switched', updated_at = ? WHERE id = ?"
/** Closes a caught-up move, recording where its old copy went. */
const RETIRE_MOVE_SQL =
  "UPDATE mailring_moves SET state = 'retired', trash = ?, updated_at = ? WHERE id = ? AND state = 'caught-up'"
const CANCEL_UNSWITCHED_SQL = `UPDATE mailring_moves SET state = 'cancelled', updated_at = ? WHERE state IN (${UNSWITCHED_STATES_SQL})`

interface SwitchRow {
  user_id: number
  position: number
  from_server_id: number | null
  to_server_id: number | null
  state: string
}

/**
 * The statements of a switch, in order, with their parameters, and the one whose change count must be 1
 * (`checked`, with what a refusal says). Positions are renumbered in two steps through negative numbers:
 * the primary key (user_id, position) is checked row by row, so a plain `position + 1` would collide.
 */
function switchStatements(
  move: SwitchRow,
  copies: number,
): {sql: string; params: (number | null)[]; mustChange?: string}[] {
  const user = move.user_id
  // The move's syncs changed the copies: the user's dsync states no longer hold (sync-states.ts).
  const dropStates = () => ({sql: DROP_USER_STATES_SQL, params: [user]})
  if (move.from_server_id !== null && move.to_server_id !== null)
    return [
      {
        sql: 'UPDATE mailring_copies SET server_id = ? WHERE user_id = ? AND position = ? AND server_id = ?',
        params: [move.to_server_id, user, move.position, move.from_server_id],
        mustChange: 'the copy is no longer on the server it leaves',
      },
      dropStates(),
    ]
  if (move.from_server_id === null) {
    const at = Math.min(move.position, copies)
    return [
      {
        sql: 'UPDATE mailring_copies SET position = -position - 2 WHERE user_id = ? AND position >= ?',
        params: [user, at],
      },
      {
        sql: 'UPDATE mailring_copies SET position = -position - 1 WHERE user_id = ? AND position < 0',
        params: [user],
      },
      {
        sql: 'INSERT INTO mailring_copies (user_id, position, server_id) VALUES (?, ?, ?)',
        params: [user, at, move.to_server_id],
      },
    ]
  }
  return [
    {
      sql: 'DELETE FROM mailring_copies WHERE user_id = ? AND position = ? AND server_id = ?',
      params: [user, move.position, move.from_server_id],
      mustChange: 'the copy is no longer on the server it leaves',
    },
    {
      sql: 'UPDATE mailring_copies SET position = -position WHERE user_id = ? AND position > ?',
      params: [user, move.position],
    },
    {
      sql: 'UPDATE mailring_copies SET position = -position - 1 WHERE user_id = ? AND position < 0',
      params: [user],
    },
    dropStates(),
  ]
}

/** Why a switch must not happen, before any statement: an added copy already there, the last copy dropped. */
function switchProblem(move: SwitchRow, copies: number, holdsTarget: boolean): string | undefined {
  if (move.state !== 'verified') return `it is ${move.state}, not verified`
  if (move.to_server_id !== null && move.from_server_id === null && holdsTarget)
    return 'the user has a copy on that server already'
  if (move.to_server_id === null && copies <= 1) return 'it would leave the user no copy'
  return undefined
}

function switchRefused(id: number, why: string): MailringError {
  return new MailringError(`Cannot switch move ${id}: ${why}.`, {code: 'move_switch_refused'})
}

export function serverHasOpenMoves(name: string): MailringError {
  return new MailringError(
    `Server ${name} is part of moves that are not finished: it cannot be deleted until they are (see mailring rebalance status).`,
    {code: 'server_moving'},
  )
}

/** Open moves from or to a server: they keep it from being deleted. */
export const OPEN_MOVES_OF_SERVER_SQL = `SELECT 1 FROM mailring_moves WHERE (from_server_id = ? OR to_server_id = ?) AND state IN (${OPEN_STATES_SQL}) LIMIT 1`
/** Finished moves from or to a server: history that goes with it. */
export const DELETE_MOVES_OF_SERVER_SQL =
  'DELETE FROM mailring_moves WHERE from_server_id = ? OR to_server_id = ?'

export const sqliteMoves = {
  journal(db: SqliteDb, plan: string, moves: readonly NewMove[]): number {
    const ids = sqliteServers.ids(db)
    const userId = db.prepare(USER_ID_SQL).pluck()
    const copyAt = db.prepare(COPY_AT_SQL).pluck()
    const holds = db.prepare(HOLDS_COPY_SQL).pluck()
    const count = db.prepare('SELECT count(*) FROM mailring_copies WHERE user_id = ?').pluck()
    const open = db.prepare(OPEN_MOVE_OF_USER_SQL).pluck()
    const insert = db.prepare(INSERT_MOVE_SQL)
    const now = new Date().toISOString()
    for (const move of moves) {
      const id = userId.get(move.user) as number | undefined
      checkMove(
        move,
        {
          userId: id,
          copyAt: id === undefined ? undefined : (copyAt.get(id, move.position) as number | undefined),
          copies: id === undefined ? 0 : (count.get(id) as number),
          hasOpenMove: id !== undefined && open.get(id) !== undefined,
          holdsTarget:
            id !== undefined && move.to !== null && holds.get(id, ids.get(move.to) ?? -1) !== undefined,
        },
        ids,
      )
      insert.run(id, move.position, ...serverIdsOf(move, ids), plan, now)
    }
    return moves.length
  },
  open(db: SqliteDb): MoveRecord[] {
    return (db.prepare(OPEN_MOVES_SQL).all() as MoveRow[]).map(moveRecordOf)
  },
  setState(db: SqliteDb, id: number, expected: MoveState, next: MoveState, error?: string): boolean {
    return db.prepare(SET_STATE_SQL).run(...setStateParams(id, expected, next, error)).changes > 0
  },
  switch(db: SqliteDb, id: number): void {
    const move = db.prepare(SWITCH_MOVE_SQL).get(id) as SwitchRow | undefined
    if (!move) throw switchRefused(id, 'no such move')
    const copies = db
      .prepare('SELECT count(*) FROM mailring_copies WHERE user_id = ?')
      .pluck()
      .get(move.user_id) as number
    const holdsTarget =
      move.to_server_id !== null &&
      db.prepare(HOLDS_COPY_SQL).get(move.user_id, move.to_server_id) !== undefined
    const problem = switchProblem(move, copies, holdsTarget)
    if (problem !== undefined) throw switchRefused(id, problem)
    for (const statement of switchStatements(move, copies)) {
      const changed = db.prepare(statement.sql).run(...statement.params).changes
      if (statement.mustChange !== undefined && changed !== 1) throw switchRefused(id, statement.mustChange)
    }
    db.prepare(SWITCHED_SQL).run(new Date().toISOString(), id)
  },
  retire(db: SqliteDb, id: number, trash: string | null): boolean {
    return db.prepare(RETIRE_MOVE_SQL).run(trash, new Date().toISOString(), id).changes > 0
  },
  retired(db: SqliteDb, before: string): MoveRecord[] {
    return (db.prepare(RETIRED_MOVES_SQL).all(before) as MoveRow[]).map(moveRecordOf)
  },
  cancelUnswitched(db: SqliteDb): number {
    return db.prepare(CANCEL_UNSWITCHED_SQL).run(new Date().toISOString()).changes
  },
}

export const mysqlMoves = {
  /** Each user's row is locked (FOR UPDATE) before its copies and moves are read. */
  async journal(conn: MysqlConn, plan: string, moves: readonly NewMove[]): Promise<number> {
    const ids = await mysqlServers.ids(conn)
    const now = new Date().toISOString()
    for (const move of moves) {
      const [[user]] = await conn.query<Row[]>(`${USER_ID_SQL} FOR UPDATE`, [move.user])
      const userId = user === undefined ? undefined : Number(user.id)
      let copyAt: number | undefined
      let copies = 0
      let hasOpenMove = false
      let holdsTarget = false
      if (userId !== undefined) {
        const [held] = await conn.query<Row[]>(HOLDS_COPY_SQL, [
          userId,
          move.to === null ? -1 : (ids.get(move.to) ?? -1),
        ])
        holdsTarget = held.length > 0
        const [[counted]] = await conn.query<Row[]>(
          'SELECT COUNT(*) AS n FROM mailring_copies WHERE user_id = ?',
          [userId],
        )
        copies = Number(counted!.n)
        const [[copy]] = await conn.query<Row[]>(COPY_AT_SQL, [userId, move.position])
        copyAt = copy === undefined ? undefined : Number(copy.server_id)
        const [open] = await conn.query<Row[]>(OPEN_MOVE_OF_USER_SQL, [userId])
        hasOpenMove = open.length > 0
      }
      checkMove(move, {userId, copyAt, copies, hasOpenMove, holdsTarget}, ids)
      await conn.query(INSERT_MOVE_SQL, [userId, move.position, ...serverIdsOf(move, ids), plan, now])
    }
    return moves.length
  },
  async open(conn: MysqlConn): Promise<MoveRecord[]> {
    const [rows] = await conn.query<Row[]>(OPEN_MOVES_SQL)
    return rows.map((row) => moveRecordOf(row as unknown as MoveRow))
  },
  async setState(
    conn: MysqlConn,
    id: number,
    expected: MoveState,
    next: MoveState,
    error?: string,
  ): Promise<boolean> {
    return (await affected(conn, SET_STATE_SQL, setStateParams(id, expected, next, error))) > 0
  },
  /**
   * The move's row and its user's row are locked first, then the user's copies. The store runs it READ
   * COMMITTED: the switch reads and renumbers one user's copies by ranges of (user_id, position), and under
   * REPEATABLE READ those ranges take gap locks that reach into the next user's rows, so that switches of
   * neighbouring users running at once deadlocked (seen with added copies, --parallel 3).
   */
  async switch(conn: MysqlConn, id: number): Promise<void> {
    const [[row]] = await conn.query<Row[]>(`${SWITCH_MOVE_SQL} FOR UPDATE`, [id])
    if (!row) throw switchRefused(id, 'no such move')
    await conn.query('SELECT id FROM mailring_users WHERE id = ? FOR UPDATE', [row.user_id])
    const idOf = (v: unknown) => (v === null || v === undefined ? null : Number(v))
    const move: SwitchRow = {
      user_id: Number(row.user_id),
      position: Number(row.position),
      from_server_id: idOf(row.from_server_id),
      to_server_id: idOf(row.to_server_id),
      state: String(row.state),
    }
    const [copyRows] = await conn.query<Row[]>(
      'SELECT server_id FROM mailring_copies WHERE user_id = ? FOR UPDATE',
      [move.user_id],
    )
    const holdsTarget = copyRows.some((c) => Number(c.server_id) === move.to_server_id)
    const problem = switchProblem(move, copyRows.length, holdsTarget)
    if (problem !== undefined) throw switchRefused(id, problem)
    for (const statement of switchStatements(move, copyRows.length)) {
      const changed = await affected(conn, statement.sql, statement.params)
      if (statement.mustChange !== undefined && changed !== 1) throw switchRefused(id, statement.mustChange)
    }
    await conn.query(SWITCHED_SQL, [new Date().toISOString(), id])
  },
  async retire(conn: MysqlConn, id: number, trash: string | null): Promise<boolean> {
    return (await affected(conn, RETIRE_MOVE_SQL, [trash, new Date().toISOString(), id])) > 0
  },
  async retired(conn: MysqlConn, before: string): Promise<MoveRecord[]> {
    const [rows] = await conn.query<Row[]>(RETIRED_MOVES_SQL, [before])
    return rows.map((row) => moveRecordOf(row as unknown as MoveRow))
  },
  async cancelUnswitched(conn: MysqlConn): Promise<number> {
    return affected(conn, CANCEL_UNSWITCHED_SQL, [new Date().toISOString()])
  },
}
