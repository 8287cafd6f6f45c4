import {createHash, type Hash} from 'node:crypto'

import {compareNames, type Placement} from './placement.js'
import type {Topology} from './topology.js'

/**
 * The rebalance plan: what it takes to bring the current placement (where copies are) to the target (where
 * the ring puts them). Pure: users arrive in chunks from whatever store holds them, and everything per
 * user lives in typed arrays with servers as small integers, so a million users fit in little memory.
 */

/** The current placement of a run of users (see Store.scanPlacements). */
export interface CurrentChunk {
  users: readonly string[]
  /** copies of users[i] are copyServers[copyStart[i] .. copyStart[i + 1]), primary first. */
  copyStart: Int32Array
  /** Indices into the server list given to the PlanBuilder as `currentServers`. */
  copyServers: Int32Array
}

/** One copy to move: `from` null is a new copy (more copies), `to` null a copy dropped (fewer copies). */
export interface PlanMove {
  user: string
  from: string | null
  to: string | null
}

export interface ServerBalance {
  server: string
  /** Copies now, and after the plan. */
  before: number
  after: number
  primariesBefore: number
  primariesAfter: number
  /** Copies the plan brings here and takes away. */
  movesIn: number
  movesOut: number
}

export interface ServerShare extends ServerBalance {
  /** The server's share of all copies now, and after the plan. */
  shareBefore: number
  shareAfter: number
}

export interface PlanSummary {
  users: number
  copiesBefore: number
  copiesAfter: number
  /** Copies to transfer: every move with a destination. */
  moves: number
  /** Copies deleted without a replacement (a lower copy count). */
  drops: number
  /** The least any plan can move to reach the target: per user, target servers not holding a copy now. */
  minimumMoves: number
  /**
   * The least any placement with the same copies per server after could move: the sum of the growth of
   * every server. Rendezvous hashing stays close to it; a large gap means a topology change moved much.
   */
  capacityLowerBound: number
  usersAffected: number
}

export interface RebalancePlan {
  /** Every server, current or target, sorted by name. */
  servers: readonly string[]
  balance: ServerBalance[]
  summary: PlanSummary
  moves: MoveList
  /** sha256 of the inputs: both topologies, the current placement, the algorithm version. */
  fingerprint: string
}

/** Growable typed-array storage for moves: three ints per move instead of an object. */
export class MoveList {
  private users: string[] = []
  private userOf = new Int32Array(1024)
  private fromOf = new Int32Array(1024)
  private toOf = new Int32Array(1024)
  private size = 0

  constructor(private readonly servers: readonly string[]) {}

  get length(): number {
    return this.size
  }

  /** Registers a user that has moves; returns its reference for add(). */
  addUser(user: string): number {
    this.users.push(user)
    return this.users.length - 1
  }

  add(userRef: number, from: number, to: number): void {
    if (this.size === this.userOf.length) {
      this.userOf = grow(this.userOf)
      this.fromOf = grow(this.fromOf)
      this.toOf = grow(this.toOf)
    }
    this.userOf[this.size] = userRef
    this.fromOf[this.size] = from
    this.toOf[this.size] = to
    this.size++
  }

  at(i: number): PlanMove {
    const from = this.fromOf[i]!
    const to = this.toOf[i]!
    return {
      user: this.users[this.userOf[i]!]!,
      from: from < 0 ? null : this.servers[from]!,
      to: to < 0 ? null : this.servers[to]!,
    }
  }

  *[Symbol.iterator](): IterableIterator<PlanMove> {
    for (let i = 0; i < this.size; i++) yield this.at(i)
  }
}

export interface PlanInputs {
  /** Random id of the cluster (the store's), so that a plan of another cluster never passes as current. */
  clusterId: string
  algorithm: number
  current: Topology
  target: Topology
}

/**
 * Builds a plan from chunks of the current placement. `currentServers` are the names that
 * CurrentChunk.copyServers index; `target` is the placement of the target topology.
 */
