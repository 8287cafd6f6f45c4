import type {PlacementWarning} from '../core/placement.js'
import {serverShares, type PlanSummary, type RebalancePlan} from '../core/plan.js'
import type {Topology} from '../core/topology.js'
import {availabilityIssues, type ValidationIssue} from '../core/validate.js'
import {describeHolder} from '../store/lock.js'
import type {LockHolder, Store} from '../store/store.js'
import {computePlan} from './rebalance-plan.js'

export interface StatusServer {
  name: string
  state: string
  zone: string | null
  weight: number
  /** Users whose primary copy is here now. */
  primaries: number
  copies: number
  /** This server's share of all copies now, and in the target placement. */
  share: number
  targetShare: number
  targetCopies: number
  movesIn: number
  movesOut: number
}

export interface StatusResult {
  store: string
  schemaVersion: number
  algorithm: number
  clusterId: string
  copies: number
  users: number
  servers: StatusServer[]
  pendingMoves: number
  pendingDrops: number
  lock: LockHolder | null
}

/** What status knows once it has read the store, before it reads the placement. */
export interface StoreStatus {
  status: StatusResult
  /**
   * The store's topology, so that checks of the servers themselves (such as whether doveadm answers)
   * can run beside this one without reading the store again.
   */
  topology: Topology
  /** Who holds the cluster lock, in the words of every lock message; null when nobody does. */
  lockedBy: string | null
}

export interface StatusOutcome extends StoreStatus {
  /** Too few servers that are not draining for the copies: the placement was not read. */
  shortfall: ValidationIssue[]
  warnings: PlacementWarning[]
  /** The plan from the current placement to the target; null when it was not computed. */
  summary: PlanSummary | null
}

export interface StatusOptions {
  /** Called before the placement is read, which takes seconds for millions of users. */
  onStore?: (read: StoreStatus) => void
}

/** The store, its lock, and each server's copies now and in the target placement, with what is pending. */
export async function clusterStatus(store: Store, options: StatusOptions = {}): Promise<StatusOutcome> {
  const meta = await store.meta()
  const topology = await store.readTopology()
  const lock = (await store.lockHolder()) ?? null
  const status: StatusResult = {
    store: store.location,
    schemaVersion: meta.schemaVersion,
    algorithm: meta.algorithm,
    clusterId: meta.clusterId,
    copies: topology.copies,
    users: 0,
    servers: [],
    pendingMoves: 0,
    pendingDrops: 0,
    lock,
  }
  const read: StoreStatus = {status, topology, lockedBy: lock && describeHolder(lock)}
  options.onStore?.(read)
  const outcome: StatusOutcome = {...read, shortfall: [], warnings: [], summary: null}
  if (topology.servers.length === 0) return outcome
  // Without enough servers there is no target placement to compare against (computePlan would refuse).
  outcome.shortfall = availabilityIssues(topology)
  if (outcome.shortfall.length > 0) return outcome
  const {plan, warnings} = await computePlan(store)
  outcome.warnings = warnings
  outcome.summary = plan.summary
  status.users = plan.summary.users
  status.pendingMoves = plan.summary.moves
  status.pendingDrops = plan.summary.drops
  status.servers = statusServers(topology, plan)
  return outcome
}

/** One row per server of the topology, in its order. */
function statusServers(topology: Topology, plan: RebalancePlan): StatusServer[] {
  const shares = new Map(serverShares(plan).map((s) => [s.server, s]))
  return topology.servers.map((server) => {
    const b = shares.get(server.name)!
    return {
      name: server.name,
      state: server.state,
      zone: server.zone ?? null,
      weight: server.weight,
      primaries: b.primariesBefore,
      copies: b.before,
      share: b.shareBefore,
      targetShare: b.shareAfter,
      targetCopies: b.after,
      movesIn: b.movesIn,
      movesOut: b.movesOut,
    }
  })
}
