import {createInterface} from 'node:readline'
import type {Readable} from 'node:stream'

import {domainOf} from '../../core/address.js'
import {AddressChecker} from '../../core/address-checker.js'
import {MailringError} from '../../core/errors.js'
import {Placement} from '../../core/placement.js'
import type {Store, UserBatch} from '../../store/store.js'
import {inputRefused, PROBLEMS_KEPT} from './input-problems.js'
import {checkAlgorithm, placementTopology} from './topology-check.js'

/** Users per store batch: large enough for fast inserts, small enough to stay compact. */
const BATCH_SIZE = 10_000

export interface ImportProblem {
  line: number
  kind: 'invalid' | 'duplicate' | 'exists'
  message: string
}

export interface ImportResult {
  source: string
  imported: number
  skipped: {invalid: number; duplicate: number; exists: number}
  /** The first problems, by line (at most 1000). */
  problems: ImportProblem[]
}

export interface ImportOptions {
  /** Name of the input in messages: a file name or "stdin". */
  source: string
  skipInvalid: boolean
  /** Called now and then with the count of lines read so far. */
  onProgress?: (lines: number) => void
}

interface LineBatch extends UserBatch {
  lines: Int32Array
}

/**
 * Imports users from `input`: one address per line, or CSV with a header naming an address column
 * (address, email, user or mail). Read as a stream; every line is validated, placed on its target servers
 * (current = target: a new user has no mail yet) and written in one transaction at the end. Invalid lines,
 * duplicates and users that exist already make the whole import fail, unless `skipInvalid`.
 * The caller holds the cluster lock: the topology must not change while users are placed.
 */
export async function importUsers(
  store: Store,
  input: Readable,
  options: ImportOptions,
): Promise<ImportResult> {
  const topology = await placementTopology(store)
  checkAlgorithm(await store.meta(), topology)
  const placement = new Placement(topology)
  const serverNames = placement.servers.map((s) => s.name)

  const problems: ImportProblem[] = []
  const counts = {invalid: 0, duplicate: 0, exists: 0}
  const problem = (entry: ImportProblem): void => {
    counts[entry.kind]++
    if (problems.length < PROBLEMS_KEPT) problems.push(entry)
  }
  const addresses = new AddressChecker()
  const batches: LineBatch[] = []
  let batch = newBatch(serverNames)
  let copyCount = 0
  const copyScratch = new Int32Array(BATCH_SIZE * 4)
  let copyServers = copyScratch
  const out = new Int32Array(64)

  const finishBatch = (): void => {
    if (batch.users.length === 0) return
    batch.copyStart[batch.users.length] = copyCount
    batch.copyServers = copyServers.slice(0, copyCount)
    batch.copyStart = batch.copyStart.slice(0, batch.users.length + 1)
    batch.lines = batch.lines.slice(0, batch.users.length)
    batches.push(batch)
    batch = newBatch(serverNames)
    copyCount = 0
  }

  let lineNumber = 0
  let column: number | undefined
  const lines = createInterface({input, crlfDelay: Infinity})
  for await (const rawLine of lines) {
    lineNumber++
    if (lineNumber % 50_000 === 0) options.onProgress?.(lineNumber)
    const line = rawLine.trim()
    if (line === '' || line.startsWith('#')) continue
    if (column === undefined) {
      column = headerColumn(line, lineNumber, options.source)
      if (column >= 0) continue
    }
    const field = column > 0 || line.includes(',') ? csvField(line, Math.max(column, 0)) : line
    const check = addresses.check(field)
    if (!check.ok) {
      problem({line: lineNumber, kind: 'invalid', message: check.reason})
      continue
    }
    const user = check.user

    const index = batch.users.length
    batch.users.push(user)
    batch.domains.push(domainOf(user))
    batch.lines[index] = lineNumber
    batch.copyStart[index] = copyCount
    const count = placement.placeInto(user, out)
    if (copyCount + count > copyServers.length) {
      const bigger = new Int32Array(copyServers.length * 2)
      bigger.set(copyServers)
      copyServers = bigger
    }
    for (let k = 0; k < count; k++) copyServers[copyCount++] = out[k]!
    if (batch.users.length === BATCH_SIZE) finishBatch()
  }
  finishBatch()
  options.onProgress?.(lineNumber)

  if (!options.skipInvalid && problems.length > 0) {
    // Failing anyway: list the duplicate lines too, so that one round of fixes is enough.
    for (const entry of repeatedUsers(batches)) problem(entry)
    throw importError(options.source, problems, counts)
  }

  // The store finds users given twice and users that exist already (its unique index checks them anyway).
  const result = await store.insertUsers(batches, {skipExisting: options.skipInvalid})
  const lineOf = ([b, i]: [number, number]): number => batches[b]!.lines[i]!
  for (const repeat of result.repeated) {
    const user = batches[repeat.at[0]]!.users[repeat.at[1]]
    problem({
      line: lineOf(repeat.at),
      kind: 'duplicate',
      message: `${user} is a duplicate of line ${lineOf(repeat.first)}`,
    })
  }
  for (const at of result.existing) {
    problem({line: lineOf(at), kind: 'exists', message: `${batches[at[0]]!.users[at[1]]} exists already`})
  }
  if (!options.skipInvalid && result.existing.length + result.repeated.length > 0) {
    throw importError(options.source, problems, counts)
  }
  problems.sort((a, b) => a.line - b.line)
  return {source: options.source, imported: result.inserted, skipped: counts, problems}
}

