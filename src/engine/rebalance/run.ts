/**
 * `mailring rebalance` executing: the moves that take the current placement to the store's topology, run
 * make-before-break through the journal (engine/rebalance/move.ts), several at once with a limit per server.
 *
 * A user has at most one open move, so the run goes in waves: each wave journals the next move of every
 * user that has none open, runs the open moves (those of earlier runs first: a run after a crash resumes
 * them), and plans again, until nothing is left to move or only moves that failed in this run remain
 * (they stay in the journal and are tried again by the next run).
 */
import {ByteBudget} from '../../core/byte-budget.js'
import {MailringError} from '../../core/errors.js'
import type {PlanMove} from '../../core/plan.js'
import type {MoveRecord, NewMove, Store} from '../../store/store.js'
import type {DoveadmFleet} from '../sync/fleet.js'
import {executeMove, type MoveOptions, type MoveOutcome} from './move.js'
import {computePlan, type PlanOutcome} from './plan.js'
import {Placement} from '../../core/placement.js'

export interface RebalanceRunOptions {
  /** Moves at once. */
  parallel: number
  /** Moves at once that involve one server (as the one left or the one arrived on). */
  perServer: number
  /** Stop journaling new moves after this many in the run (open moves of earlier runs count too). */
  maxMoves?: number
  /** How long a caught-up move waits before its old copy is retired (default 10 s). */
  retireAfterMs?: number
  /**
   * A bandwidth limit, bytes per second for the run as a whole: a move starts copying only when the
   * mailboxes started before it (their size asked first) fit in the limit; see core/byte-budget.ts.
   */
  bytesPerSecond?: number
  /** Once aborted (Ctrl-C), no move starts; the moves in flight finish. */
  signal?: AbortSignal
  /** Only the moves this keeps (rebalance --server, --user); open moves of earlier runs all finish. */
  only?: (move: PlanMove) => boolean
  /** The first wave's plan, already computed (and checked against a saved plan file). */
  plan?: PlanOutcome
  onEvent?: (event: RebalanceEvent) => void
}

export type RebalanceEvent =
  | {event: 'resume'; moves: number}
  | {event: 'journal'; wave: number; moves: number; plan: string; pending: number}
  | {
      event: 'start'
      id: number
      user: string
      from: string | null
      to: string | null
      state: MoveRecord['state']
    }
  | ({event: 'finish'} & MoveOutcome)

export interface RebalanceSummary {
  /** Moves finished in this run (the old copy retired). */
  moved: number
  /** Moves that stopped with an error: left in the journal, tried again by the next run. */
  failed: number
  /** Open moves of earlier runs that this run resumed. */
  resumed: number
  /** Moves the plan still has that this run did not start (--max-moves, Ctrl-C, or a user's failed move). */
  left: number
  /** Of the moves planned at the end, copies to add or drop (a copy count changed). */
  copyCountChanges: number
  interrupted: boolean
  seconds: number
  movesPerSecond: number
  /** Bytes the finished moves copied (each new copy's size when verified). */
  bytes: number
  bytesPerSecond: number
}

export interface RebalanceRunResult {
  summary: RebalanceSummary
  /** Every move this run worked on, in the order they finished. */
  moves: MoveOutcome[]
  /** The failed ones, with Dovecot's message. */
  failures: MoveOutcome[]
  /** Draining servers that hold no copy any more (node remove deletes them now). */
  emptied: string[]
}

export const DEFAULT_RETIRE_AFTER_MS = 10_000

/**
 * What the run asks of the servers, move by move: the run itself only schedules (waves, limits, the byte
 * budget, the wait before retiring). fleetMoves() is the real one; the scheduler's tests give a fake.
 */
export interface MoveSteps {
  /** One move's steps from its journal state (engine/rebalance/move.ts). */
  execute(move: MoveRecord, options: MoveOptions): Promise<MoveOutcome>
  /** The size of the mail the move copies; 0 when it cannot be asked. */
  copySize(move: MoveRecord): Promise<number>
}

/** The moves' steps over a doveadm fleet. */
export function fleetMoves(fleet: DoveadmFleet, store: Store): MoveSteps {
  return {
    execute: (move, options) => executeMove(fleet, store, move, options),
    copySize: (move) => copySize(fleet, store, move),
  }
}

/** More waves than any user has copies means something keeps re-planning the same move. */
const MAX_WAVES = 64

