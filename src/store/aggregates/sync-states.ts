/**
 * dsync's saved state per user and ordered pair of copies (mailring_sync_states, schema 7): `doveadm sync
 * -s STATE`, run on the copy FROM where a change happened against the copy TO, syncs only what changed
 * since the state and prints the next one. A state belongs to an ordered pair: it covers the changes on
 * the side that runs the sync. And it holds only while no other sync changed either copy: an incremental
 * sync from a state older than a message both copies got another way (a sync between other copies) kept
 * the target's flags for it and lost a flag set on the source (seen on 2.3.19). So the states kept are
 * those of the user's last sync, no others: a save replaces the user's whole set, and a sync that prints
 * none (a move's, `sync user`'s without -f) saves none, dropping them. Only pairs of servers that hold the
 * user's copies now count, and a switch drops the user's states (moves.ts).
 */
import type {SyncState} from '../store.js'
import type {MysqlConn, Row, SqliteDb} from './sql.js'

const COPY_OF = (server: string) =>
  `EXISTS (SELECT 1 FROM mailring_copies c WHERE c.user_id = s.user_id AND c.server_id = s.${server})`

const STATES_SQL = `SELECT f.name AS from_name, t.name AS to_name, s.state
  FROM mailring_sync_states s
  JOIN mailring_users u ON u.id = s.user_id
  JOIN mailring_servers f ON f.id = s.from_server_id
  JOIN mailring_servers t ON t.id = s.to_server_id
  WHERE u.address = ? AND ${COPY_OF('from_server_id')} AND ${COPY_OF('to_server_id')}
  ORDER BY f.name, t.name`

/** One pair's state, inserted or replaced, only while both servers hold a copy of the user. */
const SAVE_SELECT = `SELECT u.id, f.id, t.id, ?, ?
  FROM mailring_users u, mailring_servers f, mailring_servers t
  WHERE u.address = ? AND f.name = ? AND t.name = ? AND f.id <> t.id
    AND EXISTS (SELECT 1 FROM mailring_copies c WHERE c.user_id = u.id AND c.server_id = f.id)
    AND EXISTS (SELECT 1 FROM mailring_copies c WHERE c.user_id = u.id AND c.server_id = t.id)`
const SQLITE_SAVE_SQL = `INSERT INTO mailring_sync_states (user_id, from_server_id, to_server_id, state, updated_at)
  ${SAVE_SELECT}
  ON CONFLICT (user_id, from_server_id, to_server_id) DO UPDATE SET state = excluded.state, updated_at = excluded.updated_at`
const MYSQL_SAVE_SQL = `INSERT INTO mailring_sync_states (user_id, from_server_id, to_server_id, state, updated_at)
  ${SAVE_SELECT}
  ON DUPLICATE KEY UPDATE state = VALUES(state), updated_at = VALUES(updated_at)`

/** What a switch runs: its syncs change the copies, so the user's states no longer hold. */
export const DROP_USER_STATES_SQL = 'DELETE FROM mailring_sync_states WHERE user_id = ?'

const DROP_BY_ADDRESS_SQL =
  'DELETE FROM mailring_sync_states WHERE user_id = (SELECT id FROM mailring_users WHERE address = ?)'

function stateOf(row: Row): SyncState {
  return {from: String(row.from_name), to: String(row.to_name), state: String(row.state)}
}

function saveParams(user: string, s: SyncState, now: string): string[] {
  return [s.state, now, user, s.from, s.to]
}

export const sqliteSyncStates = {
  list(db: SqliteDb, user: string): SyncState[] {
    return (db.prepare(STATES_SQL).all(user) as Row[]).map(stateOf)
  },
  /** Replaces the user's states with `states` (none: drops them); runs in the caller's transaction. */
  save(db: SqliteDb, user: string, states: readonly SyncState[]): number {
    const now = new Date().toISOString()
    db.prepare(DROP_BY_ADDRESS_SQL).run(user)
    const statement = db.prepare(SQLITE_SAVE_SQL)
    return states.reduce((saved, s) => saved + statement.run(...saveParams(user, s, now)).changes, 0)
  },
}

export const mysqlSyncStates = {
  async list(conn: MysqlConn, user: string): Promise<SyncState[]> {
    const [rows] = await conn.query<Row[]>(STATES_SQL, [user])
    return rows.map(stateOf)
  },
  /** Replaces the user's states with `states` (none: drops them); runs in the caller's transaction. */
  async save(conn: MysqlConn, user: string, states: readonly SyncState[]): Promise<number> {
    const now = new Date().toISOString()
    await conn.query(DROP_BY_ADDRESS_SQL, [user])
    let saved = 0
    for (const s of states) {
      const [result] = await conn.query(MYSQL_SAVE_SQL, saveParams(user, s, now))
      // MySQL counts an update of an existing row as 2 changed rows.
      if ((result as {affectedRows: number}).affectedRows > 0) saved++
    }
    return saved
  },
}
