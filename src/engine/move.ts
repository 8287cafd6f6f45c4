/**
 * One move of a rebalance, make-before-break (docs/decisions/0002-rebalance-execution.md): user U's copy
 * leaves server X (`from`) for server Y (`to`). Each step starts from the state the journal records, so a
 * run that died anywhere resumes where it stopped:
 *   planned   -> copying:   Y's userdb now knows U (the rendered queries read the journal);
 *   copying   -> verified:  `doveadm sync` from a current copy to Y, then Y compared with it (verify);
 *   verified  -> switched:  Y replaces X in U's placement, in one transaction (store.switchMove);
 *   switched  -> caught-up: a last sync from X to Y, for mail delivered to X during the switch.
 * Retiring X's copy (moving it to a dated trash folder) is the next step, not built yet: a caught-up move
 * stays open. A step that fails leaves the journal where it was (with the error counted), and the
 * placement as it was before the switch: nothing is lost, and the next run tries again.
 */
import {errorText} from '../core/errors.js'
import type {MoveRecord, Store} from '../store/store.js'
import {CopyProblem, type DoveadmFleet} from './doveadm-fleet.js'
import {syncPair} from './sync.js'
import {verifyOneUser} from './verify.js'

export interface MoveOutcome {
  id: number
  user: string
  from: string
  to: string
  /** The journal state the move reached in this run. */
  state: MoveRecord['state']
  /** Why it stopped before caught-up, when it did. */
  error?: string
  syncs: number
  ms: number
}

/** Syncs before the new copy must agree with its source; mail arriving meanwhile may need another. */
const VERIFY_ROUNDS = 3

export async function executeMove(fleet: DoveadmFleet, store: Store, move: MoveRecord): Promise<MoveOutcome> {
  const started = Date.now()
  const outcome: MoveOutcome = {
    id: move.id,
    user: move.user,
    from: move.from,
    to: move.to,
    state: move.state,
    syncs: 0,
    ms: 0,
  }
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
    if (outcome.state === 'switched') {
      await syncPair(fleet, move.user, move.from, move.to, false, outcome)
      await advance('caught-up')
    }
    return finish()
  } catch (error) {
    outcome.error = error instanceof CopyProblem ? `${error.server}: ${error.message}` : errorText(error)
    // Count the failed attempt in the journal; the state stays where it was.
    await store.setMoveState(move.id, outcome.state, outcome.state, outcome.error).catch(() => false)
    return finish()
  }
}

/** Y gets U's mail from a current copy, until the two agree. */
async function copyAndVerify(
  fleet: DoveadmFleet,
  store: Store,
  move: MoveRecord,
  outcome: MoveOutcome,
): Promise<void> {
  const record = await store.getUser(move.user)
  if (!record) throw new Error(`${move.user} is no longer in the store`)
  // The source: a current copy that can be reached, the leaving one last (it may be leaving because it fails).
  const candidates = [...record.copies.filter((c) => c !== move.from), move.from]
  const source = candidates.find((c) => fleet.problemOf(c) === undefined)
  if (source === undefined) throw new Error(`no current copy of ${move.user} can be reached`)
  // Ask the target first: a sync towards a dead server fails on the source's side, with a message (seen on
  // 2.3.19: the source's doveadm closes the connection) that would blame the source.
  const [target] = await fleet.probe([move.to])
  if (target && target.state !== 'ok') throw new CopyProblem(move.to, target.reason, true)
  for (let round = 1; ; round++) {
    await syncPair(fleet, move.user, source, move.to, round > 1, outcome)
    const check = await verifyOneUser(fleet, {user: move.user, copies: [source, move.to]})
    if (check.status === 'agree') return
    if (round >= VERIFY_ROUNDS)
      throw new Error(
        check.status === 'unchecked'
          ? `could not check the new copy on ${move.to}: ${check.unchecked.map((u) => `${u.server}: ${u.reason}`).join('; ')}`
          : `the new copy on ${move.to} still differs from ${source}: ${check.differences.join('; ')}`,
      )
  }
}
