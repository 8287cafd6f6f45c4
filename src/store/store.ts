/**
 * The one interface to mailring's state, whatever database holds it: the embedded SQLite store
 * (sqlite.ts) or the MySQL/MariaDB store (mysql.ts), which both pass the same contract suite
 * (test/store/contract.ts). Every method is async so that the networked store fits. Every change is one
 * transaction: a method either does all it says or nothing.
 *
 * Layout: each aggregate is one file in aggregates/ (meta and schema, servers, topology, users, moves,
 * replication queue and server health, hosts, lock), with what does not depend on the SQL dialect first and
 * then its two dialects side by side (`sqliteX` and `mysqlX`), so that a difference between them shows in
 * one place. dialect-store.ts writes each Store method that only runs an aggregate once, for both dialects;
 * sqlite.ts and mysql.ts open the database and say how an operation runs (transactions); beside them
 * sit SQLite's read-only access (sqlite-read-only.ts), each dialect's error mapping (sqlite-errors.ts,
 * mysql-errors.ts) and the operator's users table (mysql-users-table.ts).
 *
 * Server references leave the store as names; bulk data (placements) travels as compact chunks whose
 * copies are small integers indexing a server list, so that a million users never become a million objects.
 *
 * The move journal (schema 3; 6: copies added or dropped, docs/decisions/0002-rebalance-execution.md)
 * records every move before it starts. Schema 5 adds the replication queue, server health and proxy hosts
 * (docs/decisions/0004-replicator.md).
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

/** dsync's state for one ordered pair of a user's copies: `doveadm sync -s STATE` run on `from` against `to`. */
export interface SyncState {
  from: string
  to: string
  state: string
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

/**
 * Why a user waits in the replication queue (docs/decisions/0004-replicator.md). Lower sorts first: new mail
 * before other changes, a returning server's catch-up before the periodic full sync.
 */
export type ReplicationPriority = 'mail' | 'change' | 'catch-up' | 'full'
export const REPLICATION_PRIORITIES: readonly ReplicationPriority[] = ['mail', 'change', 'catch-up', 'full']

/** A change to replicate: something changed in `user`'s copy on `source` (undefined: unknown or any copy). */
export interface ReplicationRequest {
  user: string
  priority: ReplicationPriority
  source?: string
}

export interface EnqueueOptions {
  /** Milliseconds since the epoch, the caller's clock (tests drive it). */
  nowMs: number
  /** Debounce: a user becomes due this long after its LAST change ... */
  debounceMs: number
  /** ... but never later than this long after its FIRST change still waiting. */
  maxDelayMs: number
}

export interface EnqueueResult {
  /** Users now waiting (new or merged into an entry already waiting). */
  queued: number
  /** Requests naming a user the store does not know (counted, not queued). */
  unknownUsers: number
}

/** One user taken from the queue by one replicator, for one lease. */
export interface ReplicationTask {
  user: string
  /** The most urgent priority merged into the entry. */
  priority: ReplicationPriority
  /** The copy that changed, when all merged requests named the same one; null otherwise. */
  source: string | null
  /** Bumped by every request merged in: finishing a task removes the entry only when it is unchanged. */
  generation: number
  /**
   * When the oldest change still waiting arrived (ms since the epoch): replication lag starts here. An
   * entry that a request reached during a sync keeps the first change of its round (the store does not
   * know when the later one came), so its next task measures from there.
   */
  firstQueuedMs: number
  /** Failed attempts so far. */
  attempts: number
}

export interface ClaimOptions {
  /** Who takes them (host:pid:random): only this owner may finish or release them. */
  owner: string
  nowMs: number
  limit: number
  /** Lease length: a task not finished or renewed by then can be taken by another replicator. */
  leaseMs: number
  /** Servers at their concurrency limit: users with a copy on one of them are left for a later claim. */
  avoidServers?: readonly string[]
}

export type ReplicationOutcome =
  | {ok: true}
  /** Failed: back in the queue, due at `retryAtMs`; `server` is the copy that failed, when one did. */
  | {ok: false; error: string; retryAtMs: number; server?: string}

export interface ReplicationQueueStats {
  /**
   * Every priority, most urgent first: waiting users (in flight included), how many are due now and not
   * in flight, and the age in ms at `nowMs` of the oldest change waiting (null when none waits).
   */
  byPriority: {priority: ReplicationPriority; waiting: number; due: number; oldestQueuedMs: number | null}[]
  /** Taken by a replicator right now (lease not expired). */
  inFlight: number
  /** Entries that failed at least once and wait for their retry (not in flight). */
  retrying: number
}

/**
 * What the replicator's probes decided about a server (docs/decisions/0004-replicator.md): `down` takes
 * it out of routing; `returning` (it answers again) keeps it out until its copies are caught up, then `up`.
 * A server without a record is `up`. Independent of the operator's `state` (active, draining, down).
 */
export type ServerHealthState = 'up' | 'down' | 'returning'

export interface ServerHealth {
  server: string
  health: ServerHealthState
  /** ISO time the health last changed. */
  since: string
  /** What the last probe found, one line ('' when all is well). */
  detail: string
  /** Replication syncs that failed on this server since it was last up, and the last error. */
  syncFailures: number
  lastSyncError: string | null
}

/** Hosts that are not mail servers: proxies and directors get the proxy passdb from `config push`. */
export type HostRole = 'proxy' | 'director'

export interface Host {
  name: string
  address: string
  role: HostRole
  /** Dovecot version of this host when it differs from the cluster's (null: the configured default). */
  dovecotVersion: string | null
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
   * the caller has validated. Refuses (MailringError) to delete a server that still holds copies, and to
   * add one named as a proxy or director host.
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

