/**
 * Failure simulation: what happens to users when servers fail, for mailring's placement (the "ring":
 * weighted rendezvous hashing, every copy independent) and for a classic layout of mirrored pairs on the
 * same servers. Pure computation, no I/O; `simulate` is the whole command in one call.
 *
 * Conventions used throughout:
 * - Servers are indices into Placement.servers (sorted by name). Servers that hold copies are the
 *   non-draining ones; draining servers get nothing in the placement and take no part.
 * - Servers whose state is `down` have already failed: every figure is "down servers plus K more".
 *   Random failures are drawn from the live servers (holding copies and not down).
 * - A user is offline when none of its copies is on a live, non-failed server. Its load (logins and
 *   deliveries) goes to the first copy in order (primary first) that is live.
 */
export {capacityUnderFailures, capacityUnderZoneFailures, type CapacityOutcome} from './capacity.js'
export {FailureSpecError, resolveFailure, type FailureSpec, type FailureSpecProblem} from './failure-spec.js'
export {
  DEFAULT_SIM_SEED,
  failureBase,
  failureOutcome,
  MAX_EXACT_SETS,
  MAX_SIM_SEED,
  uniformBase,
  type FailureBase,
  type FailureOutcome,
} from './failures.js'
export {layoutOf, ringLayout, type Layout} from './layout.js'
export {
  expectedOfflineShare,
  liveCopyHistogram,
  OfflineIndex,
  worstOfflineSet,
  type WorstSet,
} from './offline.js'
export {pairGroups, pairLayout, type PairPool} from './pairs.js'
export {
  simulate,
  type CapacityFigures,
  type LayoutReport,
  type ServerLoad,
  type SimulationInput,
  type SimulationResult,
} from './simulate.js'
export {
  DEFAULT_SIM_USERS,
  MAX_SIM_COPIES,
  MAX_SIM_SERVERS,
  MAX_SIM_USERS,
  SIM_DOMAIN,
  simulationDomains,
  syntheticTopology,
  syntheticUsers,
  userSetOf,
  type SyntheticClusterOptions,
  type UserSet,
} from './synthetic.js'
export {TransferIndex} from './transfer.js'
