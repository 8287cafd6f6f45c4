import {isIP} from 'node:net'

import {canonicalDomain} from './address.js'
import {
  DEFAULT_COPIES,
  PLACEMENT_ALGORITHM_VERSION,
  SERVER_STATES,
  isPlacementTarget,
  type DomainPolicy,
  type Server,
  type ServerState,
  type Topology,
} from './topology.js'

/** Where a problem is: keys and indices from the root of the document, e.g. ['servers', 3, 'weight']. */
export type IssuePath = (string | number)[]

/** Records a problem; count() tells how many so far, so a parser can tell whether its entry added any. */
type Problem = ((path: IssuePath, message: string) => void) & {count: () => number}

export interface ValidationIssue {
  path: IssuePath
  message: string
}

const SERVER_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/
const HOST_NAME =
  /^(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$/
const TOPOLOGY_KEYS = ['algorithm', 'copies', 'servers', 'domains']
const SERVER_KEYS = ['name', 'address', 'zone', 'weight', 'state']
const DOMAIN_KEYS = ['domain', 'servers', 'copies']
/** Copies of one mailbox at most (R). */
export const MAX_COPIES = 16

export function formatPath(path: IssuePath): string {
  return path.reduce<string>(
    (text, part) => (typeof part === 'number' ? `${text}[${part}]` : text ? `${text}.${part}` : part),
    '',
  )
}

/**
 * Turns untrusted data (a parsed YAML document, JSON, rows) into a Topology, or lists every problem with
 * where it is. Nothing is defaulted silently except what the documented format defaults.
 */
export function parseTopology(input: unknown): {topology?: Topology; issues: ValidationIssue[]} {
  const issues: ValidationIssue[] = []
  const problem: Problem = Object.assign(
    (path: IssuePath, message: string) => void issues.push({path, message}),
    {
      count: () => issues.length,
    },
  )
  if (!isRecord(input)) {
    problem([], 'a topology is a mapping with keys copies, servers and domains')
    return {issues}
  }
  const misspelt = unknownKeys(input, TOPOLOGY_KEYS, [], problem)

  let algorithm = PLACEMENT_ALGORITHM_VERSION
  if (input.algorithm !== undefined) {
    if (!Number.isInteger(input.algorithm) || (input.algorithm as number) < 1) {
      problem(['algorithm'], `must be a placement algorithm version (${PLACEMENT_ALGORITHM_VERSION})`)
    } else if ((input.algorithm as number) > PLACEMENT_ALGORITHM_VERSION) {
      problem(
        ['algorithm'],
        `version ${String(input.algorithm)} comes from a newer mailring; this one knows up to ${PLACEMENT_ALGORITHM_VERSION}: upgrade mailring`,
      )
    } else algorithm = input.algorithm as number
  }
  const copies = copiesValue(input.copies, ['copies'], problem) ?? DEFAULT_COPIES

  const servers: Server[] = []
  if (!Array.isArray(input.servers) || input.servers.length === 0) {
    if (!(input.servers === undefined && misspelt.has('servers')))
      problem(['servers'], 'must be a list with at least one server (name, address, zone, weight, state)')
  } else {
    input.servers.forEach((entry, i) => {
      const server = parseServer(entry, ['servers', i], problem)
      if (server) servers.push(server)
    })
  }
  duplicates(
    servers.map((s) => s.name.toLowerCase()),
    (i, first) =>
      problem(['servers', i, 'name'], `duplicate server name "${servers[i]!.name}" (also servers[${first}])`),
  )
  duplicates(
    servers.map((s) => s.address.toLowerCase()),
    (i, first) =>
      problem(
        ['servers', i, 'address'],
        `duplicate address "${servers[i]!.address}" (also servers[${first}])`,
      ),
    (address) => address !== '',
  )

  const domains: DomainPolicy[] = []
  if (input.domains !== undefined && input.domains !== null) {
    if (!Array.isArray(input.domains))
      problem(['domains'], 'must be a list of domain policies (domain, servers, copies)')
    else {
      // Names of entries that failed for another reason still count, so one bad weight or one misspelt
      // key is one error, and not also an error for every pin to those servers.
      const entries = meantValue(input, 'servers', TOPOLOGY_KEYS)
      const names = new Set(
        (Array.isArray(entries) ? (entries as unknown[]) : []).flatMap((entry) => {
          const name = isRecord(entry) ? meantValue(entry, 'name', SERVER_KEYS) : undefined
          return name === undefined ? [] : [String(name)]
        }),
      )
      input.domains.forEach((entry, i) => {
        const policy = parseDomainPolicy(entry, ['domains', i], names, problem)
        if (policy) domains.push(policy)
      })
    }
  }
  duplicates(
    domains.map((d) => d.domain),
    (i, first) =>
      problem(
        ['domains', i, 'domain'],
        `duplicate policy for domain "${domains[i]!.domain}" (also domains[${first}])`,
      ),
  )

  if (issues.length > 0) return {issues}
  const topology: Topology = {algorithm, copies, servers, domains}
  issues.push(...availabilityIssues(topology))
  return issues.length > 0 ? {issues} : {topology, issues}
}

/** Enough non-draining servers for every pool's copy count. */
export function availabilityIssues(topology: Topology): ValidationIssue[] {
  const issues: ValidationIssue[] = []
  const targets = topology.servers.filter(isPlacementTarget)
  if (targets.length < topology.copies) {
    issues.push({
      path: ['copies'],
      message: `${topology.copies} copies need ${topology.copies} servers that are not draining; ${targets.length} available: lower copies or add servers`,
    })
  }
  topology.domains.forEach((policy, i) => {
    const copies = policy.copies ?? topology.copies
    const pool = policy.servers ? targets.filter((s) => policy.servers!.includes(s.name)) : targets
    if (pool.length < copies) {
      issues.push({
        path: ['domains', i, policy.copies === undefined ? 'servers' : 'copies'],
        message: `${policy.domain} needs ${copies} servers that are not draining for ${copies} copies; ${pool.length} available: pin more servers or lower its copies`,
      })
    }
  })
  return issues
}

/** The weights a server may have; every message about a weight says it with weightProblem. */
export const MIN_WEIGHT = 0.000001
export const MAX_WEIGHT = 1_000_000

/** What is wrong with a server name, naming it, or undefined when it is fine. */
export function serverNameProblem(name: unknown): string | undefined {
  if (typeof name === 'string' && SERVER_NAME.test(name)) return undefined
  const what =
    name === undefined ? 'the server name is missing' : `server name ${JSON.stringify(name)} is invalid`
  return `${what}: use letters, digits, ".", "_" or "-" (at most 63, starting with a letter or digit), e.g. mx01`
}

/** What is wrong with a server address ("" is none yet), to follow "address: " or "--address ", or undefined. */
export function serverAddressProblem(address: string): string | undefined {
  if (address === '' || isIP(address) !== 0 || HOST_NAME.test(address)) return undefined
  return `${JSON.stringify(address)} is neither an IP address nor a host name`
}

/** What is wrong with a weight, to follow "weight " or "--weight ", or undefined when it is fine. */
export function weightProblem(weight: unknown, given: string = shown(weight)): string | undefined {
  if (typeof weight === 'number' && Number.isFinite(weight) && weight >= MIN_WEIGHT && weight <= MAX_WEIGHT)
    return undefined
  return `must be a number from ${MIN_WEIGHT.toFixed(6)} to ${MAX_WEIGHT} (got ${given})`
}

function parseServer(input: unknown, path: IssuePath, problem: Problem): Server | undefined {
  const mapping = mappingEntry(
    input,
    SERVER_KEYS,
    path,
    problem,
    'a server is a mapping with name, address, zone, weight and state',
  )
  if (!mapping) return undefined
  const {record: entry, before, misspelt} = mapping
  const name =
    typeof entry.name === 'string'
      ? entry.name
      : typeof entry.name === 'number'
        ? String(entry.name)
        : undefined
  const nameIssue = serverNameProblem(name ?? entry.name)
  if (nameIssue && !(entry.name === undefined && misspelt.has('name'))) problem([...path, 'name'], nameIssue)
  const address = entry.address === undefined || entry.address === null ? '' : String(entry.address)
  const addressIssue = serverAddressProblem(address)
  if (addressIssue) problem([...path, 'address'], addressIssue)
  let zone: string | undefined
  if (entry.zone !== undefined && entry.zone !== null) {
    zone = String(entry.zone)
    if (zone.trim() === '' || zone !== zone.trim())
      problem([...path, 'zone'], 'a zone is a non-empty name without surrounding spaces')
  }
  const weight = entry.weight === undefined ? 1 : entry.weight
  const weightIssue = weightProblem(weight)
  if (weightIssue) problem([...path, 'weight'], `weight ${weightIssue}`)
  const state = entry.state === undefined ? 'active' : entry.state
  if (!SERVER_STATES.includes(state as ServerState)) {
    problem([...path, 'state'], `state must be one of ${SERVER_STATES.join(', ')} (got ${shown(state)})`)
  }
  if (problem.count() > before) return undefined
  return {
    name: name!,
    address,
    ...(zone === undefined ? {} : {zone}),
    weight: weight as number,
    state: state as ServerState,
  }
}

function parseDomainPolicy(
  input: unknown,
  path: IssuePath,
  serverNames: ReadonlySet<string>,
  problem: Problem,
): DomainPolicy | undefined {
  const mapping = mappingEntry(
    input,
    DOMAIN_KEYS,
    path,
    problem,
    'a domain policy is a mapping with domain, and servers and/or copies',
  )
  if (!mapping) return undefined
  const {record: entry, before, misspelt} = mapping
  const domain =
    typeof entry.domain === 'string'
      ? canonicalDomain(entry.domain)
      : {reason: 'a domain policy needs a domain, e.g. example.com'}
  if (typeof domain !== 'string' && !(entry.domain === undefined && misspelt.has('domain')))
    problem([...path, 'domain'], domain.reason)
  let servers: string[] | undefined
  if (entry.servers !== undefined) {
    if (!Array.isArray(entry.servers) || entry.servers.length === 0) {
      problem([...path, 'servers'], 'servers must be a non-empty list of server names')
    } else {
      servers = entry.servers.map(String)
      servers.forEach((name, k) => {
        if (!serverNames.has(name))
          problem([...path, 'servers', k], `unknown server "${name}": pin only servers listed under servers`)
      })
      duplicates(servers, (k) => problem([...path, 'servers', k], `server "${servers![k]}" is listed twice`))
    }
  }
  const copies = copiesValue(entry.copies, [...path, 'copies'], problem)
  if (servers === undefined && copies === undefined && !misspelt.has('servers') && !misspelt.has('copies'))
    problem(path, 'a domain policy sets servers, copies or both')
  if (problem.count() > before) return undefined
  return {
    domain: domain as string,
    ...(servers ? {servers: [...servers].sort()} : {}),
    ...(copies === undefined ? {} : {copies}),
  }
}

function copiesValue(value: unknown, path: IssuePath, problem: Problem): number | undefined {
  if (value === undefined) return undefined
  if (!Number.isInteger(value) || (value as number) < 1 || (value as number) > MAX_COPIES) {
    problem(path, `copies must be a whole number from 1 to ${MAX_COPIES} (got ${shown(value)})`)
    return undefined
  }
  return value as number
}

/**
 * An entry of a list that must be a mapping: its keys checked against the known ones (misspelt keys
 * reported), and the problem count before it, so that the caller can tell whether the entry added any.
 * Not a mapping: `what` is reported and undefined returned.
 */
function mappingEntry(
  entry: unknown,
  known: readonly string[],
  path: IssuePath,
  problem: Problem,
  what: string,
): {record: Record<string, unknown>; before: number; misspelt: ReadonlySet<string>} | undefined {
  if (!isRecord(entry)) {
    problem(path, what)
    return undefined
  }
  const before = problem.count()
  return {record: entry, before, misspelt: unknownKeys(entry, known, path, problem)}
}

/**
 * Reports every key of `record` that is not `known`, and returns the known keys that those look like
 * misspellings of: a missing key that was only misspelt is then not reported a second time.
 */
function unknownKeys(
  record: Record<string, unknown>,
  known: readonly string[],
  path: IssuePath,
  problem: Problem,
): Set<string> {
  const meant = new Set<string>()
  for (const key of Object.keys(record)) {
    if (known.includes(key)) continue
    const likely = known.find((candidate) => looksLike(key, candidate))
    if (likely !== undefined) meant.add(likely)
    problem(
      [...path, key],
      `unknown key "${key}"${likely === undefined ? '' : `: did you mean "${likely}"?`} (expected one of ${known.join(', ')})`,
    )
  }
  return meant
}

/** The value of `key`, or else of an unknown key that misspells it: what later checks still go by. */
function meantValue(record: Record<string, unknown>, key: string, known: readonly string[]): unknown {
  if (record[key] !== undefined) return record[key]
  const slip = Object.keys(record).find((other) => !known.includes(other) && looksLike(other, key))
  return slip === undefined ? undefined : record[slip]
}

/** Whether `key` is `candidate` with a slip: other case, or at most two letters added, lost, changed or swapped. */
function looksLike(key: string, candidate: string): boolean {
  const a = key.toLowerCase()
  const b = candidate.toLowerCase()
  if (Math.abs(a.length - b.length) > 2) return false
  // Optimal string alignment distance: edits, with a swap of two neighbours counting as one.
  const d = Array.from({length: a.length + 1}, (_, i) =>
    Array.from({length: b.length + 1}, (_, j) => (i === 0 ? j : j === 0 ? i : 0)),
  )
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1
      d[i]![j] = Math.min(d[i - 1]![j]! + 1, d[i]![j - 1]! + 1, d[i - 1]![j - 1]! + cost)
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1])
        d[i]![j] = Math.min(d[i]![j]!, d[i - 2]![j - 2]! + 1)
    }
  }
  return d[a.length]![b.length]! <= Math.min(2, b.length - 2)
}

/** A value as a message shows it after "got": JSON, but NaN and the infinities by name (JSON says null). */
function shown(value: unknown): string {
  return typeof value === 'number' && !Number.isFinite(value) ? String(value) : String(JSON.stringify(value))
}

function duplicates(
  values: string[],
  report: (index: number, first: number) => void,
  counts: (value: string) => boolean = () => true,
): void {
  const seen = new Map<string, number>()
  values.forEach((value, i) => {
    if (!counts(value)) return
    const first = seen.get(value)
    if (first === undefined) seen.set(value, i)
    else report(i, first)
  })
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value)
}
