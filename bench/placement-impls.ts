/**
 * The implementations the placement benchmark compares, behind one interface: mailring, the npm packages
 * hashring, consistent-hash and skeleton-rendezvous, and a bench-local reference (uncorrected weighted
 * rendezvous). Shared by bench/placement.ts and the timing child, bench/placement-child.ts.
 */
import {createRequire} from 'node:module'

import {negLog2Unit} from '../src/core/detmath.js'
import {pairScore, serverSeed, userHash} from '../src/core/hash.js'
import {Placement} from '../src/core/placement.js'
import type {Topology} from '../src/core/topology.js'

// The peers are CommonJS packages without type declarations: load them with require, typed here.
interface HashRingInstance {
  range(key: string, size: number, unique?: boolean): string[]
}
type HashRingConstructor = new (servers: string[] | Record<string, number>) => HashRingInstance

interface ConsistentHashInstance {
  add(node: string): ConsistentHashInstance
  remove(node: string): ConsistentHashInstance
  get(key: string, count: number): string[] | null
}
type ConsistentHashConstructor = new (options: {distribution: 'uniform' | 'random'}) => ConsistentHashInstance

interface SkeletonInstance {
  findSite(key: string, salt?: number): string | null
  /** Its sites grouped in clusters (the skeleton's leaves). */
  clusters: string[][]
}
type SkeletonConstructor = new (options: {sites: string[]}) => SkeletonInstance

const require = createRequire(import.meta.url)
const HashRing = require('hashring') as HashRingConstructor
export const ConsistentHash = require('consistent-hash') as ConsistentHashConstructor
const SkeletonRendezvous = require('skeleton-rendezvous') as SkeletonConstructor
export const peerVersion = (name: string): string =>
  (require(`${name}/package.json`) as {version: string}).version

export const COPIES = 3
export const USERS = 1_000_000
export const DOMAIN = 'example.com'
export const TIMING_SERVERS = 100
export const WEIGHT_CYCLE = [1, 2, 4] as const

// ---------------------------------------------------------------------------------------------------------
// Servers and implementations

export interface ServerSpec {
  name: string
  weight: number
}

export const UNIVERSE = 128
export const serverName = (i: number): string => `mail${String(i).padStart(3, '0')}`
const idByName = new Map(Array.from({length: UNIVERSE}, (_, i) => [serverName(i), i] as const))
export const idOf = (name: string): number => {
  const id = idByName.get(name)
  if (id === undefined) throw new Error(`unknown server ${name}`)
  return id
}

export const equalServers = (n: number): ServerSpec[] =>
  Array.from({length: n}, (_, i) => ({name: serverName(i), weight: 1}))
export const weightedServers = (n: number): ServerSpec[] =>
  Array.from({length: n}, (_, i) => ({name: serverName(i), weight: WEIGHT_CYCLE[i % WEIGHT_CYCLE.length]!}))

export interface Placer {
  /** Places users[0..count) and keeps only a checksum: what the timings measure. */
  time(users: readonly string[], count: number): number
  /** Places users[0..count), writing each user's server ids (ids of idByName), primary first, R per user. */
  assign(users: readonly string[], count: number, out: Int32Array): void
}

export interface Implementation {
  label: string
  weights: boolean
  build(servers: readonly ServerSpec[]): Placer
}

function mailringPlacement(servers: readonly ServerSpec[]): Placement {
  const topology: Topology = {
    algorithm: 1,
    copies: COPIES,
    domains: [],
    servers: servers.map((server) => ({
      name: server.name,
      address: '',
      weight: server.weight,
      state: 'active',
    })),
  }
  return new Placement(topology)
}

export const mailring: Implementation = {
  label: 'mailring',
  weights: true,
  build(servers) {
    const placement = mailringPlacement(servers)
    const pool = placement.poolFor(DOMAIN) // built here: weight correction is set-up, not per-user work
    const globalId = Int32Array.from(placement.servers, (server) => idOf(server.name))
    const out = new Int32Array(COPIES)
    return {
      time(users, count) {
        let sum = 0
        for (let i = 0; i < count; i++) {
          pool.placeHash(userHash(users[i]!), out)
          sum += out[0]!
        }
        return sum
      },
      assign(users, count, result) {
        for (let i = 0; i < count; i++) {
          pool.placeHash(userHash(users[i]!), out)
          for (let k = 0; k < COPIES; k++) result[i * COPIES + k] = globalId[out[k]!]!
        }
      },
    }
  },
}

/** mailring through the full per-user API, Placement.placeInto (finds the user's domain and pool). */
export const mailringPlaceInto: Implementation = {
  label: 'mailring placeInto()',
  weights: true,
  build(servers) {
    const placement = mailringPlacement(servers)
    placement.poolFor(DOMAIN)
    const out = new Int32Array(COPIES)
    return {
      time(users, count) {
        let sum = 0
        for (let i = 0; i < count; i++) {
          placement.placeInto(users[i]!, out)
          sum += out[0]!
        }
        return sum
      },
      assign() {
        throw new Error('timing only')
      },
    }
  },
}

/**
 * Plain weighted rendezvous hashing with mailring's hash and logarithm, top R by arrival, no correction:
 * a reference that shows the multi-pick anomaly mailring's weight correction removes.
 */
