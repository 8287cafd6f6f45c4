import type {PlacementWarning} from '../../core/placement.js'
import {serverShares, type PlanSummary, type RebalancePlan} from '../../core/plan.js'
import type {Server, Topology} from '../../core/topology.js'
import {availabilityIssues, type ValidationIssue} from '../../core/validate.js'
import {describeHolder} from '../../store/aggregates/lock.js'
import type {LockHolder, Store} from '../../store/store.js'
import type {DovecotContext} from '../context.js'
import {DoveadmFleet} from '../sync/fleet.js'
import {computePlan} from '../rebalance/plan.js'

/**
 * Whether a server's doveadm answers (`status --doveadm`), in --json as `{state, ms?, reason?}`:
 * - `{state: 'ok', ms}`: it answered one harmless call (a user lookup) in `ms` whole milliseconds;
 * - `{state: 'unreachable', reason}`: no answer (not running, no route, time-out) or no address;
 * - `{state: 'refused', reason}`: it answered but refused mailring (wrong doveadm password, not doveadm,
 *   SSH host key or login): the configuration needs fixing;
 * - `{state: 'down'}`: marked down in the store, so not asked.
 * A reason never contains the password.
 */
export type DoveadmStatus =
  | {state: 'ok'; ms: number}
  | {state: 'unreachable'; reason: string}
  | {state: 'refused'; reason: string}
  | {state: 'down'}

export type ServerDoveadmStatus = {server: string} & DoveadmStatus

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
  /** Only with --doveadm: whether its doveadm answers, `{state, ms?, reason?}` (see DoveadmStatus). */
  doveadm?: DoveadmStatus
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
  /**
   * With the `doveadm` option: every server of the topology, in its order, with whether its doveadm
   * answers (also when there are too few servers for a table); null without it.
   */
  doveadm: ServerDoveadmStatus[] | null
}

export interface StatusOptions {
  /** Called before the placement is read, which takes seconds for millions of users. */
  onStore?: (read: StoreStatus) => void
  /**
   * Also ask every server that is not down whether its doveadm answers (`status --doveadm`), all at once,
   * after onStore and before the placement is read (not beside it, which would skew the times). Throws
   * before onStore when the doveadm password is needed but not set.
   */
  doveadm?: DovecotContext
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
  // Fails here, before any output, when the doveadm password is needed but not set.
  const fleet = options.doveadm && doveadmFleet(options.doveadm, topology.servers)
  options.onStore?.(read)
  const outcome: StatusOutcome = {...read, shortfall: [], warnings: [], summary: null, doveadm: null}
  // Before the placement, not beside it: reading the placement keeps this process busy (with SQLite, all of
  // it), so the answers would wait for it and their times would measure the read instead of the servers.
  if (fleet) outcome.doveadm = await probeDoveadm(fleet, topology.servers)
  await readPlacement(store, outcome)
  if (outcome.doveadm) {
    const byServer = new Map(outcome.doveadm.map(({server, ...found}) => [server, found]))
    for (const s of status.servers) s.doveadm = byServer.get(s.name)!
  }
  return outcome
}

/** The servers' shares now and in the target placement, and what is pending (none without servers). */
async function readPlacement(store: Store, outcome: StatusOutcome): Promise<void> {
  const {status, topology} = outcome
  if (topology.servers.length === 0) return
  // Without enough servers there is no target placement to compare against (computePlan would refuse).
  outcome.shortfall = availabilityIssues(topology)
  if (outcome.shortfall.length > 0) return
  const {plan, warnings} = await computePlan(store)
  outcome.warnings = warnings
  outcome.summary = plan.summary
  status.users = plan.summary.users
  status.pendingMoves = plan.summary.moves
  status.pendingDrops = plan.summary.drops
  status.servers = statusServers(topology, plan)
}

/**
 * The servers' doveadm, as status read the servers (so that the rows and the probe agree on addresses and
 * states). Throws when the doveadm password is needed but not set.
 */
function doveadmFleet(ctx: DovecotContext, servers: readonly Server[]): DoveadmFleet {
  const fleet = new DoveadmFleet({...ctx, servers: [...servers]})
  fleet.preflight(servers.filter((s) => s.state !== 'down').map((s) => s.name))
  return fleet
}

/** One harmless doveadm call to each server that is not down, all at once; then the fleet is closed. */
async function probeDoveadm(fleet: DoveadmFleet, servers: readonly Server[]): Promise<ServerDoveadmStatus[]> {
  try {
    const live = servers.filter((s) => s.state !== 'down').map((s) => s.name)
    const found = new Map((await fleet.probe(live, {timed: true})).map((p) => [p.server, p]))
    return servers.map(({name}): ServerDoveadmStatus => {
      const p = found.get(name)
      if (!p) return {server: name, state: 'down'}
      return p.state === 'ok' ? {server: name, state: 'ok', ms: Math.round(p.ms)} : p
    })
  } finally {
    await fleet.close()
  }
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
