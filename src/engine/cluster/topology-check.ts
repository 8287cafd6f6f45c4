import {MailringError} from '../../core/errors.js'
import {PLACEMENT_ALGORITHM_VERSION, type Topology} from '../../core/topology.js'
import {availabilityIssues, parseTopology} from '../../core/validate.js'
import type {Store, StoreMeta} from '../../store/store.js'

/**
 * Every topology change goes through the same validation as a topology file: unknown or duplicate servers,
 * pins to servers that do not exist, more copies than servers available. Returns the validated topology.
 */
export function checkedTopology(candidate: Topology, options: {allowTooFewServers?: boolean} = {}): Topology {
  const {topology, issues} = parseTopology(JSON.parse(JSON.stringify(candidate)))
  if (topology) return topology
  // While a cluster is being built and holds no users yet, it may have fewer servers than copies.
  const shortfall = new Set(availabilityIssues(candidate).map((issue) => issue.message))
  const blocking = issues.filter(
    (issue) =>
      !options.allowTooFewServers ||
      !(shortfall.has(issue.message) || (issue.path.length === 1 && issue.path[0] === 'servers')),
  )
  if (blocking.length === 0) return candidate
  throw new MailringError(blocking.map((issue) => issue.message).join('\n'), {code: 'invalid_topology'})
}

/** The store's placements and this mailring must use the same placement algorithm. */
export function checkAlgorithm(meta: StoreMeta, topology?: Topology): void {
  if (meta.algorithm !== PLACEMENT_ALGORITHM_VERSION) {
    throw new MailringError(
      `The store's placements were computed with placement algorithm ${meta.algorithm}; this mailring computes version ${PLACEMENT_ALGORITHM_VERSION}: use a mailring that matches the store.`,
      {code: 'algorithm_mismatch'},
    )
  }
  if (topology && topology.algorithm !== meta.algorithm) {
    throw new MailringError(
      `The topology asks for placement algorithm ${topology.algorithm}, the store uses ${meta.algorithm}: changing the algorithm is not supported.`,
      {code: 'algorithm_mismatch'},
    )
  }
}

/** The store's topology, ready to place users: it must have servers. */
export async function placementTopology(store: Store): Promise<Topology> {
  const topology = await store.readTopology()
  if (topology.servers.length === 0) {
    throw new MailringError(
      'The cluster has no servers yet: add them first (mailring node add, or mailring topology apply -f FILE).',
      {code: 'no_servers'},
    )
  }
  return checkedTopology(topology)
}
