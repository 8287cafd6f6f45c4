/** The whole simulation in one call: both layouts, one failure, and every figure the command reports. */
import {binomial} from '../combinatorics.js'
import {MailringError} from '../errors.js'
import {compareNames, Placement} from '../placement.js'
import {isPlacementTarget, type Server, type Topology} from '../topology.js'
import {availabilityIssues} from '../validate.js'
import {capacityUnderFailures, capacityUnderZoneFailures, type CapacityOutcome} from './capacity.js'
import {resolveFailure, type FailureSpec} from './failure-spec.js'
import {
  DEFAULT_SIM_SEED,
  failureBase,
  failureOutcome,
  maskOf,
  MAX_SIM_SEED,
  type FailureBase,
} from './failures.js'
import {ringLayout, type Layout} from './layout.js'
import {expectedOfflineShare, liveCopyHistogram, OfflineIndex, worstOfflineSet} from './offline.js'
import {pairLayout} from './pairs.js'
import {
  checkWholeNumber,
  DEFAULT_SIM_USERS,
  MAX_SIM_USERS,
  simulationDomains,
  syntheticUsers,
} from './synthetic.js'

export interface SimulationInput {
  topology: Topology
  source?: 'synthetic' | 'topology'
  users?: number
  failure: FailureSpec
  /** Active users one server of mean weight can serve; capacity figures in users when given. */
  capacityPerServer?: number
  /** Seed for random failures and for sampling failure sets. */
  seed?: number
  perServer?: boolean
}

export interface ServerLoad {
  name: string
  zone: string | null
  /** active, down (failed before), failed (by this simulation) */
  state: 'active' | 'down' | 'failed'
  before: number
  after: number
  increase: number
}

export interface LayoutReport {
  offline: {
    /** Users with no live copy after the chosen failure. */
    chosen: {users: number; share: number}
    /** Expected share with no live copy over all k-sets of live servers, equally likely. */
    expected: number
    worst: {servers: string[]; users: number; share: number}
    worstMethod: 'exact' | 'heuristic'
    worstSetsEvaluated: number
  }
  load: {
    /** Over live servers before the failure. */
    before: {max: number; mean: number}
    /** Over the survivors. */
    after: {max: number; mean: number}
    /** after - before, over the survivors; `server` takes the largest. */
    increase: {max: number; mean: number; server: string | null}
    perServer: ServerLoad[] | null
  }
}

export interface CapacityFigures {
  /** Users the cluster holds (null without capacityPerServer). */
  users: number | null
  /** Those users as a share of servers × capacity per server. */
  utilisation: number | null
  method: 'exact' | 'sampled' | 'zones'
  setsEvaluated: number
  /** The failure set that limits capacity, and its busiest survivor. */
  worstSet: string[]
  /** When a zone fails: the zone whose loss limits capacity. */
  worstZone: string | null
  busiest: string | null
}

export interface SimulationResult {
  cluster: {
    source: 'synthetic' | 'topology'
    /** Servers holding copies (not draining), down ones included. */
    servers: number
    down: string[]
    draining: string[]
    zones: string[]
    copies: number
    users: number
    domains: string[]
  }
  failure: {
    mode: 'random' | 'servers' | 'zone'
    /** Servers failed on top of the down ones. */
    k: number
    seed: number | null
    zone: string | null
    servers: string[]
  }
  ring: LayoutReport
  pairs: LayoutReport & {pools: {domains: string[]; copies: number; groups: string[][]}[]}
  capacity: {
    perServer: number | null
    tolerates: string
    ring: CapacityFigures
    pairs: CapacityFigures
    /** ring users / pairs users. */
    ratio: number | null
  }
  notes: string[]
  warnings: string[]
}

/**
 * Runs the whole simulation; throws MailringError (one line) on bad input, a FailureSpecError when the
 * failure asked for does not fit the cluster.
 */
