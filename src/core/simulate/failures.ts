/** The servers that can fail, and what one failure does to every user's load. */
import {isPlacementTarget, type Server} from '../topology.js'
import type {Layout} from './layout.js'

/** Seed for random failures and for sampling failure sets. */
export const DEFAULT_SIM_SEED = 1
/** Seeds drive a 32-bit generator: larger ones would wrap round to the same failures. */
export const MAX_SIM_SEED = 0xffff_ffff
/** Worst failure sets are found by enumeration up to this many sets (and WORK_BUDGET), else by search. */
export const MAX_EXACT_SETS = 2_000_000
/** Rough count of elementary steps one enumeration may take (about a second). */
export const WORK_BUDGET = 300_000_000

export interface FailureBase {
  serverCount: number
  /** 1 for servers that have already failed (state down). */
  down: Uint8Array
  /** Servers that hold copies and are not down, increasing: the candidates for failure. */
  live: Int32Array
  /** Serving capacity relative to the mean (weight / mean weight of the servers holding copies). */
  capacity: Float64Array
  /** How many servers hold copies (down ones included). */
  holders: number
}

export function failureBase(servers: readonly Server[]): FailureBase {
  const holders = servers.map((server, i) => [server, i] as const).filter(([s]) => isPlacementTarget(s))
  const meanWeight = holders.reduce((sum, [s]) => sum + s.weight, 0) / Math.max(1, holders.length)
  const capacity = new Float64Array(servers.length)
  const down = new Uint8Array(servers.length)
  for (const [server, i] of holders) {
    capacity[i] = server.weight / meanWeight
    if (server.state === 'down') down[i] = 1
  }
  return {
    serverCount: servers.length,
    down,
    live: Int32Array.from(holders.filter(([s]) => s.state !== 'down').map(([, i]) => i)),
    capacity,
    holders: holders.length,
  }
}

/** Base for a layout built by hand: servers 0..n-1, all live, equal capacity unless given. */
export function uniformBase(
  serverCount: number,
  down: readonly number[] = [],
  weights?: number[],
): FailureBase {
  const servers: Server[] = Array.from({length: serverCount}, (_, i) => ({
    name: `s${String(i).padStart(6, '0')}`,
    address: '',
    weight: weights?.[i] ?? 1,
    state: down.includes(i) ? ('down' as const) : ('active' as const),
  }))
  return failureBase(servers)
}

export function maskOf(serverCount: number, indices: ArrayLike<number>): Uint8Array {
  const mask = new Uint8Array(serverCount)
  for (let i = 0; i < indices.length; i++) mask[indices[i]!] = 1
  return mask
}

export interface FailureOutcome {
  /** Users with no live copy after the failure (including those whose copies were all down before). */
  offline: number
  /** Load per server before the failure (down servers already failed): users whose first live copy it is. */
  before: Float64Array
  /** Load per server after the failure. */
  after: Float64Array
}

/** Where every user's load is before and after `failed` fail (a pass over all users). */
export function failureOutcome(layout: Layout, down: Uint8Array, failed: ArrayLike<number>): FailureOutcome {
  const failedMask = maskOf(layout.serverCount, failed)
  const before = new Float64Array(layout.serverCount)
  const after = new Float64Array(layout.serverCount)
  let offline = 0
  const {copies, sizes, stride} = layout
  for (let u = 0; u < layout.users; u++) {
    const offset = u * stride
    const size = sizes[u]!
    let first = -1
    let survivor = -1
    for (let c = 0; c < size; c++) {
      const s = copies[offset + c]!
      if (down[s]) continue
      if (first < 0) first = s
      if (!failedMask[s]) {
        survivor = s
        break
      }
    }
    if (first >= 0) before[first]! += 1
    if (survivor >= 0) after[survivor]! += 1
    else offline++
  }
  return {offline, before, after}
}