function repeatedUsers(batches: readonly LineBatch[]): ImportProblem[] {
  const firstLine = new Map<string, number>()
  const repeated: ImportProblem[] = []
  for (const batch of batches) {
    batch.users.forEach((user, i) => {
      const line = batch.lines[i]!
      const first = firstLine.get(user)
      if (first === undefined) firstLine.set(user, line)
      else repeated.push({line, kind: 'duplicate', message: `${user} is a duplicate of line ${first}`})
    })
  }
  return repeated
}

function newBatch(servers: readonly string[]): LineBatch {
  return {
    users: [],
    domains: [],
    copyStart: new Int32Array(BATCH_SIZE + 1),
    copyServers: new Int32Array(0),
    servers,
    lines: new Int32Array(BATCH_SIZE),
  }
}

const ADDRESS_COLUMNS = ['address', 'email', 'e-mail', 'user', 'mail', 'username']

/**
 * The address column when `line` is a CSV header; -1 when it is an address line (no header). A line
 * without "@" is taken for a header, so it must name the address column.
 */
function headerColumn(line: string, lineNumber: number, source: string): number {
  if (line.includes('@')) return -1
  const names = line.split(',').map((name) => unquote(name).toLowerCase())
  const index = names.findIndex((name) => ADDRESS_COLUMNS.includes(name))
  if (index < 0) {
    throw new MailringError(
      `${source}:${lineNumber}: "${line}" is neither an address nor a CSV header with an address column (${ADDRESS_COLUMNS.join(', ')}); nothing imported.`,
      {code: 'invalid_input'},
    )
  }
  return index
}

function csvField(line: string, column: number): string {
  return unquote(line.split(',')[column] ?? '')
}

function unquote(field: string): string {
  const trimmed = field.trim()
  return trimmed.length >= 2 && trimmed.startsWith('"') && trimmed.endsWith('"')
    ? trimmed.slice(1, -1).trim()
    : trimmed
}

function importError(
  source: string,
  problems: ImportProblem[],
  counts: {invalid: number; duplicate: number; exists: number},
): MailringError {
  const sorted = [...problems].sort((a, b) => a.line - b.line)
  const total = counts.invalid + counts.duplicate + counts.exists
  const parts = [
    counts.invalid ? `${counts.invalid} invalid` : '',
    counts.duplicate ? `${counts.duplicate} duplicate` : '',
    counts.exists ? `${counts.exists} existing` : '',
  ].filter(Boolean)
  return inputRefused(
    sorted.map((p) => ({where: `${source}:${p.line}`, message: p.message})),
    total,
    `${parts.join(', ')} line${total === 1 ? '' : 's'} in ${source}`,
    {written: 'imported', write: 'import', code: 'invalid_users'},
  )
}
