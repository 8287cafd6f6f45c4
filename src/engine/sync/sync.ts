/**
 * N-way sync on demand (`mailring sync-user`, `sync-domain`): every copy of each user brought up to date
 * with every other copy, whatever R is.
 *
 * Per user, with copies C0 (the first reachable, the "hub"), C1, ... Cn:
 *   1. read every copy's state (mailbox status, see core/mailbox-state.ts);
 *   2. `doveadm sync` the hub with C1, then C2, ... (two-way: the hub gains each copy's changes and gives
 *      its own), each repeated while Dovecot says "not fully synced", with `-l` so that no two syncs of one
 *      user race;
 *   3. read every copy's state again: when no copy changed, the user was already in sync; when the hub
 *      changed, it gained something from some Ck that the copies synced before Ck have not seen, so C1 ...
 *      Cn-1 are synced with it again (the "reverse where needed"; Cn, synced last, has everything). Reading
 *      the hub only once, not after each sync, costs a spare sync now and then and saves a doveadm call per
 *      copy for every user already in sync, the common case.
 * A copy on a server that is down or unreachable is skipped, and the user is reported as not fully
 * replicated; the first failure to reach a server marks it for the rest of the run, so that the other users
 * do not wait for its time-out again.
 */
import {errorText} from '../../core/errors.js'
import {identityRepairs, STATE_FIELDS, stateFingerprint} from '../../core/mailbox-state.js'
import {
  logErrorsCommand,
  mailboxIdentityCommand,
  syncCommand,
  userErrors,
  type Row,
} from '../../dovecot/doveadm.js'
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
  /** What went wrong (failed) or which copies were left out (partial). */
  message?: string
  ms: number
}

export interface SyncUsersOptions {
  full?: boolean
  /** Users worked on at once (default 4). */
  parallel?: number
  onUser?: (result: UserSyncResult) => void
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
    (entry) => syncOneUser(fleet, entry.user, entry.copies, options.full ?? false),
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
    // 2: the hub with each other copy.
    const hub = live[0]!
    result.hub = hub
    const targets = live.slice(1)
    for (const target of targets) await syncPair(fleet, user, hub, target, full, result)
    // 3: unchanged everywhere: it was in sync already; the hub changed: the copies before the last again.
    const after = await Promise.all(live.map((s) => fingerprintOf(fleet, s, user)))
    const changed = live.some((s, i) => after[i] !== before.get(s))
    if (after[0] !== before.get(hub))
      for (const earlier of targets.slice(0, -1)) await syncPair(fleet, user, hub, earlier, full, result)
    const note = partialNote()
    if (note !== undefined) return done(skippedStatus(), note)
    return done(changed ? 'synced' : 'in-sync')
  } catch (error) {
    if (error instanceof CopyProblem) {
      if (error.serverUnusable) result.skipped.push({server: error.server, reason: error.message})
      return done('failed', `${error.server}: ${error.message}`)
    }
    return done('failed', errorText(error))
  }
}

/**
 * `doveadm sync` of one user between two copies, run on `hub`, repeated while Dovecot answers "not fully
 * synced"; counts each run in `result.syncs`. Throws CopyProblem when it does not get through. With
 * `hubHome`, the hub's side is the copy in that folder (a retired copy in the trash), over the hub's
 * command line.
 */
export async function syncPair(
  fleet: DoveadmFleet,
  user: string,
  hub: string,
  target: string,
  full: boolean,
  result: {syncs: number},
  hubHome?: string,
): Promise<void> {
  const command = syncCommand({
    user,
    destination: fleet.syncDestination(target),
    full,
    lockSeconds: fleet.ctx.doveadm.lockSeconds,
    ...(hubHome === undefined ? {} : {home: hubHome}),
  })
  // Whole seconds, as Dovecot's log keeps them: an error of this second is not missed.
  const since = Math.floor(Date.now() / 1000)
  for (let run = 1; ; run++) {
    const reply =
      hubHome === undefined ? await fleet.run(hub, command) : await fleet.runCommandLine(hub, command)
    result.syncs++
    if (reply.outcome === 'ok') return
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

/** A copy's state; throws CopyProblem. */
async function fingerprintOf(fleet: DoveadmFleet, server: string, user: string): Promise<string> {
  return stateFingerprint(await fleet.mailboxStatus(server, user, STATE_FIELDS))
}
