/**
 * `mailring rebalance`, the service: what to move (the plan, a saved plan file checked, the --server and
 * --user narrowing, the journal's open moves), then the run under the cluster lock with the fleet, stopped
 * as every long job is (engine/interrupts.ts). The command asks for confirmation and shows progress.
 */
import type {PlanMove} from '../../core/plan.js'
import type {Topology} from '../../core/topology.js'
import type {StoreLocation} from '../../store/open.js'
import type {ClusterLock, MoveRecord, Store} from '../../store/store.js'
import {loadDovecotContext} from '../context.js'
import {watchInterrupts, type InterruptOptions} from '../interrupts.js'
import {withFleet} from '../sync/fleet.js'
import {narrowing, narrowingText, type Narrowing} from './narrowing.js'
import {
  checkPlanTargetsStore,
  computePlan,
  hasPendingMoves,
  verifyPlanFile,
  type PlanOutcome,
} from './plan.js'
import {fleetMoves, runRebalance, type RebalanceRunOptions, type RebalanceRunResult} from './run.js'

/** The plan from the store to `target` (default the store's topology), or a saved plan file checked. */
export async function loadPlan(
  store: Store,
  options: {planFile?: string; target?: Topology},
): Promise<PlanOutcome> {
  if (options.planFile) return verifyPlanFile(store, options.planFile)
  return computePlan(store, options.target ? {target: options.target} : {})
}

/** The plan's moves narrowed to the named servers and users (undefined: not narrowed). */
export async function narrowedMoves(
  store: Store,
  outcome: PlanOutcome,
  names: Narrowing,
): Promise<PlanMove[] | undefined> {
  const only = await narrowing(store, outcome, names)
  return only ? [...outcome.plan.moves].filter(only) : undefined
}

export interface RebalanceWork {
  outcome: PlanOutcome
  only?: (move: PlanMove) => boolean
  /** Journaled moves of an earlier run, finished first. */
  open: MoveRecord[]
  /** Copies to move in this run (dropped copies included), not counting the open moves. */
  toMove: number
  /** Nothing to move and nothing journaled. */
  nothing: boolean
  /** "Move N copies of M users ...", for the confirmation. */
  what: string
}

/** What a run would do, under the lock: a saved plan must still target the store's topology. */
export async function rebalanceWork(
  store: Store,
  options: {planFile?: string} & Narrowing,
): Promise<RebalanceWork> {
  const outcome = await loadPlan(store, options.planFile ? {planFile: options.planFile} : {})
  if (options.planFile) checkPlanTargetsStore(options.planFile, outcome)
  const only = await narrowing(store, outcome, options)
  const open = await store.openMoves()
  const {summary} = outcome.plan
  // Copies dropped (a lower copy count) are moves too: they run as the others do.
  const toMove = only ? [...outcome.plan.moves].filter(only).length : summary.moves + summary.drops
  const nothing = (only ? toMove === 0 : !hasPendingMoves(summary)) && open.length === 0
  const what = `Move ${toMove} copies${only ? ` (of ${narrowingText(options)})` : ` of ${summary.usersAffected} users`}${open.length > 0 ? ` and finish ${open.length} moves of an earlier run` : ''}`
  return {outcome, ...(only ? {only} : {}), open, toMove, nothing, what}
}

export interface ExecuteOptions {
  store: Store
  lock: ClusterLock
  location: StoreLocation
  config?: string
  acceptNew: boolean
  work: RebalanceWork
  tuning: Pick<
    RebalanceRunOptions,
    'parallel' | 'perServer' | 'maxMoves' | 'retireAfterMs' | 'bytesPerSecond'
  >
  onEvent?: RebalanceRunOptions['onEvent']
  /** What to say on Ctrl-C (once, then a second time). */
  interrupts?: Pick<InterruptOptions, 'onStopping' | 'onExit' | 'source'>
}

export interface ExecuteResult {
  run: RebalanceRunResult
  /** Set when the cluster lock was lost during the run: the run stopped, report this error (exit 3). */
  lockLost?: Error
}

/** Runs the moves: each server's doveadm checked first, then waves of journaled moves until done. */
export async function executeRebalance(options: ExecuteOptions): Promise<ExecuteResult> {
  const {store, work} = options
  const ctx = await loadDovecotContext({
    store,
    location: options.location,
    ...(options.config === undefined ? {} : {config: options.config}),
  })
  return withFleet(ctx, {acceptNew: options.acceptNew}, async (fleet) => {
    const interrupts = watchInterrupts({lock: options.lock, ...options.interrupts})
    try {
      await fleet.checkBeforeWork(new Set(ctx.servers.map((s) => s.name)))
      const run = await runRebalance(fleetMoves(fleet, store), store, {
        ...options.tuning,
        signal: interrupts.signal,
        plan: work.outcome,
        ...(work.only ? {only: work.only} : {}),
        ...(options.onEvent ? {onEvent: options.onEvent} : {}),
      })
      const lockLost = interrupts.lockLost()
      return {run, ...(lockLost ? {lockLost} : {})}
    } catch (error) {
      // What failed after the lock was lost (a read of a store that went away) is its consequence.
      throw interrupts.lockLost() ?? error
    } finally {
      interrupts.dispose()
    }
  })
}
