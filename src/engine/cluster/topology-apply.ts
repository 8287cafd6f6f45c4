import {isDeepStrictEqual} from 'node:util'

import {canonicalTopology} from '../../core/plan.js'
import type {Topology} from '../../core/topology.js'
import type {Store} from '../../store/store.js'
import {computePlan, type PlanOutcome} from '../rebalance/plan.js'
import {checkAlgorithm, checkedTopology} from './topology-check.js'

export interface TopologyDiff {
  copies: {from: number; to: number} | null
  servers: {added: string[]; removed: string[]; changed: {name: string; fields: string[]}[]}
  domains: {added: string[]; removed: string[]; changed: string[]}
  /** Servers the file leaves out that still hold copies: kept, draining, until a rebalance empties them. */
  keptDraining: string[]
}

export interface TopologyPreview {
  diff: TopologyDiff
  /** What gets written: the file's topology plus any server kept draining. */
  topology: Topology
  outcome: PlanOutcome
  changed: boolean
}

/** What applying `proposed` would change, and the movement it would cause. Writes nothing. */
export async function previewTopology(store: Store, proposed: Topology): Promise<TopologyPreview> {
  const current = await store.readTopology()
  checkAlgorithm(await store.meta(), proposed)
  const usage = new Map((await store.serverUsage()).map((u) => [u.server, u.copies]))
  const proposedNames = new Set(proposed.servers.map((s) => s.name))
  const keptDraining = current.servers
    .filter((s) => !proposedNames.has(s.name) && (usage.get(s.name) ?? 0) > 0)
    .map((s) => ({...s, state: 'draining' as const}))
  const topology = checkedTopology({...proposed, servers: [...proposed.servers, ...keptDraining]})
  const outcome = await computePlan(store, {target: topology})
  const diff = diffTopologies(current, topology)
  diff.keptDraining = keptDraining.map((s) => s.name)
  const changed = !isDeepStrictEqual(canonicalTopology(current), canonicalTopology(topology))
  return {diff, topology, outcome, changed}
}

/** Applies `proposed` (the caller holds the cluster lock); returns what it changed. */
export async function applyTopology(store: Store, proposed: Topology): Promise<TopologyPreview> {
  const preview = await previewTopology(store, proposed)
  if (preview.changed) await store.writeTopology(preview.topology)
  return preview
}

export function diffTopologies(from: Topology, to: Topology): TopologyDiff {
  const before = new Map(from.servers.map((s) => [s.name, s]))
  const after = new Map(to.servers.map((s) => [s.name, s]))
  const changed: {name: string; fields: string[]}[] = []
  for (const [name, server] of after) {
    const old = before.get(name)
    if (!old) continue
    const fields = (['address', 'zone', 'weight', 'state'] as const).filter(
      (field) => (old[field] ?? null) !== (server[field] ?? null),
    )
    if (fields.length > 0)
      changed.push({
        name,
        fields: fields.map(
          (field) => `${field} ${String(old[field] ?? '-')} -> ${String(server[field] ?? '-')}`,
        ),
      })
  }
  const policiesBefore = new Map(from.domains.map((d) => [d.domain, d]))
  const policiesAfter = new Map(to.domains.map((d) => [d.domain, d]))
  return {
    copies: from.copies === to.copies ? null : {from: from.copies, to: to.copies},
    servers: {
      added: [...after.keys()].filter((name) => !before.has(name)).sort(),
      removed: [...before.keys()].filter((name) => !after.has(name)).sort(),
      changed: changed.sort((a, b) => (a.name < b.name ? -1 : 1)),
    },
    domains: {
      added: [...policiesAfter.keys()].filter((d) => !policiesBefore.has(d)).sort(),
      removed: [...policiesBefore.keys()].filter((d) => !policiesAfter.has(d)).sort(),
      changed: [...policiesAfter.entries()]
        .filter(
          ([d, policy]) =>
            policiesBefore.has(d) &&
            !isDeepStrictEqual(canonicalPolicy(policiesBefore.get(d)!), canonicalPolicy(policy)),
        )
        .map(([d]) => d)
        .sort(),
    },
    keptDraining: [],
  }
}

function canonicalPolicy(policy: {servers?: string[]; copies?: number}): unknown {
  return {servers: policy.servers ? [...policy.servers].sort() : null, copies: policy.copies ?? null}
}
