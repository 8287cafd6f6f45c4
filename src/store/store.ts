/**
 * The one interface to mailring's state, whatever database holds it: the embedded SQLite store
 * (sqlite.ts) or the MySQL/MariaDB store (mysql.ts), which both pass the same contract suite
 * (test/store/contract.ts); what they compute alike lives in meta-rows.ts, topology-rows.ts and
 * user-rows.ts. Every method is async so that the networked store fits. Every change is one transaction:
 * a method either does all it says or nothing.
 *
 * Server references leave the store as names; bulk data (placements) travels as compact chunks whose
 * copies are small integers indexing a server list, so that a million users never become a million objects.
 *
 * The move journal (schema 3; 5: copies added or dropped, docs/decisions/0002-rebalance-execution.md) records every move before it
 * starts. Later issues add, through new schema migrations and new methods here: server health and a
 * replication queue.
 */
import type {Topology} from '../core/topology.js'

export interface StoreMeta {
  /** Schema version of the database (see src/store/migrations). */
  schemaVersion: number
  /** Placement algorithm version the current placements were computed with. */
  algorithm: number
  /** Random id given at `mailring init`: tells one cluster's plans from another's. */
  clusterId: string
  createdAt: string
}

/** Users to add as one batch: `copies` holds `copiesPerUser[i]` server indices per user into `servers`. */
export interface UserBatch {
  users: string[]
  domains: string[]
  /** copies of users[i] are copyServers[copyStart[i] .. copyStart[i + 1]), primary first. */
  copyStart: Int32Array
  copyServers: Int32Array
  /** Server names the indices in copyServers refer to. */
  servers: readonly string[]
}

export interface InsertUsersResult {
  inserted: number
  /** Users that were in the store before, as [batch index, index in batch]. */
  existing: [number, number][]
  /** Users given more than once in this call: where again, and where first. */
  repeated: {at: [number, number]; first: [number, number]}[]
  // With skipExisting false, any existing or repeated user means nothing was written (inserted 0).
}

/** The current placement of a run of users, ordered by the store's own key. */
export interface PlacementChunk {
  users: string[]
  /** copies of users[i] are copyServers[copyStart[i] .. copyStart[i + 1]), primary first. */
  copyStart: Int32Array
  /** Indices into PlacementScan.servers. */
  copyServers: Int32Array
}

export interface PlacementScan {
  /** Every server in the store when the scan began; copyServers index this list. */
  servers: readonly string[]
  chunks: AsyncIterable<PlacementChunk>
}

export interface UserRecord {
  user: string
  domain: string
  /** Current copies, primary first. */
  copies: string[]
}

export interface UserListOptions {
  domain?: string
  /** Keyset pagination: users sorting after this address. */
  after?: string
  limit: number
}

export interface ServerUsage {
  server: string
  copies: number
  /** Users whose first (primary) copy is on this server. */
  primaries: number
}

export interface LockHolder {
  pid: number
  host: string
  command: string
  /** ISO 8601 time the lock was taken. */
  since: string
}

export interface ClusterLock {
  readonly holder: LockHolder
  /** A lock left by a process that no longer runs (same host), taken over by this one. */
  readonly replacedStale?: LockHolder
  /**
   * Settles (never rejects) with the error to report when the lock is lost, e.g. when the database
   * connection that holds it breaks; stays pending where the store cannot tell at once (SQLite: a lock
   * broken by `mailring unlock` is noticed by assertHeld and by the next write).
   */
  readonly lost: Promise<Error>
  /** Throws that error (exit code 3) once the lock is lost: long operations call it between steps. */
  assertHeld(): void
  release(): Promise<void>
}

export interface ReplaceUsersResult {
  /** Users that did not exist and were created with their copies. */
  created: number
  /** Users that existed and whose copies were replaced. */
  replaced: number
  /** Users of the removal list that existed and were removed. */
  removed: number
}

/**
 * The operator's own users table (config section users_table), read only: mailring never alters it.
 * Either one column holds the whole address, or a local-part column and a domain column.
 */
export interface UsersTableSpec {
  table: string
  userColumn?: string
  localColumn?: string
  domainColumn?: string
  /** Where the spec came from, for messages, e.g. "mailring.yaml:7: users_table". */
  source: string
}

export interface UsersTableChunk {
  /** Addresses as the table holds them (not canonicalised); '' when empty or NULL. */
  users: string[]
  /** Per requested extra column, its value in each row ('' for NULL). */
  columns: string[][]
}

export interface UsersTable {
  /** The table's name, for messages. */
  readonly name: string
  /** Checks that these extra columns exist (MailringError, exit code 1, naming the missing one). */
  checkColumns(columns: readonly string[], source: string): Promise<void>
  /** Streams every row: the address and the given extra columns, a consistent snapshot. */
  rows(columns?: readonly string[], chunkSize?: number): AsyncIterable<UsersTableChunk>
  /**
   * The differences against mailring's users, computed by the database where it can do so through
   * indexes (undefined otherwise): `unmatched`, the addresses of rows that equal no mailring user byte for
   * byte (new users, or known users written differently); `unlisted`, the mailring users that no row
   * names (compared as the operator's column compares: a superset of the users to retire).
   */
  differences?(): Promise<{unmatched: AsyncIterable<string[]>; unlisted: AsyncIterable<string[]>} | undefined>
}

/** Where a move stands (docs/decisions/0002-rebalance-execution.md). */
export type MoveState =
  | 'planned'
  | 'copying'
  | 'verified'
  | 'switched'
  | 'caught-up'
  /** Finished: the old copy was moved aside to `trash` on the server it left (or there was none). */
  | 'retired'
  /** `rebalance cleanup` deleted the retired copy. */
  | 'cleaned'
  | 'failed'
  | 'cancelled'

