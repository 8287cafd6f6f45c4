import {createReadStream} from 'node:fs'
import {createInterface} from 'node:readline'

import {domainOf} from '../../core/address.js'
import {AddressChecker} from '../../core/address-checker.js'
import {MailringError} from '../../core/errors.js'
import type {Topology} from '../../core/topology.js'
import type {ClusterLock, Store, UserBatch, UsersTable} from '../../store/store.js'
import {inputRefused, PROBLEMS_KEPT, type InputProblem} from './input-problems.js'
import {checkAlgorithm} from './topology-check.js'

const BATCH_SIZE = 10_000

/** One user as a source records it: the address and the servers (names or addresses) holding copies. */
export interface AdoptRow {
  user: string
  servers: string[]
  /** Where it came from, for messages: "FILE:LINE" or "table users". */
  where: string
  /** Its line in a file, for "a duplicate of line N". */
  line?: number
}

export interface AdoptSource {
  /** For messages and the result: "columns hostA, hostB of users", a file name. */
  name: string
  /** What one row is called in messages: "line" of a file, "row" of a table. */
  rowName: string
  rows(): AsyncIterable<AdoptRow[]>
}

export type AdoptProblemKind = 'invalid' | 'unknown-server' | 'no-server' | 'duplicate'

export interface AdoptProblem extends InputProblem {
  kind: AdoptProblemKind
}

export interface AdoptedUser {
  user: string
  copies: string[]
  /** Not in the store before: adopt creates it. */
  new: boolean
}

export interface AdoptResult {
  source: string
  dryRun: boolean
  /** Users whose copies are (or would be) recorded. */
  recorded: number
  /** Of those: users mailring did not know (created) and users whose copies were replaced. */
  created: number
  replaced: number
  /** What is (or would be) recorded, user by user, sorted. */
  users: AdoptedUser[]
  /** Rows skipped with --skip-invalid (without it, any of them records nothing), by kind. */
  skipped: Record<AdoptProblemKind, number>
  /** The first 1000 of those, in the source's order. */
  problems: AdoptProblem[]
}

export interface AdoptOptions {
  dryRun: boolean
  /** Skip and report rows that cannot be recorded; without it, any such row records nothing. */
  skipInvalid: boolean
  /** Pair layout: each server of a pair holds every user of the other. */
  pairs?: readonly [string, string][]
  lock?: ClusterLock
}

/** What separates the fields of an --from-csv line. */
export const CSV_SEPARATORS = /[,;\t]/
const SEPARATORS_TEXT = 'separate the user and its servers with ",", ";" or a tab'

/** Maps a server name or address (any case) to the server's name. */
export function serverResolver(topology: Topology): (value: string) => string | undefined {
  const byKey = new Map<string, string>()
  for (const server of topology.servers)
    if (server.address !== '') byKey.set(server.address.toLowerCase(), server.name)
  // Names win over addresses when both match.
  for (const server of topology.servers) byKey.set(server.name.toLowerCase(), server.name)
  return (value) => byKey.get(value.trim().toLowerCase())
}

/** Parses `A:B,C:D` into pairs of server names, each server in at most one pair. */
export function parsePairs(text: string, topology: Topology): [string, string][] {
  const resolve = serverResolver(topology)
  const seen = new Set<string>()
  return text
    .split(',')
    .map((part) => part.trim())
    .filter((part) => part !== '')
    .map((part) => {
      const sides = part.split(':')
      if (sides.length !== 2)
        throw new MailringError(
          `--pairs: "${part}" is not a pair: write SERVER:SERVER, e.g. mx01:mx02,mx03:mx04.`,
        )
      const names = sides.map((side) => {
        const name = resolve(side)
        if (name === undefined)
          throw new MailringError(`--pairs: unknown server "${side.trim()}" in "${part}".`, {
            code: 'unknown_server',
          })
        return name
      }) as [string, string]
      if (names[0] === names[1]) throw new MailringError(`--pairs: "${part}" pairs a server with itself.`)
      for (const name of names) {
        if (seen.has(name)) throw new MailringError(`--pairs: server ${name} is in more than one pair.`)
        seen.add(name)
      }
      return names
    })
}