export class PlanBuilder {
  private readonly servers: string[]
  private readonly currentToPlan: Int32Array
  private readonly targetToPlan: Int32Array
  private readonly before: Float64Array
  private readonly after: Float64Array
  private readonly primariesBefore: Float64Array
  private readonly primariesAfter: Float64Array
  private readonly movesIn: Float64Array
  private readonly movesOut: Float64Array
  private readonly moves: MoveList
  private readonly inputsDigest: string
  private readonly usersHash: Hash
  private readonly copiesHash: Hash
  private readonly targetScratch: Int32Array
  private readonly currentScratch: Int32Array
  private readonly removed: Int32Array
  private readonly added: Int32Array
  private summary: PlanSummary = {
    users: 0,
    copiesBefore: 0,
    copiesAfter: 0,
    moves: 0,
    drops: 0,
    minimumMoves: 0,
    capacityLowerBound: 0,
    usersAffected: 0,
  }

  constructor(
    currentServers: readonly string[],
    private readonly target: Placement,
    inputs: PlanInputs,
  ) {
    this.servers = [...new Set([...currentServers, ...target.servers.map((s) => s.name)])].sort(compareNames)
    const index = new Map(this.servers.map((name, i) => [name, i]))
    this.currentToPlan = Int32Array.from(currentServers, (name) => index.get(name)!)
    this.targetToPlan = Int32Array.from(target.servers, (server) => index.get(server.name)!)
    const n = this.servers.length
    this.before = new Float64Array(n)
    this.after = new Float64Array(n)
    this.primariesBefore = new Float64Array(n)
    this.primariesAfter = new Float64Array(n)
    this.movesIn = new Float64Array(n)
    this.movesOut = new Float64Array(n)
    this.moves = new MoveList(this.servers)
    // 16 is the most copies a topology allows; current placements may hold more than the target.
    this.targetScratch = new Int32Array(64)
    this.currentScratch = new Int32Array(64)
    this.removed = new Int32Array(64)
    this.added = new Int32Array(64)
    this.usersHash = createHash('sha256')
    this.copiesHash = createHash('sha256')
    this.inputsDigest = sha256(
      JSON.stringify({
        clusterId: inputs.clusterId,
        algorithm: inputs.algorithm,
        current: canonicalTopology(inputs.current),
        target: canonicalTopology(inputs.target),
        servers: this.servers,
      }),
    )
  }

  add(chunk: CurrentChunk): void {
    const {users, copyStart, copyServers} = chunk
    const current = this.currentScratch
    const target = this.targetScratch
    const summary = this.summary
    // The digest streams the users, and each user's copy count and copies, in order: it never depends on
    // how the users were chunked.
    this.usersHash.update(users.length === 0 ? '' : `${users.join('\n')}\n`)
    const copiesRecord = new Int32Array(users.length + copyServers.length)
    let recordAt = 0
    for (let u = 0; u < users.length; u++) {
      const user = users[u]!
      const start = copyStart[u]!
      const currentCount = copyStart[u + 1]! - start
      copiesRecord[recordAt++] = currentCount
      for (let k = 0; k < currentCount; k++) {
        const server = this.currentToPlan[copyServers[start + k]!]!
        current[k] = server
        copiesRecord[recordAt++] = server
        this.before[server]! += 1
        if (k === 0) this.primariesBefore[server]! += 1
      }

      const targetCount = this.target.placeInto(user, target)
      for (let k = 0; k < targetCount; k++) {
        const server = this.targetToPlan[target[k]!]!
        target[k] = server
        this.after[server]! += 1
        if (k === 0) this.primariesAfter[server]! += 1
      }

      let addedCount = 0
      for (let k = 0; k < targetCount; k++) {
        if (!contains(current, currentCount, target[k]!)) this.added[addedCount++] = target[k]!
      }
      let removedCount = 0
      for (let k = 0; k < currentCount; k++) {
        if (!contains(target, targetCount, current[k]!)) this.removed[removedCount++] = current[k]!
      }
      summary.users++
      summary.copiesBefore += currentCount
      summary.copiesAfter += targetCount
      summary.minimumMoves += addedCount
      if (addedCount === 0 && removedCount === 0) continue

      // Each removed copy pairs with an added one: its data moves from the one server to the other.
      summary.usersAffected++
      const ref = this.moves.addUser(user)
      const pairs = Math.max(addedCount, removedCount)
      for (let k = 0; k < pairs; k++) {
        const from = k < removedCount ? this.removed[k]! : -1
        const to = k < addedCount ? this.added[k]! : -1
        this.moves.add(ref, from, to)
        if (from >= 0) this.movesOut[from]! += 1
        if (to >= 0) {
          this.movesIn[to]! += 1
          summary.moves++
        } else summary.drops++
      }
    }
    this.copiesHash.update(littleEndianBytes(copiesRecord, recordAt))
  }

