/**
 * One move of a rebalance, make-before-break (docs/decisions/0002-rebalance-execution.md): user U's copy
 * leaves server X (`from`) for server Y (`to`). Each step starts from the state the journal records, so a
 * run that died anywhere resumes where it stopped:
 *   planned   -> copying:   Y's userdb now knows U (the rendered queries read the journal);
 *   copying   -> verified:  `doveadm sync` of every copy and Y together, then Y compared with its source;
 *   verified  -> switched:  Y replaces X in U's placement, in one transaction (store.switchMove);
 *   switched  -> caught-up: a last sync of X with Y and the others, for mail delivered to X meanwhile;
 *   caught-up -> retired:   X's sessions closed, X's copy moved aside to a dated trash folder on X and its
 *                           home fenced (a late delivery there fails and is sent again), then a last
 *                           catch-up from the copy in the trash (engine/rebalance/retire.ts).
 * A copy-count change has moves without a partner. A copy added on Y (no `from`): copying, verified as
 * above, then the switch inserts Y into U's placement, and the move is done (nothing leaves). A copy dropped
 * from X (no `to`): copying syncs every copy and verifies the ones that stay against the hub, so that they
 * hold all X has before X leaves; the switch deletes X from the placement; then, after the retire delay, X
 * is synced once more into the copies that stay and retired as above.
 * A step that fails leaves the journal where it was (with the error counted), and the
 * placement as it was before the switch: nothing is lost, and the next run tries again.
 */
import {errorText} from '../../core/errors.js'
import type {MoveRecord, Store} from '../../store/store.js'
import {CopyProblem, type DoveadmFleet} from '../sync/fleet.js'
import {clearFence, retireOldCopy} from './retire.js'
import {syncOneUser, syncPair} from '../sync/sync.js'
import {verifyOneUser} from '../sync/verify.js'

export interface MoveOutcome {
  id: number
  user: string
  /** Null: a copy added (a copy count grew). */
  from: string | null
  /** Null: a copy dropped (a copy count shrank). */
  to: string | null
  /** The journal state the move reached in this run. */
  state: MoveRecord['state']
  /** Why it stopped before retired, when it did. */
  error?: string
  /** Where the old copy went (retired; null: the server it left held nothing, or was down). */
  trash?: string | null
  /** Messages the new copy holds (counted when it was verified in this run). */
  messages: number
  /** Their size in bytes (Dovecot's vsize), what the copy step moved; 0 for a dropped copy. */
  bytes: number
  /** What the operator should know about a move that finished (e.g. an old copy left on a down server). */
  note?: string
  syncs: number
  ms: number
}

/** Syncs before the new copy must agree with its source; mail arriving meanwhile may need another. */
const VERIFY_ROUNDS = 3

export interface MoveOptions {
  /**
   * Stop once caught up: the old copy is retired later (engine/rebalance/run.ts waits a while first, so
   * that a delivery routed to X before the switch has landed and is caught up before X's copy goes).
   */
  stopAt?: 'caught-up'
  /** The outcome of this move so far in this run (its counters carry on). */
  carry?: MoveOutcome
}

export async function executeMove(
  fleet: DoveadmFleet,
  store: Store,
  move: MoveRecord,
  options: MoveOptions = {},
): Promise<MoveOutcome> {
  const outcome = await runMoveSteps(fleet, store, move, options)
  // The move's syncs changed the copies: the replicator's dsync states for them no longer hold
  // (store/aggregates/sync-states.ts); its next sync of the user is a full one.
  if (outcome.syncs > (options.carry?.syncs ?? 0))
    await store.saveSyncStates(move.user, []).catch((error: unknown) => {
      outcome.note = `its dsync states could not be dropped (the replicator may sync it from a stale one): ${errorText(error)}`
    })
  return outcome
}