/**
 * `mailring adopt`: records where users' copies are today (current placement), so that the first
 * rebalance moves only what has to move. Users mailring does not know are created with those copies
 * (adopting a running deployment fills an empty store); known users get their copies replaced. A row with
 * an invalid address, an unknown server, no server or a user given before records nothing at all, unless
 * `skipInvalid`: then such rows are skipped and reported. One transaction; the caller holds the cluster
 * lock (unless dry run).
 */
export async function adoptPlacements(
  store: Store,
  source: AdoptSource,
  options: AdoptOptions,
): Promise<AdoptResult> {
  const topology = await store.readTopology()
  checkAlgorithm(await store.meta(), topology)
  if (topology.servers.length === 0) {
    throw new MailringError(
      'The cluster has no servers yet: add them first (mailring node add, or mailring topology apply -f FILE).',
      {code: 'no_servers'},
    )
  }
  const resolve = serverResolver(topology)
  const partner = new Map<string, string>()
  for (const [a, b] of options.pairs ?? []) {
    partner.set(a, b)
    partner.set(b, a)
  }
  const checker = new AddressChecker()
  const recorded = new Map<string, string[]>()
  /** Every valid address given, with its line: a second row for one user is ambiguous. */
  const given = new Map<string, number | undefined>()
  const problems: AdoptProblem[] = []
  const skipped: Record<AdoptProblemKind, number> = {
    invalid: 0,
    'unknown-server': 0,
    'no-server': 0,
    duplicate: 0,
  }
  const problem = (row: AdoptRow, kind: AdoptProblemKind, message: string): void => {
    skipped[kind]++
    if (problems.length < PROBLEMS_KEPT) problems.push({where: row.where, kind, message})
  }
  for await (const rows of source.rows()) {
    for (const row of rows) {
      const check = row.user.trim() === '' ? undefined : checker.check(row.user)
      if (!check?.ok) {
        const reason = check?.reason ?? 'no address before the servers'
        problem(row, 'invalid', /\s/.test(row.user.trim()) ? `${reason}: ${SEPARATORS_TEXT}` : reason)
        continue
      }
      const user = check.user
      if (given.has(user)) {
        const first = given.get(user)
        problem(
          row,
          'duplicate',
          `${user} is a duplicate of ${first === undefined ? `an earlier ${source.rowName}` : `line ${first}`}`,
        )
        continue
      }
      given.set(user, row.line)
      const copies: string[] = []
      const unknown: string[] = []
      for (const value of row.servers) {
        if (value.trim() === '') continue
        const name = resolve(value)
        if (name === undefined) unknown.push(value.trim())
        else if (!copies.includes(name)) copies.push(name)
      }
      if (unknown.length > 0) {
        const joined = unknown.find((value) => /[\s|]/.test(value))
        problem(
          row,
          'unknown-server',
          joined === undefined
            ? `${user}: unknown server${unknown.length === 1 ? '' : 's'} ${unknown.map((v) => `"${v}"`).join(', ')} (mailring node list shows the servers)`
            : `${user}: "${joined}" is not one server: ${SEPARATORS_TEXT}`,
        )
        continue
      }
      for (const name of [...copies]) {
        const other = partner.get(name)
        if (other !== undefined && !copies.includes(other)) copies.push(other)
      }
      if (copies.length === 0) {
        problem(row, 'no-server', `${user} names no server`)
        continue
      }
      recorded.set(user, copies)
    }
  }
  const total = Object.values(skipped).reduce((sum, n) => sum + n, 0)
  if (total > 0 && !options.skipInvalid) throw adoptRefused(source, problems, skipped, total)
  options.lock?.assertHeld()

  // Which users are new to mailring, told before anything is written (a misspelt address shows as new).
  const known = new Set<string>()
  for await (const chunk of store.scanUsers())
    for (const user of chunk) if (recorded.has(user)) known.add(user)
  const users = [...recorded.keys()].sort()
  let created = users.length - known.size
  let replaced = known.size
  if (!options.dryRun && users.length > 0) {
    const serverNames = topology.servers.map((s) => s.name)
    const indexOf = new Map(serverNames.map((name, i) => [name, i]))
    const batches: UserBatch[] = []
    for (let from = 0; from < users.length; from += BATCH_SIZE) {
      const part = users.slice(from, from + BATCH_SIZE)
      const copyStart = new Int32Array(part.length + 1)
      const copyServers: number[] = []
      part.forEach((user, i) => {
        copyStart[i] = copyServers.length
        for (const name of recorded.get(user)!) copyServers.push(indexOf.get(name)!)
      })
      copyStart[part.length] = copyServers.length
      batches.push({
        users: part,
        domains: part.map(domainOf),
        copyStart,
        copyServers: Int32Array.from(copyServers),
        servers: serverNames,
      })
    }
    const result = await store.replaceUsers(batches, [])
    created = result.created
    replaced = result.replaced
  }
  return {
    source: source.name,
    dryRun: options.dryRun,
    recorded: users.length,
    created,
    replaced,
    users: users.map((user) => ({user, copies: recorded.get(user)!, new: !known.has(user)})),
    skipped,
    problems,
  }
}