  // The replication queue (schema 5): one entry per user, requests merged into it.
  /**
   * Queues users for replication in one transaction. A user already waiting keeps one entry: the most
   * urgent priority, source null when the sources differ, due `debounceMs` after this request but no later
   * than `maxDelayMs` after its first queued change, generation bumped (also while a replicator holds it,
   * so that the change arriving during a sync is synced again).
   */
  enqueueReplication(requests: readonly ReplicationRequest[], options: EnqueueOptions): Promise<EnqueueResult>
  /**
   * Takes up to `limit` due entries that no live lease holds, most urgent first, then oldest due, leaving
   * out users with an open move (the rebalance owns them) and users with a copy on one of `avoidServers`;
   * leases them to `owner` until nowMs + leaseMs. On MySQL/MariaDB the rows are taken with FOR UPDATE
   * SKIP LOCKED, so that replicators share the queue: two claims never return the same user.
   */
  claimReplication(options: ClaimOptions): Promise<ReplicationTask[]>
  /**
   * Extends the lease of these users' tasks held by `owner`; returns the users still held (a lease that
   * expired is still held as long as no other replicator took the entry).
   */
  renewReplication(owner: string, users: readonly string[], leaseUntilMs: number): Promise<string[]>
  /**
   * Ends one task of `owner`: ok removes the entry unless a request arrived since it was taken (then it
   * stays, due at once, for another sync, its attempts cleared); a failure counts an attempt, keeps the
   * error and makes it due at retryAtMs, and counts the failure against `server` in its health record
   * (sync failures and last error; an unknown server is left out). False when the lease was lost (another
   * replicator took the entry, or it is gone with its user): then nothing changes.
   */
  finishReplication(owner: string, task: ReplicationTask, outcome: ReplicationOutcome): Promise<boolean>
  /** Gives back every task `owner` holds (graceful stop): they are due again at once. */
  releaseReplication(owner: string): Promise<number>
  replicationStats(nowMs: number): Promise<ReplicationQueueStats>
  /** A small named value the replicator keeps (e.g. the full sync's cursor); undefined when never set. */
  replicationMarker(key: string): Promise<string | undefined>
  setReplicationMarker(key: string, value: string): Promise<void>

  // Server health (schema 5), written by the replicator's probes, read by the proxy passdb.
  /** Every server's health, sorted by name; servers never probed are `up` with since = the store's creation. */
  serverHealth(): Promise<ServerHealth[]>
  /**
   * Sets a server's health and probe detail only if its health is still `expected` (compare-and-set, so
   * that two replicators do not flap it; a server without a record is `up`). `since` changes only when the
   * health does; the sync failures are reset when it becomes up. True when `expected` matched and the
   * record was written (also when next equals expected: the detail changes); false otherwise, and for an
   * unknown server.
   */
  setServerHealth(
    server: string,
    expected: ServerHealthState,
    next: ServerHealthState,
    detail: string,
  ): Promise<boolean>

  // dsync's saved states (schema 7).
  /**
   * The saved state of each ordered pair of the user's copies (from the copy a sync runs on to the other),
   * sorted by from, then to; only pairs of servers that both hold a copy of the user now.
   */
  syncStates(user: string): Promise<SyncState[]>
  /**
   * Replaces the user's saved states with those its last sync printed, in one transaction: a state holds
   * only while no other sync changed either copy (aggregates/sync-states.ts), so every other pair's state
   * goes, and `[]` (a sync that printed none) drops them all. A pair whose servers do not both hold a copy
   * of the user now (it moved meanwhile) is left out. Returns how many were saved.
   */
  saveSyncStates(user: string, states: readonly SyncState[]): Promise<number>

  // The changes a down server missed (schema 8).
  /**
   * Records that the user's copies on `servers` (down, skipped by a sync) missed a change; a server that
   * holds no copy of the user is left out, and an earlier record kept. Returns how many were new.
   */
  recordMissed(user: string, servers: readonly string[], nowMs: number): Promise<number>
  /** The users with a change the copy on `server` missed (current copies only), sorted. */
  missedUsers(server: string): Promise<string[]>
  /** Forgets what the user's copies on `servers` missed (a sync reached them). Returns how many went. */
  clearMissed(user: string, servers: readonly string[]): Promise<number>

  // Proxy and director hosts (schema 5).
  /** Every host, sorted by name. */
  listHosts(): Promise<Host[]>
  /** Adds or updates (by name) a host; refuses (MailringError) a name that a server already has. */
  putHost(host: Host): Promise<void>
  /** Removes a host; false when there was none. */
  removeHost(name: string): Promise<boolean>

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