async function runMoveSteps(
  fleet: DoveadmFleet,
  store: Store,
  move: MoveRecord,
  options: MoveOptions,
): Promise<MoveOutcome> {
  const started = Date.now() - (options.carry?.ms ?? 0)
  const outcome: MoveOutcome = {
    id: move.id,
    user: move.user,
    from: move.from,
    to: move.to,
    syncs: 0,
    messages: 0,
    bytes: 0,
    ...options.carry,
    state: move.state,
    ms: 0,
  }
  delete outcome.error
  const finish = () => ({...outcome, ms: Date.now() - started})
  const advance = async (next: MoveRecord['state']) => {
    if (!(await store.setMoveState(move.id, outcome.state, next)))
      throw new Error(`move ${move.id} was advanced by someone else (it is no longer ${outcome.state})`)
    outcome.state = next
  }
  try {
    if (outcome.state === 'planned') await advance('copying')
    if (outcome.state === 'copying') {
      await copyAndVerify(fleet, store, move, outcome)
      await advance('verified')
    }
    if (outcome.state === 'verified') {
      await store.switchMove(move.id)
      outcome.state = 'switched'
    }
    if (move.from === null) {
      // A copy added: nothing leaves, so there is nothing to catch up on or retire.
      if (outcome.state === 'switched') await advance('caught-up')
      if (outcome.state === 'caught-up') {
        if (!(await store.retireMove(move.id, null)))
          throw new Error(`move ${move.id} was advanced by someone else (it is no longer caught-up)`)
        outcome.state = 'retired'
        outcome.trash = null
      }
      return finish()
    }
    const from = move.from
    // A server the operator marked down (it died and is being replaced) takes no mail: there is nothing to
    // catch up on, and its old copy cannot be moved aside. It is left where it is, and said so.
    const leftDown = fleet.server(from).state === 'down'
    // Where X's mail goes: the new copy, or for a dropped copy the first copy that stays and can be used
    // (not marked down, not found unreachable in this run).
    const partner = async (): Promise<string> => {
      if (move.to !== null) return move.to
      const copies = (await store.getUser(move.user))?.copies ?? []
      const usable = copies.find((c) => fleet.server(c).state !== 'down' && fleet.problemOf(c) === undefined)
      const first = usable ?? copies[0]
      if (first === undefined) throw new Error(`${move.user} has no copy left in the store`)
      return first
    }
    // The catch-up: what reached X during the switch goes to Y (two-way, so nothing of Y's is lost either);
    // with `trashCopy`, from X's copy moved aside (the last one, once X's home is fenced: engine/rebalance/retire.ts).
    const catchUp = async (trashCopy?: string, full = false): Promise<string> => {
      const to = await partner()
      if (!leftDown)
        await syncPair(
          fleet,
          move.user,
          from,
          to,
          {full, ...(trashCopy === undefined ? {} : {home: trashCopy})},
          outcome,
        )
      return to
    }
    // Then on to the copies that stay, as a courtesy: what X held is safe on Y, and a copy that cannot take
    // it now gets it from the next sync or the replicator.
    const spread = async () => {
      const hub = await partner()
      const user = await store.getUser(move.user)
      for (const other of (user?.copies ?? []).filter((c) => c !== hub)) {
        try {
          await syncPair(fleet, move.user, hub, other, {}, outcome)
        } catch (error) {
          outcome.note = `${other} not synced with ${hub} (the next sync brings it): ${errorText(error)}`
        }
      }
    }
    if (outcome.state === 'switched') {
      // A dropped copy took no deliveries of its own since its copies were verified in sync (deliveries go
      // to the first copy): the retire's last catch-up is enough for it.
      if (move.to !== null) await catchUp()
      await advance('caught-up')
      if (options.stopAt === 'caught-up') return finish()
    }
    if (outcome.state === 'caught-up') {
      // X's home is moved aside and fenced first, then caught up from the trash: a delivery routed to X
      // before the switch may end at any time, and then either is in the trash copy or fails (retire.ts).
      if (options.stopAt === 'caught-up') return finish()
      if (leftDown) outcome.note = `${from} is down: its old copy of ${move.user} was left there`
      const trash = leftDown ? null : await retireOldCopy(fleet, {...move, from}, {catchUp})
      if (!leftDown) await spread()
      if (!(await store.retireMove(move.id, trash)))
        throw new Error(`move ${move.id} was advanced by someone else (it is no longer caught-up)`)
      outcome.state = 'retired'
      outcome.trash = trash
    }
    return finish()
  } catch (error) {
    outcome.error = error instanceof CopyProblem ? `${error.server}: ${error.message}` : errorText(error)
    // Count the failed attempt in the journal; the state stays where it was.
    await store.setMoveState(move.id, outcome.state, outcome.state, outcome.error).catch(() => false)
    return finish()
  }
}