export async function runRebalance(
  steps: MoveSteps,
  store: Store,
  options: RebalanceRunOptions,
): Promise<RebalanceRunResult> {
  const started = Date.now()
  const emit = options.onEvent ?? (() => {})
  const aborted = () => options.signal?.aborted === true
  const outcomes: MoveOutcome[] = []
  const tried = new Set<number>()
  let journaled = 0
  let resumed = 0
  let left = 0
  let copyCountChanges = 0
  let plan = options.plan
  const byteBudget = options.bytesPerSecond === undefined ? undefined : new ByteBudget(options.bytesPerSecond)

  const earlier = await store.openMoves()
  if (earlier.length > 0) {
    resumed = earlier.length
    emit({event: 'resume', moves: earlier.length})
  }
  for (let wave = 1; ; wave++) {
    if (wave > MAX_WAVES)
      throw new MailringError(
        `The rebalance planned more than ${MAX_WAVES} waves of moves: stopped; see mailring rebalance status.`,
      )
    const journal = await store.openMoves()
    let open = journal.filter((m) => !tried.has(m.id))
    plan ??= await computePlan(store)
    const budget = options.maxMoves === undefined ? Infinity : options.maxMoves - journaled - resumed
    const next = nextMoves(plan, new Set(journal.map((m) => m.user)), options.only)
    copyCountChanges = next.copyCountChanges
    const take = aborted() ? [] : next.moves.slice(0, Math.max(0, budget))
    left = next.pending - take.length
    if (take.length > 0) {
      const positioned = await positionMoves(store, take, new Placement(plan.target))
      await store.journalMoves(plan.plan.fingerprint, positioned)
      journaled += positioned.length
      emit({
        event: 'journal',
        wave,
        moves: positioned.length,
        plan: plan.plan.fingerprint,
        pending: next.pending,
      })
      open = (await store.openMoves()).filter((m) => !tried.has(m.id))
    }
    plan = undefined
    if (open.length === 0 || aborted()) break
    for (const m of open) tried.add(m.id)
    await runMoves(
      steps,
      open,
      {...options, byteBudget},
      (outcome) => {
        outcomes.push(outcome)
        emit({event: 'finish', ...outcome})
      },
      emit,
    )
  }
  const failures = outcomes.filter((o) => o.error !== undefined)
  const seconds = (Date.now() - started) / 1000
  const moved = outcomes.filter((o) => o.state === 'retired').length
  // Moves journaled but not started (Ctrl-C) are still in the last wave's plan, so in `left` already.
  const unretired = outcomes.length - failures.length - moved
  const bytes = outcomes.reduce((n, o) => n + (o.error === undefined ? o.bytes : 0), 0)
  const emptied = (await store.serverUsage()).filter((u) => u.copies === 0).map((u) => u.server)
  const draining = new Set(
    (await store.readTopology()).servers.filter((s) => s.state === 'draining').map((s) => s.name),
  )
  return {
    summary: {
      moved,
      failed: failures.length,
      resumed,
      left: Math.max(0, left) + unretired,
      copyCountChanges,
      interrupted: aborted(),
      seconds,
      movesPerSecond: seconds > 0 ? moved / seconds : 0,
      bytes,
      bytesPerSecond: seconds > 0 ? bytes / seconds : 0,
    },
    moves: outcomes,
    failures,
    emptied: emptied.filter((s) => draining.has(s)),
  }
}

/** The first move of every user without an open move (copies added or dropped are counted too). */
function nextMoves(
  plan: PlanOutcome,
  busy: ReadonlySet<string>,
  only: ((move: PlanMove) => boolean) | undefined,
): {moves: PlanMove[]; pending: number; copyCountChanges: number} {
  const moves: PlanMove[] = []
  const seen = new Set<string>()
  let pending = 0
  let copyCountChanges = 0
  for (const move of plan.plan.moves) {
    if (only && !only(move)) continue
    if (move.from === null || move.to === null) copyCountChanges++
    pending++
    if (busy.has(move.user) || seen.has(move.user)) continue
    seen.add(move.user)
    moves.push(move)
  }
  return {moves, pending, copyCountChanges}
}

/**
 * Each move's position in the user's copy list: the copy that leaves (a transfer or a drop), or for an
 * added copy the place the target placement gives it (at most after the last copy now).
 */
async function positionMoves(
  store: Store,
  moves: readonly PlanMove[],
  target: Placement,
): Promise<NewMove[]> {
  const out: NewMove[] = []
  for (const move of moves) {
    const record = await store.getUser(move.user)
    if (!record) continue
    const position =
      move.from === null
        ? Math.min(Math.max(0, target.serversFor(move.user).indexOf(move.to!)), record.copies.length)
        : record.copies.indexOf(move.from)
    if (position < 0) continue // changed since the plan: the next wave plans it again
    out.push({user: move.user, position, from: move.from, to: move.to})
  }
  return out
}

/**
 * What the copy of a move will carry: the size of U's mail on the copy it is synced from (the leaving copy,
 * or the first one not marked down). 0 when it cannot be asked (the move itself then meets the problem).
 */
async function copySize(fleet: DoveadmFleet, store: Store, move: MoveRecord): Promise<number> {
  const up = (c: string | null): c is string => c !== null && fleet.server(c).state !== 'down'
  try {
    const source = up(move.from) ? move.from : (await store.getUser(move.user))?.copies.find(up)
    if (source === undefined) return 0
    const rows = await fleet.mailboxStatus(source, move.user, ['vsize'])
    return rows.reduce((n, row) => n + (Number(row.vsize) || 0), 0)
  } catch {
    return 0
  }
}

