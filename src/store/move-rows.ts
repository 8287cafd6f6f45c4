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
  hasOpenMove: boolean
  /** Whether the user already has a copy on the server the move goes to. */
  holdsTarget: boolean
}

/** Refuses a move that cannot be journaled, naming why. */
export function checkMove(move: NewMove, check: MoveCheck, ids: ReadonlyMap<string, number>): void {
  const refuse = (why: string) =>
    new MailringError(`Cannot journal the move of ${move.user} from ${move.from} to ${move.to}: ${why}.`, {
      code: 'move_refused',
    })
  if (check.userId === undefined) throw refuse('no such user')
  const from = ids.get(move.from)
  const to = ids.get(move.to)
  if (from === undefined || to === undefined)
    throw refuse(`unknown server ${from === undefined ? move.from : move.to}`)
  if (from === to) throw refuse('the two servers are the same')
  if (check.hasOpenMove)
    throw refuse('the user has a move that is not finished (see mailring rebalance status)')
  if (check.copyAt !== from) throw refuse(`its copy ${move.position + 1} is not on ${move.from}`)
  if (check.holdsTarget) throw refuse(`it has a copy on ${move.to} already`)
}

export interface MoveRow {
  id: number
  user: string
  position: number
  from: string
  to: string
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
  'JOIN mailring_servers sf ON sf.id = m.from_server_id JOIN mailring_servers st ON st.id = m.to_server_id'

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