function adoptRefused(
  source: AdoptSource,
  problems: readonly AdoptProblem[],
  skipped: Record<AdoptProblemKind, number>,
  total: number,
): MailringError {
  const parts = [
    skipped.invalid ? `${skipped.invalid} invalid address${skipped.invalid === 1 ? '' : 'es'}` : '',
    skipped['unknown-server'] ? `${skipped['unknown-server']} naming an unknown server` : '',
    skipped['no-server'] ? `${skipped['no-server']} naming no server` : '',
    skipped.duplicate ? `${skipped.duplicate} duplicate${skipped.duplicate === 1 ? '' : 's'}` : '',
  ].filter(Boolean)
  return inputRefused(
    problems,
    total,
    `${total} ${source.rowName}s of ${source.name} cannot be recorded (${parts.join(', ')})`,
    {written: 'recorded', write: 'record', code: 'invalid_placements'},
  )
}

/** Copies recorded in columns of the operator's users table, each holding one server's name or address. */
export function columnsSource(table: UsersTable, columns: readonly string[]): AdoptSource {
  return {
    name: `columns ${columns.join(', ')} of ${table.name}`,
    rowName: 'row',
    async *rows() {
      for await (const chunk of table.rows(columns)) {
        yield chunk.users.map((user, i) => ({
          user,
          servers: chunk.columns.map((values) => values[i]!),
          where: `${table.name}`,
        }))
      }
    },
  }
}

/**
 * Copies recorded in a CSV file: user,server,server,... with ",", ";" or a tab between the fields (a
 * header line without "@" is skipped).
 */
export function csvSource(path: string): AdoptSource {
  return {
    name: path,
    rowName: 'line',
    async *rows() {
      let input
      try {
        input = createReadStream(path, {encoding: 'utf8'})
        await new Promise<void>((resolvePromise, reject) => {
          input!.once('readable', () => resolvePromise())
          input!.once('error', reject)
        })
      } catch (error) {
        const reason =
          (error as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file' : (error as Error).message
        throw new MailringError(`Cannot read ${path}: ${reason}.`)
      }
      let lineNumber = 0
      let first = true
      let rows: AdoptRow[] = []
      for await (const raw of createInterface({input, crlfDelay: Infinity})) {
        lineNumber++
        const line = raw.trim()
        if (line === '' || line.startsWith('#')) continue
        const fields = line.split(CSV_SEPARATORS).map((field) =>
          field
            .trim()
            .replace(/^"(.*)"$/, '$1')
            .trim(),
        )
        // Only the first non-comment line may be a header, e.g. "user,server,server".
        const header = first && !fields[0]!.includes('@') && isHeader(fields[0]!)
        first = false
        if (header) continue
        rows.push({
          user: fields[0]!,
          servers: fields.slice(1),
          where: `${path}:${lineNumber}`,
          line: lineNumber,
        })
        if (rows.length >= BATCH_SIZE) {
          yield rows
          rows = []
        }
      }
      if (rows.length > 0) yield rows
    },
  }
}

function isHeader(field: string): boolean {
  return /^(user|address|email|e-mail|mail|username)$/i.test(field)
}