/**
 * Every reachable copy of U (the current ones and Y) synced together, N-way: Y starts with all the mail any
 * copy has, and the copies that stay get what only one of them held. `must` are the copies that have to
 * take part (a skipped one fails the step). Returns the copy the others were synced with.
 */
async function syncAll(
  fleet: DoveadmFleet,
  user: string,
  copies: readonly string[],
  must: readonly string[],
  outcome: MoveOutcome,
): Promise<string> {
  const result = await syncOneUser(fleet, user, copies, false)
  outcome.syncs += result.syncs
  if (result.status === 'failed') throw new Error(result.message ?? `the sync of ${user} failed`)
  const missing = result.skipped.find((k) => must.includes(k.server))
  if (missing) throw new CopyProblem(missing.server, missing.reason, true)
  if (result.hub === undefined) throw new Error(`no current copy of ${user} can be reached`)
  return result.hub
}

/**
 * Y gets U's mail from every current copy, until it agrees with the copy it was synced from. For a dropped
 * copy (no Y), the copies that stay must agree with that copy instead. Every current copy not marked down
 * takes part (a copy-count change), or at least Y and X (a transfer: see below).
 */
async function copyAndVerify(
  fleet: DoveadmFleet,
  store: Store,
  move: MoveRecord,
  outcome: MoveOutcome,
): Promise<void> {
  const record = await store.getUser(move.user)
  if (!record) throw new Error(`${move.user} is no longer in the store`)
  const up = (server: string) => fleet.server(server).state !== 'down'
  const staying = record.copies.filter((c) => c !== move.from)
  // A dead target is found by the sync's first step (every copy's state), before any sync towards it, whose
  // failure would blame the source (seen on 2.3.19: the source's doveadm closes the connection).
  // The leaving copy last among the sources (it may be leaving because it fails), but it must take part
  // unless its server is marked down: it may hold mail no other copy has (deliveries go to the first copy,
  // and replication may lag), and Y must have that mail before it replaces X.
  const copies = [
    ...staying,
    ...(move.from === null ? [] : [move.from]),
    ...(move.to === null ? [] : [move.to]),
  ]
  const required =
    move.from !== null && move.to !== null
      ? [move.to, ...(up(move.from) ? [move.from] : [])]
      : copies.filter((c) => c === move.to || up(c))
  // A copy is dropped only into copies that stay and can take its mail.
  if (move.to === null && !staying.some(up))
    throw new Error(
      `no copy of ${move.user} that stays is usable (${staying.join(', ')} marked down): ${move.from} is kept`,
    )
  // Y may hold the fence of an earlier move of U away from it (U comes back): taken away first. Checked on
  // every move: through doveadm a fenced home looks like a user without mail (status answers no mailbox).
  if (move.to !== null) await clearFence(fleet, move.to, move.user)
  const source = await syncAll(fleet, move.user, copies, required, outcome)
  // A dropped copy: every copy (the one leaving too) is compared with the hub, so the ones that stay hold
  // all the leaving one has.
  const checked = move.to !== null ? [move.to] : copies.filter((c) => c !== source && up(c))
  const what = move.to !== null ? `the new copy on ${move.to}` : `the copies (${checked.join(', ')})`
  for (let round = 1; ; round++) {
    const check = await verifyOneUser(
      fleet,
      {user: move.user, copies: [source, ...checked]},
      // A copy just synced from its source: the summaries and, where they differ, the GUIDs (flags may
      // change under a client meanwhile; the retire's last catch-up checks every GUID again).
      {measureBytes: move.to !== null, everyMessage: false},
    )
    outcome.messages = check.messages
    outcome.bytes = check.bytes ?? 0
    if (check.status === 'agree') return
    if (round >= VERIFY_ROUNDS)
      throw new Error(
        check.status === 'unchecked'
          ? `could not check ${what}: ${check.unchecked.map((u) => `${u.server}: ${u.reason}`).join('; ')}`
          : `${what} still differs from ${source}: ${check.differences.join('; ')}`,
      )
    // Mail arrived meanwhile, or the last sync was cut short: once more, comparing everything.
    for (const copy of checked) await syncPair(fleet, move.user, source, copy, {full: true}, outcome)
  }
}
