/**
 * N-way sync on demand (`mailring sync user`, `sync domain`), and every sync the replicator, a move and a
 * catch-up make without a saved dsync state: every copy of each user brought up to date with every other
 * copy, whatever R is.
 *
 * Per user, with copies C0 (the first reachable, the "hub"), C1, ... Cn:
 *   1. read every copy's mailbox status (core/mailbox-state.ts);
 *   2. `doveadm sync` the hub with C1, then C2, ... (two-way: the hub gains each copy's changes and gives
 *      its own), each repeated while Dovecot says "not fully synced", with `-l` so that no two syncs of one
 *      user race;
 *   3. read every copy again, in full: the mailbox list, and every message's GUID and flags (one doveadm
 *      request per copy). Done only when all copies agree. Otherwise another round, in full (`-f`): the hub
 *      with every copy, then with every copy but the last again, until they agree or MAX_ROUNDS ran out.
 * Why step 3 reads every message: a summary cannot tell that copies agree. Two copies that each took a
 * different message show the same UIDVALIDITY, UIDNEXT, count and HIGHESTMODSEQ, and a sync without a
 * state or -f skips such a mailbox (issue 20, split A); a flag merge in a later sync can change the hub
 * again after a copy was synced with it (split B). What the check costs: one request per copy, as the
 * status read it replaces did.
 *
 * A copy on a server that is down or unreachable is skipped, and the user is reported as not fully
 * replicated; the first failure to reach a server marks it for the rest of the run, so that the other users
 * do not wait for its time-out again. Every full sync prints dsync's state for the pair (hub, copy); the
 * replicator keeps them for its incremental syncs (service.ts).
 */
import {
  describeDifferences,
  flagRepairs,
  MESSAGE_FIELDS,
  messagesByMailbox,
  type MessageRow,
} from '../../core/copy-compare.js'
import {errorText} from '../../core/errors.js'
import {identityRepairs, STATE_FIELDS, stateFingerprint} from '../../core/mailbox-state.js'
import {
  fetchCommand,
  flagsCommand,
  logErrorsCommand,
  mailboxIdentityCommand,
  mailboxStatusCommand,
  syncCommand,
  syncStateOf,
  userErrors,
  type Row,
} from '../../dovecot/doveadm.js'
import type {SyncState} from '../../store/store.js'
import {CopyProblem, type DoveadmFleet} from './fleet.js'
import {forEachUser, type UserCopies} from './selection.js'

export type UserSyncStatus = 'synced' | 'in-sync' | 'partial' | 'failed'

export interface UserSyncResult {
  user: string
  status: UserSyncStatus
  /** The user's copies, primary first. */
  copies: string[]
  /** The copy every other one was synced with. */
  hub?: string
  /** Copies that could not be reached, with why. */
  skipped: {server: string; reason: string}[]
  /** doveadm sync runs. */
  syncs: number
  /** Rounds of syncs it took until every copy agreed (none when no sync ran). */
  rounds?: number
  /** The dsync state each full sync printed, per ordered pair (hub, copy): the replicator saves them. */
  states?: SyncState[]
  /** What went wrong (failed) or which copies were left out (partial). */
  message?: string
  ms: number
}

export interface SyncUsersOptions {
  full?: boolean
  /** Users worked on at once (default 4). */
  parallel?: number
  onUser?: (result: UserSyncResult) => void
  /**
   * Keeps the dsync states of each user's sync (store.saveSyncStates): the states its full syncs printed,
   * or none, which drops the user's older ones, stale once copies were synced (aggregates/sync-states.ts).
   */
  keepStates?: (user: string, states: SyncState[]) => Promise<unknown>
  signal?: AbortSignal
}

export interface SyncSummary {
  users: number
  synced: number
  inSync: number
  partial: number
  failed: number
  ms: number
  /** Servers that could not be used in this run, with why. */
  unusable: {server: string; reason: string}[]
}

/** Runs of one sync while Dovecot answers "not fully synced" (exit 2). */
const MAX_SYNC_RUNS = 5
/** Rounds of syncs of one user until every copy agrees; then the user fails, naming a difference. */
export const MAX_ROUNDS = 3