export const uncorrectedHrw: Implementation = {
  label: 'uncorrected HRW',
  weights: true,
  build(servers) {
    const n = servers.length
    const seeds = Int32Array.from(servers, (server) => serverSeed(server.name))
    const inverseWeight = Float64Array.from(servers, (server) => 1 / server.weight)
    const globalId = Int32Array.from(servers, (server) => idOf(server.name))
    const keys = new Float64Array(n)
    const picked = new Int32Array(COPIES)
    const place = (hash: number): void => {
      let size = 0
      for (let i = 0; i < n; i++) {
        const key = negLog2Unit(pairScore(hash, seeds[i]!)) * inverseWeight[i]!
        keys[i] = key
        if (size === COPIES && key >= keys[picked[size - 1]!]!) continue
        let position = size < COPIES ? size++ : size - 1
        while (position > 0 && keys[picked[position - 1]!]! > key) {
          picked[position] = picked[position - 1]!
          position--
        }
        picked[position] = i
      }
    }
    return {
      time(users, count) {
        let sum = 0
        for (let i = 0; i < count; i++) {
          place(userHash(users[i]!))
          sum += picked[0]!
        }
        return sum
      },
      assign(users, count, result) {
        for (let i = 0; i < count; i++) {
          place(userHash(users[i]!))
          for (let k = 0; k < COPIES; k++) result[i * COPIES + k] = globalId[picked[k]!]!
        }
      },
    }
  },
}

/** Placer for a peer whose lookup returns the user's server names, primary first. */
function namesPlacer(lookup: (user: string) => readonly string[]): Placer {
  return {
    time(users, count) {
      let sum = 0
      for (let i = 0; i < count; i++) sum += lookup(users[i]!).length
      return sum
    },
    assign(users, count, result) {
      for (let i = 0; i < count; i++) {
        const names = lookup(users[i]!)
        if (names.length !== COPIES) throw new Error(`got ${names.length} servers for ${users[i]}`)
        for (let k = 0; k < COPIES; k++) result[i * COPIES + k] = idOf(names[k]!)
      }
    },
  }
}

export const hashring: Implementation = {
  label: 'hashring',
  weights: true,
  build(servers) {
    const equal = servers.every((server) => server.weight === servers[0]!.weight)
    const ring = new HashRing(
      equal
        ? servers.map((server) => server.name)
        : Object.fromEntries(servers.map((server) => [server.name, server.weight])),
    )
    return namesPlacer((user) => ring.range(user, COPIES))
  },
}

export function consistentHashPlacer(ring: ConsistentHashInstance): Placer {
  return namesPlacer((user) => ring.get(user, COPIES) ?? [])
}

export const consistentHash: Implementation = {
  label: 'consistent-hash',
  weights: false,
  build(servers) {
    const ring = new ConsistentHash({distribution: 'uniform'})
    for (const server of servers) ring.add(server.name)
    return consistentHashPlacer(ring)
  },
}

/**
 * skeleton-rendezvous finds one site per key. R distinct servers: findSite(user, salt) for salt = 0, 1, 2,
 * ... until R distinct sites (its public salt parameter). Default options (fanout 2, clusters of 16 sites).
 */
export const skeletonRendezvous: Implementation = {
  label: 'skeleton-rendezvous',
  weights: false,
  build(servers) {
    const hasher = new SkeletonRendezvous({sites: servers.map((server) => server.name)})
    return namesPlacer((user) => {
      const sites: string[] = []
      for (let salt = 0; sites.length < COPIES && salt < 1000; salt++) {
        const site = hasher.findSite(user, salt)
        if (site !== null && !sites.includes(site)) sites.push(site)
      }
      return sites
    })
  },
}

/** How skeleton-rendezvous groups n sites, e.g. "6 clusters of 16-17". */
export function skeletonClusters(n: number): string {
  const sizes = new SkeletonRendezvous({sites: equalServers(n).map((server) => server.name)}).clusters.map(
    (c) => c.length,
  )
  const low = Math.min(...sizes)
  const high = Math.max(...sizes)
  return `${sizes.length} cluster${sizes.length === 1 ? '' : 's'} of ${low === high ? low : `${low}-${high}`}`
}

export const PEERS = [hashring, consistentHash, skeletonRendezvous] as const
export const ALL = [mailring, ...PEERS] as const

export const IMPLEMENTATIONS: readonly Implementation[] = [...ALL, mailringPlaceInto, uncorrectedHrw]

export function implementation(label: string): Implementation {
  const found = IMPLEMENTATIONS.find((impl) => impl.label === label)
  if (!found) throw new Error(`unknown implementation ${label}`)
  return found
}

/** The benchmark's users, `user100000@example.com` onwards. */
export function makeUsers(n: number): string[] {
  return Array.from({length: n}, (_, i) => `user${100000 + i}@example.com`)
}

/** One timing measurement, run in a fresh process (bench/placement-child.ts) so that JIT state is its own. */
export interface TimingJob {
  impl: string
  weighted: boolean
  /** Users placed in the timed run (the first `sampled` users). */
  sampled: number
  /** Users placed in the warm-up run. */
  warmup: number
  /**
   * Place an equal-weight and a weighted pool from one call site before the timed run (as a plan does
   * with the old and the new topology): mailring only.
   */
  mixed?: boolean
}

export interface TimingReport {
  ms: number
  setupMs: number
  checksum: number
}