export function simulate(input: SimulationInput): SimulationResult {
  const userCount = input.users ?? DEFAULT_SIM_USERS
  checkWholeNumber(userCount, 'The number of users', 1, MAX_SIM_USERS)
  const {capacityPerServer} = input
  if (capacityPerServer !== undefined && !(Number.isFinite(capacityPerServer) && capacityPerServer > 0))
    throw new MailringError(`Capacity per server must be a positive number (got ${capacityPerServer}).`)
  const seed = input.seed ?? DEFAULT_SIM_SEED
  checkWholeNumber(seed, 'The seed', 0, MAX_SIM_SEED)
  const problems = availabilityIssues(input.topology)
  if (problems.length > 0) throw new MailringError(`The topology cannot be placed: ${problems[0]!.message}.`)

  const placement = new Placement(input.topology)
  const servers = placement.servers
  const base = failureBase(servers)
  if (base.live.length === 0)
    throw new MailringError('Every server is down or draining: there is nothing left to fail.')
  const warnings = placement.warnings().map((w) => w.message)
  const notes: string[] = []
  const failed = resolveFailure(input.failure, servers, base, seed)
  const k = failed.length
  const failedNames = failed.map((i) => servers[i]!.name)

  const domains = simulationDomains(input.topology)
  if (domains.length > 1)
    notes.push(
      `Users are spread evenly over ${domains.length} domains: ${domains.join(', ')} (the default pool and each domain policy).`,
    )
  const downNames = servers.filter((s, i) => base.down[i]).map((s) => s.name)
  if (downNames.length > 0)
    notes.push(
      `${downNames.length} server(s) already down (${downNames.join(', ')}) count as failed in every figure; ${k} more fail${k === 1 ? 's' : ''}.`,
    )
  const users = syntheticUsers(userCount, domains)
  const ring = ringLayout(placement, users)
  const pairs = pairLayout(placement, users)

  const zones = zoneSets(servers, base)
  const tolerates = input.failure.kind === 'zone' ? 'any one zone' : `any ${k} server${k === 1 ? '' : 's'}`
  const analyse = (layout: Layout) => {
    const report = layoutReport(layout, base, servers, failed, userCount, input.perServer ?? false)
    const worstSet = report.worstIndices
    const capacity =
      input.failure.kind === 'zone'
        ? capacityUnderZoneFailures(layout, base, [...zones.values()])
        : capacityUnderFailures(layout, base, k, {seed, candidates: [failed, worstSet]})
    return {report: report.report, capacity}
  }
  const ringAnalysis = analyse(ring)
  const pairAnalysis = analyse(pairs.layout)
  for (const [name, analysis] of [
    ['ring', ringAnalysis],
    ['pairs', pairAnalysis],
  ] as const) {
    if (analysis.report.offline.worstMethod === 'heuristic')
      notes.push(
        `The worst ${k}-server failure for ${name} was found by search, not enumeration: there are ${binomial(base.live.length, k).toExponential(2)} sets.`,
      )
  }

  const capacityFigures = (outcome: CapacityOutcome): CapacityFigures => {
    const utilisation = outcome.ratio > 0 ? userCount / (outcome.ratio * base.holders) : null
    return {
      users:
        input.capacityPerServer === undefined || outcome.ratio === 0
          ? null
          : Math.floor((userCount * input.capacityPerServer) / outcome.ratio + 1e-9),
      utilisation,
      method: outcome.method,
      setsEvaluated: outcome.setsEvaluated,
      worstSet: outcome.worstSet.map((i) => servers[i]!.name),
      worstZone:
        outcome.method === 'zones' && outcome.worstSet.length > 0
          ? (servers[outcome.worstSet[0]!]!.zone ?? null)
          : null,
      busiest: outcome.busiest >= 0 ? servers[outcome.busiest]!.name : null,
    }
  }
  const ringCapacity = capacityFigures(ringAnalysis.capacity)
  const pairCapacity = capacityFigures(pairAnalysis.capacity)

  return {
    cluster: {
      source: input.source ?? 'topology',
      servers: base.holders,
      down: downNames,
      draining: servers.filter((s) => !isPlacementTarget(s)).map((s) => s.name),
      zones: [...new Set(servers.filter(isPlacementTarget).flatMap((s) => (s.zone ? [s.zone] : [])))].sort(
        compareNames,
      ),
      copies: input.topology.copies,
      users: userCount,
      domains,
    },
    failure: {
      mode: input.failure.kind,
      k,
      seed: input.failure.kind === 'random' ? seed : null,
      zone: input.failure.kind === 'zone' ? input.failure.zone : null,
      servers: failedNames,
    },
    ring: ringAnalysis.report,
    pairs: {
      ...pairAnalysis.report,
      pools: pairs.pools.map((pool) => ({
        domains: pool.domains,
        copies: pool.copies,
        groups: pool.groups.map((group) => group.map((i) => servers[i]!.name)),
      })),
    },
    capacity: {
      perServer: input.capacityPerServer ?? null,
      tolerates,
      ring: ringCapacity,
      pairs: pairCapacity,
      ratio:
        ringCapacity.utilisation !== null && pairCapacity.utilisation !== null
          ? ringCapacity.utilisation / pairCapacity.utilisation
          : null,
    },
    notes,
    warnings,
  }
}