export async function syncUsers(
  fleet: DoveadmFleet,
  users: readonly UserCopies[],
  options: SyncUsersOptions = {},
): Promise<{results: UserSyncResult[]; summary: SyncSummary}> {
  const started = Date.now()
  await fleet.checkBeforeWork(new Set(users.flatMap((u) => u.copies)))
  const results = await forEachUser(
    users,
    options.parallel ?? 4,
    async (entry) => {
      const result = await syncOneUser(fleet, entry.user, entry.copies, options.full ?? false)
      if (options.keepStates && result.syncs > 0) await options.keepStates(entry.user, statesToKeep(result))
      // dsync's states are the store's business, not the report's (`sync --json`).
      const {states: _kept, ...reported} = result
      return reported
    },
    {
      ...(options.onUser ? {onResult: options.onUser} : {}),
      ...(options.signal ? {signal: options.signal} : {}),
    },
  )
  const count = (status: UserSyncStatus) => results.filter((r) => r.status === status).length
  return {
    results,
    summary: {
      users: results.length,
      synced: count('synced'),
      inSync: count('in-sync'),
      partial: count('partial'),
      failed: count('failed'),
      ms: Date.now() - started,
      unusable: fleet.unusableServers(),
    },
  }
}

/** The states to keep after a user's sync: its full syncs' when every copy agrees, else none. */
export function statesToKeep(result: UserSyncResult): SyncState[] {
  return result.status === 'synced' || result.status === 'in-sync' ? (result.states ?? []) : []
}

export async function syncOneUser(
  fleet: DoveadmFleet,
  user: string,
  copies: readonly string[],
  full: boolean,
): Promise<UserSyncResult> {
  const started = Date.now()
  const result: UserSyncResult = {user, status: 'synced', copies: [...copies], skipped: [], syncs: 0, ms: 0}
  const done = (status: UserSyncStatus, message?: string): UserSyncResult => {
    result.status = status
    if (message !== undefined) result.message = message
    result.ms = Date.now() - started
    return result
  }
  if (copies.length === 0)
    return done('failed', `${user} has no copies in the store: place it first (mailring rebalance)`)

  // 1. every copy's state; the copies whose server cannot be used are left out.
  const rows = new Map<string, Row[]>()
  const failures: unknown[] = []
  await Promise.all(
    copies.map(async (server) => {
      try {
        rows.set(server, await fleet.mailboxStatus(server, user, STATE_FIELDS))
      } catch (error) {
        if (!(error instanceof CopyProblem) || !error.serverUnusable) failures.push(error)
        else result.skipped.push({server, reason: error.message})
      }
    }),
  )
  const failure = failures[0]
  if (failure !== undefined)
    return done(
      'failed',
      failure instanceof CopyProblem ? `${failure.server}: ${failure.message}` : errorText(failure),
    )
  const live = copies.filter((s) => rows.has(s))
  // A copy skipped because its server is down leaves the user not fully replicated; one skipped because
  // its server refuses mailring (a configuration error) fails the user.
  const skippedStatus = (): UserSyncStatus =>
    result.skipped.some((k) => fleet.isRefused(k.server)) ? 'failed' : 'partial'
  const partialNote = () =>
    result.skipped.length === 0
      ? undefined
      : `not fully replicated: ${result.skipped.map((s) => `${s.server} skipped (${s.reason})`).join('; ')}`
  if (live.length <= 1) {
    const note = partialNote() ?? `${user} has only one copy`
    return done(result.skipped.length > 0 ? skippedStatus() : 'in-sync', note)
  }

  // No copy has a single mailbox yet (a new user): there is nothing to sync, and a dsync now would create
  // an INBOX on each side on its own, twins that never converge once mail arrives on one of them
  // (docs/dovecot-facts.md). The first delivery creates the INBOX that the next sync copies with its GUID.
  if (live.every((copy) => rows.get(copy)!.length === 0)) {
    // Every live copy is (empty and) as good as any other: the first one is the hub (a move verifies
    // against it).
    result.hub = live[0]!
    const note = partialNote()
    return done(note === undefined ? 'in-sync' : skippedStatus(), note)
  }

  const before = new Map<string, string>()
  try {
    // Empty mailboxes created on their own take the identity of their twin, before dsync sees them.
    const repairs = identityRepairs(live.map((copy) => ({copy, rows: rows.get(copy)!})))
    for (const r of repairs) {
      const reply = await fleet.run(r.copy, mailboxIdentityCommand(user, r.mailbox, r))
      if (reply.outcome !== 'ok')
        throw new CopyProblem(
          r.copy,
          `cannot give the empty ${r.mailbox} the identity of its twin: ${reply.message}`,
          false,
        )
    }
    for (const copy of live) before.set(copy, stateFingerprint(rows.get(copy)!))
    const hub = live[0]!
    result.hub = hub
    const targets = live.slice(1)
    const states = new Map<string, string>()
    // Only a full sync's state is kept: a sync without -f prints, for a mailbox it skipped as unchanged, a
    // state of zeros (seen on 2.3.19), and an incremental sync from it took both sides' flags as changed and
    // lost a flag set on one of them.
    const syncWith = async (target: string, roundFull: boolean) => {
      const state = await syncPair(fleet, user, hub, target, roundFull ? {full: true, state: ''} : {}, result)
      if (state !== undefined) states.set(target, state)
    }
    // 2: the hub with each other copy; 3: until every copy agrees, in full, and every copy but the last
    // again (it missed what the hub gained from the copies after it).
    for (let round = 1; ; round++) {
      result.rounds = round
      if (round === 1) for (const target of targets) await syncWith(target, full)
      else for (const target of [...targets, ...targets.slice(0, -1)]) await syncWith(target, true)
      let contents = await Promise.all(live.map((copy) => readCopyContents(fleet, user, copy)))
      // After a full round, flags dsync still leaves different (set on one copy, cleared on another, with
      // no state to tell which came last) take the hub's: a sync would carry them no further.
      if (round > 1 && (await giveHubFlags(fleet, user, contents)) > 0)
        contents = await Promise.all(live.map((copy) => readCopyContents(fleet, user, copy)))
      const differences = describeDifferences(contents, new Map(contents.map((c) => [c.copy, c.messages])))
      if (differences.length === 0) {
        result.states = [...states].map(([to, state]) => ({from: hub, to, state}))
        const note = partialNote()
        if (note !== undefined) return done(skippedStatus(), note)
        const changed = contents.some((c) => stateFingerprint(c.mailboxes) !== before.get(c.copy))
        return done(changed || round > 1 ? 'synced' : 'in-sync')
      }
      if (round === MAX_ROUNDS)
        return done(
          'failed',
          `copies still differ after ${MAX_ROUNDS} rounds of doveadm sync: ${differences[0]}${differences.length > 1 ? ` (and ${differences.length - 1} more)` : ''}`,
        )
    }
  } catch (error) {
    if (error instanceof CopyProblem) {
      if (error.serverUnusable) result.skipped.push({server: error.server, reason: error.message})
      return done('failed', `${error.server}: ${error.message}`)
    }
    return done('failed', errorText(error))
  }
}

