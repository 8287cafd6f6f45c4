/**
 * `simulate` as the command takes it: each number checked and named after its flag (--users, --servers,
 * --fail...) in the message, and what is wrong with the failure said in terms of --fail and --fail-zone.
 */
import {MailringError} from '../errors.js'
import {groupDigits} from '../number-format.js'
import type {Topology} from '../topology.js'
import {
  DEFAULT_SIM_SEED,
  DEFAULT_SIM_USERS,
  FailureSpecError,
  MAX_SIM_COPIES,
  MAX_SIM_SEED,
  MAX_SIM_SERVERS,
  MAX_SIM_USERS,
  simulate,
  syntheticTopology,
  type FailureSpec,
  type FailureSpecProblem,
  type SimulationInput,
  type SimulationResult,
  type SyntheticClusterOptions,
} from './index.js'

/** The failure --fail (a count or server names) or --fail-zone asks for; --fail defaults to 1 server. */
export function failureSpec(fail: string | undefined, zone: string | undefined, seed: number): FailureSpec {
  if (zone !== undefined) {
    if (fail !== undefined) throw new MailringError('Give --fail or --fail-zone, not both.')
    if (zone.trim() === '') throw new MailringError('--fail-zone needs a zone name.')
    return {kind: 'zone', zone: zone.trim()}
  }
  const text = (fail ?? '1').trim()
  if (/^[+-]?\d+$/.test(text)) return {kind: 'random', count: Number(text), seed}
  return {kind: 'servers', names: text.split(',')}
}

/** syntheticTopology, with --servers, --replicas and --zones checked first and named in the messages. */
export function checkedSyntheticTopology(options: SyntheticClusterOptions): Topology {
  const {servers, zones, replicas} = options
  wholeNumber(servers, '--servers', 1, MAX_SIM_SERVERS)
  wholeNumber(replicas, '--replicas', 1, MAX_SIM_COPIES)
  if (zones !== undefined) {
    wholeNumber(zones, '--zones', 1, MAX_SIM_SERVERS)
    if (zones > servers)
      throw new MailringError(
        `--zones ${zones} is more than --servers ${servers}: every zone needs a server.`,
      )
  }
  if (replicas > servers)
    throw new MailringError(
      `--replicas ${replicas} is more than --servers ${servers}: each copy needs its own server.`,
    )
  return syntheticTopology(options)
}

/**
 * simulate, with --users, --capacity and --seed checked first, and what is wrong with the failure (or
 * worth a warning) said in terms of --fail and --fail-zone.
 */
export function checkedSimulate(input: SimulationInput): SimulationResult {
  wholeNumber(input.users ?? DEFAULT_SIM_USERS, '--users', 1, MAX_SIM_USERS)
  if (input.capacityPerServer !== undefined) positiveNumber(input.capacityPerServer, '--capacity')
  wholeNumber(input.seed ?? DEFAULT_SIM_SEED, '--seed', 0, MAX_SIM_SEED)
  let result: SimulationResult
  try {
    result = simulate(input)
  } catch (error) {
    // The core finds these in the same order as its other checks; only the words are the command's.
    throw error instanceof FailureSpecError ? new MailringError(failureMessage(error.problem)) : error
  }
  if (input.failure.kind === 'servers') {
    const named = input.failure.names.map((name) => name.trim()).filter((name) => name !== '')
    const down = named.filter((name) => result.cluster.down.includes(name))
    if (down.length > 0)
      result.warnings.push(`${down.join(', ')} already down: counted as failed anyway, not again in --fail.`)
  }
  return result
}

function failureMessage(problem: FailureSpecProblem): string {
  switch (problem.kind) {
    case 'count':
      return wholeNumberMessage(problem.count, '--fail', 1, Number.MAX_SAFE_INTEGER)
    case 'no-names':
      return '--fail needs a number or server names, e.g. --fail mx01,mx02.'
    case 'unknown-servers':
      return `Unknown server${problem.names.length === 1 ? '' : 's'} in --fail: ${problem.names.join(', ')} (servers: ${listSome(problem.servers)}).`
    case 'draining-servers':
      return `--fail ${problem.names.join(', ')}: draining servers hold no copies in the placement; fail other servers.`
    case 'only-down':
      return '--fail names only servers that are already down.'
    case 'no-zones':
      return `--fail-zone ${problem.zone}: the cluster has no zones (give --zones, or zone: in the topology file).`
    case 'unknown-zone':
      return `Unknown zone "${problem.zone}" in --fail-zone (zones: ${listSome(problem.zones)}).`
  }
}

function listSome(names: readonly string[], limit = 8): string {
  return names.length <= limit ? names.join(', ') : `${names.slice(0, limit).join(', ')}, ...`
}

export function wholeNumber(value: number, flag: string, min: number, max: number): void {
  if (Number.isInteger(value) && value >= min && value <= max) return
  throw new MailringError(wholeNumberMessage(value, flag, min, max))
}

function wholeNumberMessage(value: number, flag: string, min: number, max: number): string {
  const range =
    max >= Number.MAX_SAFE_INTEGER ? `at least ${min}` : `from ${groupDigits(min)} to ${groupDigits(max)}`
  return `${flag} must be a whole number ${range} (got ${value}).`
}

function positiveNumber(value: number, flag: string): void {
  if (!Number.isFinite(value) || value <= 0)
    throw new MailringError(`${flag} must be a positive number (got ${value}).`)
}