function layoutReport(
  layout: Layout,
  base: FailureBase,
  servers: readonly Server[],
  failed: number[],
  userCount: number,
  perServer: boolean,
): {report: LayoutReport; worstIndices: number[]} {
  const k = failed.length
  const outcome = failureOutcome(layout, base.down, failed)
  const failedMask = maskOf(layout.serverCount, failed)
  const index = new OfflineIndex(layout, base.down, k)
  const worst = worstOfflineSet(index, base.live, k)
  const expected = expectedOfflineShare(liveCopyHistogram(layout, base.down), base.live.length, k)

  const survivors = Array.from(base.live).filter((s) => !failedMask[s])
  const stats = (values: number[]) => ({
    max: values.length === 0 ? 0 : Math.max(...values),
    mean: values.length === 0 ? 0 : values.reduce((a, b) => a + b, 0) / values.length,
  })
  const increases = survivors.map((s) => outcome.after[s]! - outcome.before[s]!)
  let increaseServer: string | null = null
  let increaseMax = -Infinity
  for (let i = 0; i < survivors.length; i++) {
    if (increases[i]! > increaseMax) {
      increaseMax = increases[i]!
      increaseServer = servers[survivors[i]!]!.name
    }
  }
  const rows: ServerLoad[] | null = perServer
    ? servers.flatMap((server, s) =>
        isPlacementTarget(server)
          ? [
              {
                name: server.name,
                zone: server.zone ?? null,
                state: base.down[s] ? 'down' : failedMask[s] ? 'failed' : 'active',
                before: outcome.before[s]!,
                after: outcome.after[s]!,
                increase: outcome.after[s]! - outcome.before[s]!,
              } satisfies ServerLoad,
            ]
          : [],
      )
    : null
  return {
    report: {
      offline: {
        chosen: {users: outcome.offline, share: outcome.offline / userCount},
        expected,
        worst: {
          servers: worst.servers.map((i) => servers[i]!.name),
          users: worst.users,
          share: worst.users / userCount,
        },
        worstMethod: worst.method,
        worstSetsEvaluated: worst.setsEvaluated,
      },
      load: {
        before: stats(Array.from(base.live, (s) => outcome.before[s]!)),
        after: stats(survivors.map((s) => outcome.after[s]!)),
        increase: {...stats(increases), server: increaseServer},
        perServer: rows,
      },
    },
    worstIndices: worst.servers,
  }
}

/** The live servers of each explicit zone. */
function zoneSets(servers: readonly Server[], base: FailureBase): Map<string, number[]> {
  const zones = new Map<string, number[]>()
  for (const s of base.live) {
    const zone = servers[s]!.zone
    if (!zone) continue
    const list = zones.get(zone) ?? []
    list.push(s)
    zones.set(zone, list)
  }
  return new Map([...zones].sort(([a], [b]) => compareNames(a, b)))
}
