/**
 * The move journal's logic that does not depend on the SQL dialect: which states are open, the checks a
 * move must pass before it is journaled, and a row as a MoveRecord.
 */
import {MailringError} from '../core/errors.js'
import {OPEN_MOVE_STATES, type MoveRecord, type MoveState, type NewMove} from './store.js'

/** The open states as SQL literals, for `state IN (...)`. */
export const OPEN_STATES_SQL = OPEN_MOVE_STATES.map((s) => `'${s}'`).join(', ')

/** States a move may be in before its switch: cancelling it changes nothing in the placement. */
export const UNSWITCHED_STATES_SQL = ['planned', 'copying', 'verified'].map((s) => `'${s}'`).join(', ')

/** What a store knows about a move's user before journaling it. */
export interface MoveCheck {
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
export function moveText(move: {user: string; from: string | null; to: string | null}): string {
  if (move.from === null) return `the new copy of ${move.user} on ${String(move.to)}`
  if (move.to === null) return `the drop of ${move.user}'s copy on ${move.from}`
  return `the move of ${move.user} from ${move.from} to ${move.to}`
}

/** Refuses a move that cannot be journaled, naming why. */
export function checkMove(move: NewMove, check: MoveCheck, ids: ReadonlyMap<string, number>): void {
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

export interface MoveRow {
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

export function moveRecordOf(row: MoveRow): MoveRecord {
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
export const MOVE_SELECT =
  'SELECT m.id, u.address AS user, m.position, sf.name AS `from`, st.name AS `to`, m.state, m.plan, ' +
  'm.attempts, m.last_error, m.updated_at, m.trash FROM mailring_moves m ' +
  'JOIN mailring_users u ON u.id = m.user_id ' +
  'LEFT JOIN mailring_servers sf ON sf.id = m.from_server_id LEFT JOIN mailring_servers st ON st.id = m.to_server_id'

/** The move a switch works on, as it reads it (FOR UPDATE appended by MySQL). */
export const SWITCH_MOVE_SQL =
  'SELECT user_id, position, from_server_id, to_server_id, state FROM mailring_moves WHERE id = ?'

export interface SwitchRow {
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
export function switchStatements(
  move: SwitchRow,
  copies: number,
): {sql: string; params: (number | null)[]; mustChange?: string}[] {
  const user = move.user_id
  if (move.from_server_id !== null && move.to_server_id !== null)
    return [
      {
        sql: 'UPDATE mailring_copies SET server_id = ? WHERE user_id = ? AND position = ? AND server_id = ?',
        params: [move.to_server_id, user, move.position, move.from_server_id],
        mustChange: 'the copy is no longer on the server it leaves',
      },
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
  ]
}

/** Why a switch must not happen, before any statement: an added copy already there, the last copy dropped. */
export function switchProblem(move: SwitchRow, copies: number, holdsTarget: boolean): string | undefined {
  if (move.state !== 'verified') return `it is ${move.state}, not verified`
  if (move.to_server_id !== null && move.from_server_id === null && holdsTarget)
    return 'the user has a copy on that server already'
  if (move.to_server_id === null && copies <= 1) return 'it would leave the user no copy'
  return undefined
}

export function switchRefused(id: number, why: string): MailringError {
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
/** Closes a caught-up move, recording where its old copy went. */
export const RETIRE_MOVE_SQL =
  "UPDATE mailring_moves SET state = 'retired', trash = ?, updated_at = ? WHERE id = ? AND state = 'caught-up'"
/** Retired moves whose old copy is still in a trash folder. */
export const RETIRED_MOVES_SQL = `${MOVE_SELECT} WHERE m.state = 'retired' AND m.trash IS NOT NULL AND m.updated_at < ? ORDER BY m.id`

/** Finished moves from or to a server: history that goes with it. */
export const DELETE_MOVES_OF_SERVER_SQL =
  'DELETE FROM mailring_moves WHERE from_server_id = ? OR to_server_id = ?'
