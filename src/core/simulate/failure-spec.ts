/** What fails: a request (a count, server names or a zone) resolved to servers of the cluster. */
import {sampleWithoutReplacement, seededGenerator} from '../combinatorics.js'
import {MailringError} from '../errors.js'
import {compareNames} from '../placement.js'
import {isPlacementTarget, type Server} from '../topology.js'
import type {FailureBase} from './failures.js'

export type FailureSpec =
  | {kind: 'random'; count: number; seed?: number}
  | {kind: 'servers'; names: string[]}
  | {kind: 'zone'; zone: string}

/** A request that does not fit the cluster; the caller says it in its own terms (flags, fields). */
export type FailureSpecProblem =
  | {kind: 'count'; count: number}
  | {kind: 'no-names'}
  | {kind: 'unknown-servers'; names: string[]; servers: string[]}
  | {kind: 'draining-servers'; names: string[]}
  | {kind: 'only-down'}
  | {kind: 'no-zones'; zone: string}
  | {kind: 'unknown-zone'; zone: string; zones: string[]}

export class FailureSpecError extends MailringError {
  readonly problem: FailureSpecProblem

  constructor(problem: FailureSpecProblem) {
    super(describeProblem(problem))
    this.problem = problem
  }
}

function describeProblem(problem: FailureSpecProblem): string {
  switch (problem.kind) {
    case 'count':
      return `A random failure takes a whole number of servers, at least 1 (got ${problem.count}).`
    case 'no-names':
      return 'No servers named to fail.'
    case 'unknown-servers':
      return `Unknown server${problem.names.length === 1 ? '' : 's'}: ${problem.names.join(', ')}.`
    case 'draining-servers':
      return `${problem.names.join(', ')}: draining servers hold no copies in the placement.`
    case 'only-down':
      return 'Every server named to fail is already down.'
    case 'no-zones':
      return `Cannot fail zone ${problem.zone}: the cluster has no zones.`
    case 'unknown-zone':
      return `Unknown zone "${problem.zone}".`
  }
}

/**
 * The failure set (increasing server indices). Named servers that are already down are left out: they
 * count as failed anyway. Throws FailureSpecError when the request does not fit the cluster, and a plain
 * MailringError when it fits but leaves nothing alive.
 */
export function resolveFailure(
  spec: FailureSpec,
  servers: readonly Server[],
  base: FailureBase,
  seed: number,
): number[] {
  const live = Array.from(base.live)
  const sorted = (list: number[]) => [...new Set(list)].sort((a, b) => a - b)
  const tooMany = (count: number) =>
    new MailringError(
      `Cannot fail ${count} of ${live.length} live server${live.length === 1 ? '' : 's'}: at least one must survive (down and draining servers do not count).`,
    )
  switch (spec.kind) {
    case 'random': {
      if (!Number.isSafeInteger(spec.count) || spec.count < 1)
        throw new FailureSpecError({kind: 'count', count: spec.count})
      if (spec.count >= live.length) throw tooMany(spec.count)
      return sorted(sampleWithoutReplacement(live, spec.count, seededGenerator(spec.seed ?? seed)))
    }
    case 'servers': {
      const byName = new Map(servers.map((server, i) => [server.name, i]))
      const names = spec.names.map((name) => name.trim()).filter((name) => name !== '')
      if (names.length === 0) throw new FailureSpecError({kind: 'no-names'})
      const unknown = names.filter((name) => !byName.has(name))
      if (unknown.length > 0)
        throw new FailureSpecError({
          kind: 'unknown-servers',
          names: unknown,
          servers: servers.map((s) => s.name),
        })
      const draining = names.filter((name) => !isPlacementTarget(servers[byName.get(name)!]!))
      if (draining.length > 0) throw new FailureSpecError({kind: 'draining-servers', names: draining})
      const down = names.filter((name) => base.down[byName.get(name)!])
      const set = sorted(names.filter((name) => !down.includes(name)).map((name) => byName.get(name)!))
      if (set.length === 0) throw new FailureSpecError({kind: 'only-down'})
      if (set.length >= live.length) throw tooMany(set.length)
      return set
    }
    case 'zone': {
      const zones = new Set(servers.filter(isPlacementTarget).flatMap((s) => (s.zone ? [s.zone] : [])))
      if (zones.size === 0) throw new FailureSpecError({kind: 'no-zones', zone: spec.zone})
      if (!zones.has(spec.zone))
        throw new FailureSpecError({
          kind: 'unknown-zone',
          zone: spec.zone,
          zones: [...zones].sort(compareNames),
        })
      const set = live.filter((s) => servers[s]!.zone === spec.zone)
      if (set.length === 0) throw new MailringError(`Every server of zone ${spec.zone} is already down.`)
      if (set.length >= live.length)
        throw new MailringError(
          `Zone ${spec.zone} holds every live server: nothing would survive its failure.`,
        )
      return set
    }
  }
}
