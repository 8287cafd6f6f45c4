import {MailringError} from '../core/errors.js'
import type {ServerRow} from './topology-rows.js'
import type {InsertUsersResult, PlacementChunk, ReplaceUsersResult, UserBatch} from './store.js'

/*
 * Users and their copies as rows of mailring_users and mailring_copies: what insertUsers, replaceUsers and
 * scanPlacements compute alike in every store. The stores keep how rows get written (one statement per
 * row, or bulk INSERTs), the SQL and the transaction around it.
 */

/** Thrown inside a transaction to roll it back without an error reaching the caller. */
export class Rollback extends Error {}

/** The server ids of a batch's server indices; refuses (writes nothing) a copy on an unknown server. */
export function batchServerIds(batch: UserBatch, serverIds: ReadonlyMap<string, number>): number[] {
  return batch.servers.map((name) => {
    const id = serverIds.get(name)
    if (id === undefined) throw new MailringError(`Unknown server ${name}.`, {code: 'unknown_server'})
    return id
  })
}

/** Calls `row` with each copy of user `i` of the batch as its mailring_copies (position, server_id). */
export function forEachCopy(
  batch: UserBatch,
  i: number,
  ids: readonly number[],
  row: (position: number, serverId: number) => void,
): void {
  const start = batch.copyStart[i]!
  const end = batch.copyStart[i + 1]!
  for (let k = start; k < end; k++) row(k - start, ids[batch.copyServers[k]!]!)
}

/**
 * Tells, for insertUsers, the users it adds from those that existed before the call and those given
 * again in it, by user id: the transaction first notes the highest id (`begin`), so a user row whose id
 * lies above it was added by this call.
 */
export class InsertTally {
  readonly result: InsertUsersResult = {inserted: 0, existing: [], repeated: []}
  private firstNewId = 1
  /** Where each new user came from (batch, index), by id - firstNewId: two ints per user, no objects. */
  private addedAt = new Int32Array(1 << 16).fill(-1)

  constructor(private readonly skipExisting: boolean) {}

  /** At the start of the transaction, with the highest user id then (0 for none). */
  begin(topId: number): void {
    this.firstNewId = topId + 1
  }

  /** Notes the user at [batch, index] whose row has `id`; true when this is the entry that added it. */
  add(id: number, batch: number, index: number): boolean {
    if (id < this.firstNewId) {
      this.result.existing.push([batch, index])
      return false
    }
    const slot = (id - this.firstNewId) * 2
    if (slot + 1 >= this.addedAt.length) {
      const bigger = new Int32Array(Math.max(this.addedAt.length * 2, slot + 2))
      bigger.fill(-1, this.addedAt.length)
      bigger.set(this.addedAt)
      this.addedAt = bigger
    }
    if (this.addedAt[slot]! >= 0) {
      this.result.repeated.push({at: [batch, index], first: [this.addedAt[slot]!, this.addedAt[slot + 1]!]})
      return false
    }
    this.addedAt[slot] = batch
    this.addedAt[slot + 1] = index
    this.result.inserted++
    return true
  }

  /** At the end of the transaction: without skipExisting, an existing or repeated user rolls it all back. */
  end(): void {
    if (!this.skipExisting && this.result.existing.length + this.result.repeated.length > 0)
      throw new Rollback()
  }
}

/** Runs insertUsers' transaction `write` and returns its result; a Rollback means nothing was inserted. */
export async function tallyInserts(
  options: {skipExisting: boolean},
  write: (tally: InsertTally) => void | Promise<void>,
): Promise<InsertUsersResult> {
  const tally = new InsertTally(options.skipExisting)
  try {
    await write(tally)
  } catch (error) {
    if (!(error instanceof Rollback)) throw error
    tally.result.inserted = 0
  }
  return tally.result
}

/** Counts, for replaceUsers, each user once however often it comes: created or replaced. */
export class ReplaceTally {
  readonly result: ReplaceUsersResult = {created: 0, replaced: 0, removed: 0}
  private readonly seen = new Set<number>()

  /** Notes user `id`, whose row this call created (`created`) or found. */
  user(id: number, created: boolean): void {
    if (this.seen.has(id)) return
    this.seen.add(id)
    if (created) this.result.created++
    else this.result.replaced++
  }
}

/**
 * One number per copy, as both stores select it: user id, position and server id packed (server ids stay
 * far below 2^12), so that a chunk of copies is a list of numbers, not of rows.
 */
export const PACKED_COPY = 'user_id * 65536 + position * 4096 + server_id'

/** Index into `servers` by server id (-1 for an id that is no server's). */
export function serverIndexById(servers: readonly ServerRow[]): Int32Array {
  const indexOfId = new Int32Array(Math.max(0, ...servers.map((row) => row.id)) + 1).fill(-1)
  servers.forEach((row, i) => (indexOfId[row.id] = i))
  return indexOfId
}

/**
 * A chunk of placements from users (`ids` ascending, with their `users` addresses) and the PACKED_COPY
 * numbers of their copies ordered by user id and position.
 */
export function placementChunk(
  ids: ArrayLike<number>,
  users: string[],
  packedCopies: ArrayLike<number>,
  indexOfId: Int32Array,
): PlacementChunk {
  const copyStart = new Int32Array(ids.length + 1)
  const copyServers = new Int32Array(packedCopies.length)
  let k = 0
  for (let i = 0; i < ids.length; i++) {
    const id = ids[i]!
    copyStart[i] = k
    while (k < packedCopies.length && Math.floor(packedCopies[k]! / 65536) === id) {
      copyServers[k] = indexOfId[packedCopies[k]! % 4096]!
      k++
    }
  }
  copyStart[ids.length] = k
  return {users, copyStart, copyServers}
}