  finish(): RebalancePlan {
    const balance = this.servers.map((server, i) => ({
      server,
      before: this.before[i]!,
      after: this.after[i]!,
      primariesBefore: this.primariesBefore[i]!,
      primariesAfter: this.primariesAfter[i]!,
      movesIn: this.movesIn[i]!,
      movesOut: this.movesOut[i]!,
    }))
    this.summary.capacityLowerBound = balance.reduce((sum, s) => sum + Math.max(0, s.after - s.before), 0)
    return {
      servers: this.servers,
      balance,
      summary: {...this.summary},
      moves: this.moves,
      fingerprint: `sha256:${sha256(`${this.inputsDigest}\n${this.usersHash.digest('hex')}\n${this.copiesHash.digest('hex')}`)}`,
    }
  }
}

/** A topology with a fixed key order and sorted lists: equal topologies give equal JSON. */
export function canonicalTopology(topology: Topology): unknown {
  return {
    algorithm: topology.algorithm,
    copies: topology.copies,
    servers: [...topology.servers]
      .sort((a, b) => compareNames(a.name, b.name))
      .map((s) => ({
        name: s.name,
        address: s.address,
        zone: s.zone ?? null,
        weight: s.weight,
        state: s.state,
      })),
    domains: [...topology.domains]
      .sort((a, b) => compareNames(a.domain, b.domain))
      .map((d) => ({
        domain: d.domain,
        servers: d.servers ? [...d.servers].sort(compareNames) : null,
        copies: d.copies ?? null,
      })),
  }
}

function sha256(text: string): string {
  return createHash('sha256').update(text).digest('hex')
}

function contains(list: Int32Array, count: number, value: number): boolean {
  for (let i = 0; i < count; i++) if (list[i] === value) return true
  return false
}

function grow(array: Int32Array<ArrayBuffer>): Int32Array<ArrayBuffer> {
  const bigger = new Int32Array(array.length * 2)
  bigger.set(array)
  return bigger
}

const HOST_IS_LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1

/** The first `count` integers as little-endian bytes, so a plan's fingerprint is the same on every host. */
function littleEndianBytes(values: Int32Array, count: number): Uint8Array {
  if (HOST_IS_LITTLE_ENDIAN) return new Uint8Array(values.buffer, values.byteOffset, count * 4)
  const bytes = new Uint8Array(count * 4)
  const view = new DataView(bytes.buffer)
  for (let i = 0; i < count; i++) view.setInt32(i * 4, values[i]!, true)
  return bytes
}

/** Each server of the plan with its share of all copies before and after: the rows of status and plans. */
export function serverShares(plan: RebalancePlan): ServerShare[] {
  // No copies at all gives shares of 0 rather than NaN.
  const totalBefore = plan.summary.copiesBefore || 1
  const totalAfter = plan.summary.copiesAfter || 1
  return plan.balance.map((b) => ({
    ...b,
    shareBefore: b.before / totalBefore,
    shareAfter: b.after / totalAfter,
  }))
}