/**
 * Gives every message the flags its copy on the hub (contents[0]) has, where another copy differs (core
 * flagRepairs); one request per copy where the transport can. Returns how many messages were changed.
 * Throws CopyProblem.
 */
async function giveHubFlags(
  fleet: DoveadmFleet,
  user: string,
  contents: readonly CopyContents[],
): Promise<number> {
  const [hub, ...others] = contents
  if (hub === undefined) return 0
  const repairs = flagRepairs(hub, others)
  for (const copy of new Set(repairs.map((r) => r.copy))) {
    const commands = repairs
      .filter((r) => r.copy === copy)
      .map((r) =>
        r.flags.length > 0
          ? flagsCommand(user, 'replace', r.flags, r.mailbox, r.uid)
          : flagsCommand(user, 'remove', r.current, r.mailbox, r.uid),
      )
    const replies = await fleet.runAll(copy, commands)
    const failed = replies.find((reply) => reply.outcome !== 'ok')
    if (failed !== undefined)
      throw new CopyProblem(
        copy,
        `cannot give messages the flags of ${hub.copy}: doveadm flags failed: ${failed.message || `exit ${failed.exitCode}`}`,
        false,
      )
  }
  return repairs.length
}

/** One copy read in full: its mailboxes' status and every message's GUID and flags. */
export interface CopyContents {
  copy: string
  mailboxes: Row[]
  messages: Map<string, MessageRow[]>
}

