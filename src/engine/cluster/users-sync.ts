import {AddressChecker} from '../../core/address-checker.js'
import {Placement} from '../../core/placement.js'
import type {ClusterLock, Store, UserBatch, UsersTable} from '../../store/store.js'
import {placedBatch} from './cluster.js'
import {checkAlgorithm, placementTopology} from './topology-check.js'

const BATCH_SIZE = 10_000
/** Invalid rows kept for the report. */
const PROBLEMS_KEPT = 1000

export interface TableProblem {
  /** The value as the operator's table holds it. */
  value: string
  reason: string
}

export interface UsersSyncResult {
  table: string
  dryRun: boolean
  /** Distinct valid users in the operator's table. */
  tableUsers: number
  added: number
  retired: number
  /** Users placed now (they appeared in the table), sorted. */
  addedUsers: string[]
  /** Users removed from mailring's tables (they disappeared from the table), sorted. */
  retiredUsers: string[]
  /** Rows whose address is not valid: skipped, and reported (the first 1000). */
  invalid: TableProblem[]
  invalidCount: number
  /** Rows that name a user another row named already (after canonicalisation). */
  duplicates: number
}

export interface SyncOptions {
  dryRun: boolean
  /** The cluster lock held for this sync: checked between steps. */
  lock?: ClusterLock
  onProgress?: (rows: number) => void
}

/**
 * `mailring users sync`: places the users the provisioning system added to the operator's users table
 * and retires (removes from mailring's tables) those it removed, in one transaction. The operator's table
 * is only read. A new user has no mail yet, so it is placed at once on its target servers.
 */
export async function syncUsers(
  store: Store,
  table: UsersTable,
  options: SyncOptions,
): Promise<UsersSyncResult> {
  const checker = new AddressChecker()
  const wanted = new Set<string>()
  const invalid: TableProblem[] = []
  let invalidCount = 0
  let duplicates = 0
  let rows = 0
  // Canonical addresses of rows written otherwise (case, spaces, Unicode domain).
  const respelled = new Set<string>()
  const take = (value: string): void => {
    rows++
    const check = value.trim() === '' ? {ok: false as const, reason: 'empty address'} : checker.check(value)
    if (!check.ok) {
      invalidCount++
      if (invalid.length < PROBLEMS_KEPT) invalid.push({value, reason: check.reason})
      return
    }
    if (check.user !== value) respelled.add(check.user)
    if (wanted.has(check.user)) duplicates++
    else wanted.add(check.user)
  }
  const retired: string[] = []
  let tableUsers: number
  const differences = await table.differences?.()
  if (differences) {
    // The database did the heavy part through indexes: only the rows that differ come here.
    const unlisted: string[] = []
    const readUnlisted = async (): Promise<void> => {
      for await (const users of differences.unlisted) unlisted.push(...users)
    }
    const readUnmatched = async (): Promise<void> => {
      for await (const users of differences.unmatched) for (const value of users) take(value)
    }
    const [known] = await Promise.all([store.countUsers(), readUnmatched(), readUnlisted()])
    // A mailring user named only in another spelling (case, Unicode domain) is still listed.
    for (const user of unlisted) if (!wanted.has(user)) retired.push(user)
    // An unmatched row written canonically is new for sure; one written otherwise may be a known user.
    const listedKnown = await knownAmong(store, [...respelled])
    for (const user of listedKnown) wanted.delete(user)
    tableUsers = known - retired.length + wanted.size
  } else {
    // mailring's users, read at the same time as the operator's table.
    const known: string[][] = []
    const readTable = async (): Promise<void> => {
      for await (const chunk of table.rows()) {
        for (const value of chunk.users) take(value)
        options.onProgress?.(rows)
      }
    }
    const readKnown = async (): Promise<void> => {
      for await (const users of store.scanUsers()) known.push(users)
    }
    await Promise.all([readTable(), readKnown()])
    tableUsers = wanted.size
    for (const users of known) for (const user of users) if (!wanted.delete(user)) retired.push(user)
  }
  options.lock?.assertHeld()

  const added = [...wanted].sort()
  wanted.clear()
  retired.sort()

  const batches: UserBatch[] = []
  if (added.length > 0) {
    const topology = await placementTopology(store)
    checkAlgorithm(await store.meta(), topology)
    const placement = new Placement(topology)
    for (let from = 0; from < added.length; from += BATCH_SIZE)
      batches.push(placedBatch(placement, added.slice(from, from + BATCH_SIZE)))
  }
  options.lock?.assertHeld()
  if (!options.dryRun && (added.length > 0 || retired.length > 0)) await store.replaceUsers(batches, retired)
  return {
    table: table.name,
    dryRun: options.dryRun,
    tableUsers,
    added: added.length,
    retired: retired.length,
    addedUsers: added,
    retiredUsers: retired,
    invalid,
    invalidCount,
    duplicates,
  }
}

/** The users of `candidates` that the store holds. */
async function knownAmong(store: Store, candidates: string[]): Promise<string[]> {
  const known: string[] = []
  for (const user of candidates) if (await store.getUser(user)) known.push(user)
  return known
}