interface Task {
  move: MoveRecord
  /** Not before this time (ms since the epoch): a caught-up move waits before its old copy is retired. */
  readyAt: number
  carry?: MoveOutcome
  /** Its bytes are reserved in the byte budget: it starts at readyAt. */
  reserved?: boolean
}

/**
 * Runs moves at most `parallel` at once and `perServer` per server, always starting the first waiting
 * move whose two servers have room, so that every server stays busy while one is slow. A move that has
 * caught up gives its slot back and is retired `retireAfterMs` later (a delivery routed to the old copy
 * before the switch lands meanwhile, and the retire step catches it up first). With a byte budget, a move
 * that has yet to copy asks its size, reserves it, and gives its slot back until the budget lets it start
 * (retires and moves past their copy need no budget, and go on meanwhile).
 */
async function runMoves(
  steps: MoveSteps,
  moves: readonly MoveRecord[],
  options: RebalanceRunOptions & {byteBudget: ByteBudget | undefined},
  onFinish: (outcome: MoveOutcome) => void,
  emit: (event: RebalanceEvent) => void,
): Promise<void> {
  const retireAfter = options.retireAfterMs ?? DEFAULT_RETIRE_AFTER_MS
  const readyAtOf = (m: MoveRecord) => (m.state === 'caught-up' ? Date.parse(m.updatedAt) + retireAfter : 0)
  const waiting: Task[] = moves.map((move) => ({move, readyAt: readyAtOf(move)}))
  const load = new Map<string, number>()
  const running = new Set<Promise<void>>()
  const room = (server: string | null) => server === null || (load.get(server) ?? 0) < options.perServer
  const take = (server: string | null, delta: number) => {
    if (server !== null) load.set(server, (load.get(server) ?? 0) + delta)
  }
  const aborted = () => options.signal?.aborted === true
  const stopped = new Promise<void>((resolve) => {
    if (aborted()) resolve()
    options.signal?.addEventListener('abort', () => resolve(), {once: true})
  })
  for (;;) {
    const now = Date.now()
    while (!aborted() && running.size < Math.max(1, options.parallel)) {
      const i = waiting.findIndex((t) => t.readyAt <= now && room(t.move.from) && room(t.move.to))
      if (i < 0) break
      const [task] = waiting.splice(i, 1) as [Task]
      const {move} = task
      take(move.from, 1)
      take(move.to, 1)
      const retiring = move.state === 'caught-up'
      const copies = move.to !== null && (move.state === 'planned' || move.state === 'copying')
      const start = async (): Promise<MoveOutcome | undefined> => {
        if (options.byteBudget && copies && !task.carry && !task.reserved) {
          const wait = options.byteBudget.reserve(await steps.copySize(move), Date.now())
          if (wait > 0) {
            waiting.push({...task, reserved: true, readyAt: Date.now() + wait})
            return undefined
          }
        }
        if (!task.carry)
          emit({
            event: 'start',
            id: move.id,
            user: move.user,
            from: move.from,
            to: move.to,
            state: move.state,
          })
        return steps.execute(move, {
          ...(retiring ? {} : {stopAt: 'caught-up' as const}),
          ...(task.carry ? {carry: task.carry} : {}),
        })
      }
      const work = start().then((outcome) => {
        take(move.from, -1)
        take(move.to, -1)
        running.delete(work)
        if (outcome === undefined) return
        if (outcome.state === 'caught-up' && outcome.error === undefined && !retiring)
          waiting.push({
            move: {...move, state: 'caught-up'},
            readyAt: Date.now() + retireAfter,
            carry: outcome,
          })
        else onFinish(outcome)
      })
      running.add(work)
    }
    if (aborted()) {
      // Moves waiting to be retired are past their switch: the next run retires them.
      for (const task of waiting.splice(0)) if (task.carry) onFinish(task.carry)
    }
    if (running.size === 0 && waiting.length === 0) return
    const nextReady = Math.min(...waiting.map((t) => t.readyAt))
    let timer: NodeJS.Timeout | undefined
    const sleep =
      waiting.length > 0 && nextReady > now
        ? new Promise<void>((resolve) => (timer = setTimeout(resolve, nextReady - now)))
        : undefined
    if (running.size === 0 && !sleep) {
      // Nothing runs and nothing waits on time: only servers without room, which cannot happen.
      throw new Error('the rebalance scheduler found no move it can start')
    }
    // Ctrl-C wakes the loop too: what waits on time (a retire, the byte budget) is left to the next run.
    // Once stopped, only the moves in flight are waited for (the settled `stopped` would spin the loop).
    await Promise.race([...running, ...(sleep ? [sleep] : []), ...(aborted() ? [] : [stopped])])
    clearTimeout(timer)
  }
}