/**
 * A copy's mailboxes (`fields`, default STATE_FIELDS) and every message's mailbox, UID, GUID and flags, in
 * one doveadm request where the transport can (fleet.runAll). A fetch creates no mailbox, not even an INBOX
 * that does not exist yet (seen on 2.3.19 and 2.4.1). Throws CopyProblem.
 */
export async function readCopyContents(
  fleet: DoveadmFleet,
  user: string,
  copy: string,
  fields: readonly string[] = STATE_FIELDS,
): Promise<CopyContents> {
  const [status, fetched] = await fleet.runAll(copy, [
    mailboxStatusCommand(user, fields),
    fetchCommand(user, MESSAGE_FIELDS),
  ])
  const mailboxes = await fleet.statusRows(copy, user, status!)
  if (fetched?.outcome !== 'ok')
    throw new CopyProblem(
      copy,
      `doveadm fetch failed: ${fetched?.message || `exit ${fetched?.exitCode}`}`,
      false,
    )
  return {
    copy,
    mailboxes,
    messages: messagesByMailbox(
      fetched.rows as Row[],
      mailboxes.map((m) => m.mailbox ?? ''),
    ),
  }
}

export interface SyncPairOptions {
  /** `-f`: every mailbox, not only those whose summary differs. */
  full?: boolean
  /** `-s`: dsync's saved state for the pair (hub, target), or '' for none; the sync returns the next one. */
  state?: string
  /** The hub's side is the copy in this folder (a retired copy in the trash), over the hub's command line. */
  home?: string
}

/**
 * `doveadm sync` of one user between two copies, run on `hub`, repeated while Dovecot answers "not fully
 * synced"; counts each run in `result.syncs`. Throws CopyProblem when it does not get through. Returns the
 * state dsync printed (with `options.state`), else undefined.
 */
export async function syncPair(
  fleet: DoveadmFleet,
  user: string,
  hub: string,
  target: string,
  options: SyncPairOptions,
  result: {syncs: number},
): Promise<string | undefined> {
  const command = syncCommand({
    user,
    destination: fleet.syncDestination(target),
    full: options.full ?? false,
    lockSeconds: fleet.ctx.doveadm.lockSeconds,
    ...(options.home === undefined ? {} : {home: options.home}),
    ...(options.state === undefined ? {} : {state: options.state}),
  })
  // Whole seconds, as Dovecot's log keeps them: an error of this second is not missed.
  const since = Math.floor(Date.now() / 1000)
  for (let run = 1; ; run++) {
    const reply =
      options.home === undefined ? await fleet.run(hub, command) : await fleet.runCommandLine(hub, command)
    result.syncs++
    if (reply.outcome === 'ok') return syncStateOf(reply.rows)
    if (reply.outcome === 'not-fully-synced' && run < MAX_SYNC_RUNS) continue
    if (reply.outcome === 'not-fully-synced')
      throw new CopyProblem(
        hub,
        `still not fully synced after ${MAX_SYNC_RUNS} runs of doveadm sync with ${target}`,
        false,
      )
    const failed = `doveadm sync with ${target} failed: ${reply.message || `exit ${reply.exitCode}`}`
    const said = await whatDovecotSaid(fleet, user, [target, hub], since)
    throw new CopyProblem(
      hub,
      said === undefined ? `${failed} (see the Dovecot log of ${hub} and ${target})` : `${failed}: ${said}`,
      false,
    )
  }
}

/**
 * Dovecot's own words for a failure of `user`'s commands since `since` (Unix seconds), from the first of
 * `servers` whose log process kept one (`doveadm log errors`): the HTTP API answers only an exit code.
 * The last error is the one that stopped the command. Undefined when none can be read.
 */
async function whatDovecotSaid(
  fleet: DoveadmFleet,
  user: string,
  servers: readonly string[],
  since: number,
): Promise<string | undefined> {
  for (const server of servers) {
    try {
      const reply = await fleet.run(server, logErrorsCommand(since))
      if (reply.outcome !== 'ok' || !Array.isArray(reply.rows)) continue
      const said = userErrors(reply.rows, user).at(-1)
      if (said !== undefined) return `${server} said "${said}"`
    } catch {
      // A server that cannot be asked has nothing to add.
    }
  }
  return undefined
}