/** Moves still to finish: a user has at most one of these at a time. */
export const OPEN_MOVE_STATES: readonly MoveState[] = [
  'planned',
  'copying',
  'verified',
  'switched',
  'caught-up',
]

/**
 * A move to journal: the copy at `position` of `user` goes from server `from` to server `to`. A copy-count
 * change has moves without a partner: no `from`, a copy is added on `to`, taking `position` (the copies
 * from there on move one further); no `to`, the copy at `position` (on `from`) is dropped (the copies after
 * it move one closer).
 */
export interface NewMove {
  user: string
  position: number
  from: string | null
  to: string | null
}

export interface MoveRecord extends NewMove {
  id: number
  state: MoveState
  /** The fingerprint of the plan the move belongs to. */
  plan: string
  attempts: number
  lastError: string | null
  updatedAt: string
  /** Where the old copy went when the move retired it (on the server it left); null: nothing was there. */
  trash: string | null
}

export interface Store {
  /** Where the store is, safe to print (no password). */
  readonly location: string

  meta(): Promise<StoreMeta>
  close(): Promise<void>

  // Topology
  readTopology(): Promise<Topology>
  /**
   * Replaces servers (matched by name), the default copy count and domain policies with `topology`, which
   * the caller has validated. Refuses (MailringError) to delete a server that still holds copies.
   */
  writeTopology(topology: Topology): Promise<void>

  // Users
  /**
   * Adds users with their current copies, all batches in one transaction. Users that exist already, or
   * come twice, are skipped with skipExisting, and otherwise make the whole call write nothing.
   */
  insertUsers(batches: Iterable<UserBatch>, options: {skipExisting: boolean}): Promise<InsertUsersResult>
  /** Removes users and their copies; returns those that existed. */
  removeUsers(users: readonly string[]): Promise<string[]>
  /**
   * In one transaction: sets the current copies of every user in `batches` (creating users that do not
   * exist, replacing the copies of those that do; a user given twice keeps the last), then removes the
   * users in `remove`. Refuses (and writes nothing) when a copy is on an unknown server.
   */
  replaceUsers(batches: Iterable<UserBatch>, remove: readonly string[]): Promise<ReplaceUsersResult>
  getUser(user: string): Promise<UserRecord | undefined>
  listUsers(options: UserListOptions): Promise<UserRecord[]>
  countUsers(): Promise<number>
  /** Copies and primaries per server, for every server (zero when it holds nothing). */
  serverUsage(): Promise<ServerUsage[]>
  /** Streams every user's address (no copies), a consistent snapshot, in chunks of about `chunkSize`. */
  scanUsers(chunkSize?: number): AsyncIterable<string[]>
  /** Streams every user's current copies, a consistent snapshot, in chunks of about `chunkSize` users. */
  scanPlacements(chunkSize?: number): Promise<PlacementScan>

  // The move journal (rebalance execution): every move is recorded before it starts.
  /**
   * Records the moves of a plan as planned, in one transaction. Refuses (MailringError, nothing written)
   * a move whose user already has an open move, whose copy at `position` is not on `from`, or that names
   * an unknown user or server.
   */
  journalMoves(plan: string, moves: readonly NewMove[]): Promise<number>
  /** Moves not finished yet (planned, copying, verified, switched, caught-up), oldest first. */
  openMoves(): Promise<MoveRecord[]>
  /**
   * Advances a move from `expected` to `next` only if it is still in `expected` (two runs cannot both
   * advance one move); counts an attempt and keeps the error when given. True when it moved on.
   */
  setMoveState(id: number, expected: MoveState, next: MoveState, error?: string): Promise<boolean>
  /**
   * The switch, in one transaction: the user's copy at the move's position changes from `from` to `to`,
   * and the move from verified to switched. Refuses (MailringError) when the move is not verified or the
   * copy is no longer on `from`; then nothing changes. A move without `from` inserts a copy on `to` at its
   * position (at the end when the user has fewer copies now); one without `to` deletes the copy at its
   * position (never the last one); the positions after it are renumbered, so they stay 0, 1, 2...
   */
  switchMove(id: number): Promise<void>
  /**
   * Closes a caught-up move: its old copy was moved to `trash` on the server it left (null: it had none).
   * False when the move is no longer caught-up.
   */
  retireMove(id: number, trash: string | null): Promise<boolean>
  /** Retired moves whose old copy still waits in a trash folder, retired before `before` (ISO time). */
  retiredMoves(before: string): Promise<MoveRecord[]>
  /** Cancels the open moves that have not switched yet; returns how many. */
  cancelUnswitchedMoves(): Promise<number>

  // Cluster lock: held by whoever changes placements.
  /** Takes the lock or throws a MailringError (exit code 3) naming the holder. */
  acquireLock(command: string): Promise<ClusterLock>
  /** Who holds the lock now, if anyone. */
  lockHolder(): Promise<LockHolder | undefined>
  /**
   * Breaks the lock (`mailring unlock`) only if `expected` still holds it, compare-and-delete: a lock that
   * another process took in between is never broken. True when it was broken; false when the lock was free
   * or held by someone else. The holder stops with exit code 3 before its next write (MySQL: its lock
   * connection is killed, so GET_LOCK is free at once).
   */
  breakLock(expected: LockHolder): Promise<boolean>

  /**
   * The operator's users table beside mailring's tables, after checking that it and its columns exist;
   * refused (MailringError) by stores that cannot hold one (the embedded store).
   */
  usersTable(spec: UsersTableSpec): Promise<UsersTable>
}
