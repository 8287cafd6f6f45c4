/**
 * Placement benchmark: mailring side by side with the npm packages hashring (ketama ring), consistent-hash
 * (ring, uniform control points) and skeleton-rendezvous (rendezvous hashing), on the same users and the
 * same server names, R = 3 copies per user.
 *
 * Measured: placement time (1,000,000 users, 100 servers), balance, movement when a server is added or
 * removed, how evenly a failed server's users fall over to the survivors, and (weighted) each weight
 * class's share of copies. Every figure of a peer is measured in the same run as mailring's.
 */
import {execFileSync} from 'node:child_process'
import {cpSync, mkdtempSync, rmSync, symlinkSync, writeFileSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {fileURLToPath} from 'node:url'

import {
  ALL,
  ConsistentHash,
  consistentHashPlacer,
  COPIES,
  equalServers,
  hashring,
  idOf,
  type Implementation,
  mailring,
  mailringPlaceInto,
  makeUsers,
  PEERS,
  peerVersion,
  type ServerSpec,
  serverName,
  skeletonClusters,
  skeletonRendezvous,
  TIMING_SERVERS,
  type TimingJob,
  type TimingReport,
  uncorrectedHrw,
  UNIVERSE,
  USERS,
  WEIGHT_CYCLE,
  weightedServers,
} from './placement-impls.js'
import {checkTarget, count, fixed, percent, printTable, seconds, times} from './report.js'

const SUITE = 'placement'
const METRIC_SERVERS = 20
const WEIGHTED_SERVERS = 21 // weights 1, 2, 4 cycling: 7 servers of each
/** skeleton-rendezvous hashes md5 hex per candidate: far too slow for 1,000,000 users; sampled, stated. */
const SKELETON_TIMING_USERS = 10_000
const SKELETON_METRIC_USERS = 100_000
/** Placement.placeInto is timed on a sample too (it is several times slower than the bulk path). */
const PLACE_INTO_TIMING_USERS = 100_000
/** BENCH_VERBOSE=1 prints every timed run. */
const VERBOSE = process.env.BENCH_VERBOSE === '1'
const DIST = fileURLToPath(new URL('..', import.meta.url))
const PROJECT = fileURLToPath(new URL('../..', import.meta.url))

/** Users measured per implementation for the metrics (skeleton-rendezvous is sampled). */
const metricUsers = (impl: Implementation): number =>
  impl === skeletonRendezvous ? SKELETON_METRIC_USERS : USERS

// ---------------------------------------------------------------------------------------------------------
// Measuring

/**
 * A private copy of the compiled code for the timing children, so that a rebuild of dist/ while the
 * benchmark runs (`npm run build` starts with rm -rf dist) cannot pull the code away from under them.
 */
function snapshotDist(): {child: string; remove: () => void} {
  const root = mkdtempSync(join(tmpdir(), 'mailring-bench-'))
  cpSync(join(DIST, 'bench'), join(root, 'bench'), {recursive: true})
  cpSync(join(DIST, 'src'), join(root, 'src'), {recursive: true})
  writeFileSync(join(root, 'package.json'), JSON.stringify({type: 'module'}))
  symlinkSync(join(PROJECT, 'node_modules'), join(root, 'node_modules'), 'dir')
  return {
    child: join(root, 'bench', 'placement-child.js'),
    remove: () => rmSync(root, {recursive: true, force: true}),
  }
}

/** Runs one timing in a fresh process: JIT state from other implementations or scenarios cannot leak in. */
function runTimingJob(child: string, job: TimingJob): TimingReport {
  const output = execFileSync(process.execPath, ['--expose-gc', child, JSON.stringify(job)], {
    encoding: 'utf8',
  })
  return JSON.parse(output) as TimingReport
}

function place(
  impl: Implementation,
  servers: readonly ServerSpec[],
  users: readonly string[],
  userCount: number,
): Int32Array {
  const out = new Int32Array(userCount * COPIES)
  impl.build(servers).assign(users, userCount, out)
  return out
}

function copiesPerServer(assignment: Int32Array): Float64Array {
  const counts = new Float64Array(UNIVERSE)
  for (let i = 0; i < assignment.length; i++) counts[assignment[i]!]! += 1
  return counts
}

/** Largest count over the mean count, over the given servers. */
function maxOverMean(counts: Float64Array, ids: readonly number[]): number {
  let max = 0
  let sum = 0
  for (const id of ids) {
    max = Math.max(max, counts[id]!)
    sum += counts[id]!
  }
  return max / (sum / ids.length)
}

/** Copies that left a user's replica set: (user, server) memberships in `before` and not in `after`. */
function movedCopies(before: Int32Array, after: Int32Array, userCount: number): number {
  let moved = 0
  for (let u = 0; u < userCount; u++) {
    const base = u * COPIES
    for (let k = 0; k < COPIES; k++) {
      const server = before[base + k]!
      let kept = false
      for (let j = 0; j < COPIES; j++) if (after[base + j] === server) kept = true
      if (!kept) moved++
    }
  }
  return moved
}

function copiesOn(assignment: Int32Array, id: number): number {
  let n = 0
  for (let i = 0; i < assignment.length; i++) if (assignment[i] === id) n++
  return n
}

interface Movement {
  moved: number
  needed: number
  efficiency: number
  /** Added server's copies over its fair share (weight share of all copies); NaN for a removal. */
  fill: number
  movedShare: number
}

function addMovement(
  before: Int32Array,
  after: Int32Array,
  userCount: number,
  added: ServerSpec,
  totalWeight: number,
): Movement {
  const moved = movedCopies(before, after, userCount)
  const needed = copiesOn(after, idOf(added.name))
  const fair = (userCount * COPIES * added.weight) / totalWeight
  return {
    moved,
    needed,
    efficiency: moved / needed,
    fill: needed / fair,
    movedShare: moved / (userCount * COPIES),
  }
}

function removeMovement(
  before: Int32Array,
  after: Int32Array,
  userCount: number,
  removed: ServerSpec,
): Movement {
  const moved = movedCopies(before, after, userCount)
  const needed = copiesOn(before, idOf(removed.name))
  return {moved, needed, efficiency: moved / needed, fill: NaN, movedShare: moved / (userCount * COPIES)}
}

/**
 * When server f fails, each user whose primary is f falls over to its first surviving server: its second
 * one. For every f: the busiest survivor's count over the mean survivor's count. Mean and worst over f.
 */
function failureSpread(
  assignment: Int32Array,
  userCount: number,
  ids: readonly number[],
): {mean: number; worst: number} {
  const matrix = new Float64Array(UNIVERSE * UNIVERSE)
  for (let u = 0; u < userCount; u++)
    matrix[assignment[u * COPIES]! * UNIVERSE + assignment[u * COPIES + 1]!]! += 1
  let sum = 0
  let worst = 0
  for (const failed of ids) {
    let max = 0
    let total = 0
    for (const survivor of ids) {
      if (survivor === failed) continue
      const n = matrix[failed * UNIVERSE + survivor]!
      max = Math.max(max, n)
      total += n
    }
    const ratio = max / (total / (ids.length - 1))
    sum += ratio
    worst = Math.max(worst, ratio)
  }
  return {mean: sum / ids.length, worst}
}

/** Each user on R distinct servers drawn uniformly at random: the statistical noise floor of the metrics. */
function randomAssignment(ids: readonly number[], userCount: number): Int32Array {
  let state = 0x2545f491
  const next = (): number => {
    state ^= state << 13
    state ^= state >>> 17
    state ^= state << 5
    return (state >>> 0) / 4294967296
  }
  const out = new Int32Array(userCount * COPIES)
  for (let u = 0; u < userCount; u++) {
    for (let k = 0; k < COPIES; k++) {
      let id: number
      do id = ids[Math.floor(next() * ids.length)]!
      while (out.subarray(u * COPIES, u * COPIES + k).includes(id))
      out[u * COPIES + k] = id
    }
  }
  return out
}

// ---------------------------------------------------------------------------------------------------------
// Sections

function timingSection(): void {
  interface Timing {
    ms: number // for all USERS (scaled when sampled)
    sampled: number // users actually placed per run
    runs: number
    setupMs: number
  }
  interface Job extends Timing {
    spec: TimingJob
    label: string
    worstMs: number
  }
  const prepare = (impl: Implementation, weighted: boolean, mixed = false): Job => {
    const sampled =
      impl === skeletonRendezvous
        ? SKELETON_TIMING_USERS
        : impl === mailringPlaceInto
          ? PLACE_INTO_TIMING_USERS
          : USERS
    const slow = impl === hashring || impl === skeletonRendezvous
    // Warm-up: the full run for the fast ones, a tenth for the slow ones.
    const spec: TimingJob = {
      impl: impl.label,
      weighted,
      sampled,
      warmup: slow ? Math.ceil(sampled / 10) : sampled,
      mixed,
    }
    const label = `${impl.label}${weighted ? ' (weights 1,2,4)' : ''}${mixed ? ' (mixed)' : ''}`
    return {spec, label, ms: Infinity, worstMs: 0, sampled, runs: slow ? 2 : 3, setupMs: Infinity}
  }
  const equalTimes = new Map<Implementation, Job>(ALL.map((impl) => [impl, prepare(impl, false)]))
  const weightedTimes = new Map<Implementation, Job>(
    ALL.filter((impl) => impl.weights).map((impl) => [impl, prepare(impl, true)]),
  )
  const placeInto = prepare(mailringPlaceInto, false)
  const placeIntoWeighted = prepare(mailringPlaceInto, true)
  const mixed = prepare(mailring, true, true)
  // Each run in its own process, round by round, so that a burst of load from elsewhere hits all alike.
  const jobs = [...equalTimes.values(), ...weightedTimes.values(), placeInto, placeIntoWeighted, mixed]
  const snapshot = snapshotDist()
  try {
    for (let round = 0; round < 3; round++) {
      for (const job of jobs) {
        if (round >= job.runs) continue
        const report = runTimingJob(snapshot.child, job.spec)
        const ms = report.ms * (USERS / job.sampled)
        if (VERBOSE) console.log(`  round ${round + 1}: ${job.label}: ${seconds(ms)}`)
        job.ms = Math.min(job.ms, ms)
        job.worstMs = Math.max(job.worstMs, ms)
        job.setupMs = Math.min(job.setupMs, report.setupMs)
      }
    }
  } finally {
    snapshot.remove()
  }
  const cell = (timing: Timing | undefined): string => {
    if (!timing) return 'n/a (no weights)'
    return timing.sampled === USERS
      ? seconds(timing.ms)
      : `${seconds(timing.ms)} (${count(timing.sampled)} users x${USERS / timing.sampled})`
  }

  const mine = equalTimes.get(mailring)!
  const mineWeighted = weightedTimes.get(mailring)!
  const ratio = (timings: Map<Implementation, Job>, impl: Implementation, base: Timing): string => {
    const timing = timings.get(impl)
    return timing ? times(timing.ms / base.ms) : 'n/a'
  }
  const hashringRatio = equalTimes.get(hashring)!.ms / mine.ms
  const hashringRatioWeighted = weightedTimes.get(hashring)!.ms / mineWeighted.ms

  const header = ['', ...ALL.map((impl) => impl.label), 'target (mailring)', 'mailring']
  const rows: string[][] = [
    [
      'equal weights: time',
      ...ALL.map((impl) => cell(equalTimes.get(impl))),
      '<= 1.0 s',
      checkTarget(SUITE, 'time, equal weights', seconds(mine.ms), '<= 1.0 s', mine.ms <= 1000),
    ],
    [
      'equal weights: peer / mailring',
      '1.00x',
      ...PEERS.map((impl) => ratio(equalTimes, impl, mine)),
      'hashring >= 3x',
      checkTarget(SUITE, 'hashring / mailring, equal', times(hashringRatio), '>= 3x', hashringRatio >= 3),
    ],
    [
      'equal weights: per user',
      ...ALL.map((impl) => `${((equalTimes.get(impl)!.ms * 1000) / USERS).toFixed(2)} us`),
      '',
      '',
    ],
    [
      'weights 1,2,4: time',
      ...ALL.map((impl) => cell(weightedTimes.get(impl))),
      '<= 1.5 s',
      checkTarget(
        SUITE,
        'time, weights 1,2,4',
        seconds(mineWeighted.ms),
        '<= 1.5 s',
        mineWeighted.ms <= 1500,
      ),
    ],
    [
      'weights 1,2,4: peer / mailring',
      '1.00x',
      ...PEERS.map((impl) => ratio(weightedTimes, impl, mineWeighted)),
      'info',
      '',
    ],
    [
      'weights 1,2,4, call site shared with an equal pool',
      `${seconds(mixed.ms)} (worst ${seconds(mixed.worstMs)})`,
      ...PEERS.map(() => 'n/a'),
      'info',
      mixed.ms <= 1500 ? '(within 1.5 s)' : '(over 1.5 s)',
    ],
    [
      'set-up (build ring / pool), equal',
      ...ALL.map((impl) => `${equalTimes.get(impl)!.setupMs.toFixed(1)} ms`),
      '',
      '',
    ],
    [
      'set-up, weights 1,2,4',
      ...ALL.map((impl) => {
        const timing = weightedTimes.get(impl)
        return timing ? `${timing.setupMs.toFixed(1)} ms` : 'n/a'
      }),
      'info',
      '',
    ],
  ]
  printTable(
    `Placement time: ${count(USERS)} users, ${TIMING_SERVERS} servers, R = ${COPIES}`,
    header,
    rows,
    [
      `Best of ${mine.runs} runs for mailring and consistent-hash, of 2 for hashring and skeleton-rendezvous (slow). ` +
        'Every run is a fresh process (warm-up run, then the timed run), runs interleaved round by round.',
      'Every time includes hashing the user strings (generated before timing); set-up (building the ring or the pool, weight correction) is not included.',
      `skeleton-rendezvous is timed on the first ${count(SKELETON_TIMING_USERS)} users and scaled linearly x${USERS / SKELETON_TIMING_USERS} to ${count(USERS)}.`,
      `Ratios: ${PEERS.map((impl) => `${impl.label} / mailring = ${ratio(equalTimes, impl, mine)}`).join(', ')} (equal weights); ` +
        `hashring / mailring = ${times(hashringRatioWeighted)} (weights 1,2,4).`,
      `skeleton-rendezvous with its default options (fanout 2, clusters of 16 sites) splits ${TIMING_SERVERS} servers into ${skeletonClusters(TIMING_SERVERS)}; ` +
        'it finds one site per key, so R distinct servers come from findSite(user, salt) for salt = 0, 1, 2, ... (its own salt parameter).',
      `The >= 3x target is checked with equal weights; with weights 1,2,4 hashring / mailring = ${times(hashringRatioWeighted)} (shown for information).`,
      `mailring through Placement.placeInto(user), which looks up the user's domain and pool per call: ${seconds(placeInto.ms)} equal ` +
        `(${times(placeInto.ms / mine.ms)} the bulk path), ${seconds(placeIntoWeighted.ms)} weighted; timed on ${count(PLACE_INTO_TIMING_USERS)} users, ` +
        `scaled x${USERS / PLACE_INTO_TIMING_USERS}. The table times pool.placeHash(userHash(user)), the bulk path.`,
      'Call site shared with an equal pool: the same loop first places all users in an equal-weight pool and the weighted one ' +
        '(as a plan does with an old and a new topology), then the weighted pool is timed. ' +
        `Best ${seconds(mixed.ms)}, worst ${seconds(mixed.worstMs)} of ${mixed.runs} runs, against ${seconds(mineWeighted.ms)} ` +
        `(worst ${seconds(mineWeighted.worstMs)}) alone: the weighted path's speed depends on what V8 inlines into the caller.`,
    ],
  )
}

function equalMetricsSection(users: readonly string[]): void {
  const base = equalServers(METRIC_SERVERS)
  const added: ServerSpec = {name: serverName(METRIC_SERVERS), weight: 1}
  const removed = base[7]!
  const baseIds = base.map((server) => idOf(server.name))

  interface Result {
    userCount: number
    balance: number
    minOverMean: number
    failure: {mean: number; worst: number}
    add: Movement
    remove: Movement
  }
  const measure = (impl: Implementation): Result => {
    const userCount = metricUsers(impl)
    const before = place(impl, base, users, userCount)
    const afterAdd = place(impl, [...base, added], users, userCount)
    const afterRemove = place(
      impl,
      base.filter((server) => server !== removed),
      users,
      userCount,
    )
    const counts = copiesPerServer(before)
    const mean = (userCount * COPIES) / base.length
    return {
      userCount,
      balance: maxOverMean(counts, baseIds),
      minOverMean: Math.min(...baseIds.map((id) => counts[id]!)) / mean,
      failure: failureSpread(before, userCount, baseIds),
      add: addMovement(before, afterAdd, userCount, added, base.length + 1),
      remove: removeMovement(before, afterRemove, userCount, removed),
    }
  }
  const results = new Map<Implementation, Result>(ALL.map((impl) => [impl, measure(impl)]))

  // consistent-hash changed in place (add()/remove() on a live ring) rather than rebuilt from the server list.
  const incremental = (() => {
    const ring = new ConsistentHash({distribution: 'uniform'})
    for (const server of base) ring.add(server.name)
    const placer = consistentHashPlacer(ring)
    const before = new Int32Array(USERS * COPIES)
    placer.assign(users, USERS, before)
    ring.add(added.name)
    const afterAdd = new Int32Array(USERS * COPIES)
    placer.assign(users, USERS, afterAdd)
    const add = addMovement(before, afterAdd, USERS, added, base.length + 1)
    const ring2 = new ConsistentHash({distribution: 'uniform'})
    for (const server of base) ring2.add(server.name)
    ring2.get(users[0]!, COPIES) // lay out the control points before removing
    ring2.remove(removed.name)
    const afterRemove = new Int32Array(USERS * COPIES)
    consistentHashPlacer(ring2).assign(users, USERS, afterRemove)
    return {add, remove: removeMovement(before, afterRemove, USERS, removed)}
  })()

  const noise = new Map(
    [USERS, SKELETON_METRIC_USERS].map((n) => {
      const random = randomAssignment(baseIds, n)
      return [
        n,
        {balance: maxOverMean(copiesPerServer(random), baseIds), failure: failureSpread(random, n, baseIds)},
      ] as const
    }),
  )

  const header = ['', ...ALL.map((impl) => impl.label), 'target (mailring)', 'mailring']
  const get = (impl: Implementation): Result => results.get(impl)!
  const mine = get(mailring)
  const sampledNote =
    `skeleton-rendezvous: first ${count(SKELETON_METRIC_USERS)} users only (md5 per candidate is too slow for ${count(USERS)}), so its figures carry more noise; ` +
    `at ${METRIC_SERVERS - 1}, ${METRIC_SERVERS} and ${METRIC_SERVERS + 1} servers its default options make ` +
    `${[METRIC_SERVERS - 1, METRIC_SERVERS, METRIC_SERVERS + 1].map(skeletonClusters).join(', ')} (one cluster: plain rendezvous over all servers per salted lookup).`

  printTable(
    `Balance: ${METRIC_SERVERS} servers, ${count(USERS)} users, R = ${COPIES}, equal weights`,
    header,
    [
      [
        'max / mean copies per server',
        ...ALL.map((impl) => fixed(get(impl).balance)),
        '<= 1.01',
        checkTarget(SUITE, 'balance max/mean', fixed(mine.balance), '<= 1.01', mine.balance <= 1.01),
      ],
      ['min / mean copies per server', ...ALL.map((impl) => fixed(get(impl).minOverMean)), 'info', ''],
    ],
    [
      sampledNote,
      `Noise floor (R distinct servers drawn at random per user): max/mean ${fixed(noise.get(USERS)!.balance)} at ${count(USERS)} users, ` +
        `${fixed(noise.get(SKELETON_METRIC_USERS)!.balance)} at ${count(SKELETON_METRIC_USERS)}.`,
    ],
  )

  const movementCell = (movement: Movement): string => fixed(movement.efficiency)
  const addPass = mine.add.moved === mine.add.needed
  const removePass = mine.remove.moved === mine.remove.needed
  printTable(
    `Movement: ${METRIC_SERVERS} servers -> ${METRIC_SERVERS + 1} (add ${added.name}) and -> ${METRIC_SERVERS - 1} (remove ${removed.name}), equal weights`,
    [...header.slice(0, -2), 'consistent-hash incr.', ...header.slice(-2)],
    [
      [
        'add: moved copies / copies on new server',
        ...ALL.map((impl) => movementCell(get(impl).add)),
        movementCell(incremental.add),
        '1.000 (exact)',
        checkTarget(SUITE, 'add movement efficiency', fixed(mine.add.efficiency), '1.000', addPass),
      ],
      [
        'add: new server fill (copies / fair share)',
        ...ALL.map((impl) => fixed(get(impl).add.fill)),
        fixed(incremental.add.fill),
        'info',
        '',
      ],
      [
        'add: moved copies, % of all copies',
        ...ALL.map((impl) => percent(get(impl).add.movedShare)),
        percent(incremental.add.movedShare),
        `ideal ${percent(1 / (METRIC_SERVERS + 1))}`,
        '',
      ],
      [
        'remove: moved copies / copies on removed server',
        ...ALL.map((impl) => movementCell(get(impl).remove)),
        movementCell(incremental.remove),
        '1.000 (exact)',
        checkTarget(SUITE, 'remove movement efficiency', fixed(mine.remove.efficiency), '1.000', removePass),
      ],
      [
        'remove: moved copies, % of all copies',
        ...ALL.map((impl) => percent(get(impl).remove.movedShare)),
        percent(incremental.remove.movedShare),
        `ideal ${percent(1 / METRIC_SERVERS)}`,
        '',
      ],
    ],
    [
      'A moved copy: a (user, server) membership present before and absent after (replica sets compared as sets). Efficiency 1.0 is the minimum: only copies that had to move did.',
      'Fair share of the new server: all copies / servers. Each ring is rebuilt from the new server list (what a restarted process does); ' +
        '"consistent-hash incr." instead calls add()/remove() on the live ring, whose layout then depends on its history.',
      `mailring: add moved ${count(mine.add.moved)} copies for ${count(mine.add.needed)} landed on ${added.name}; ` +
        `remove moved ${count(mine.remove.moved)} for ${count(mine.remove.needed)} held by ${removed.name}.`,
      sampledNote,
    ],
  )

  const floor = noise.get(USERS)!.failure
  const floorSampled = noise.get(SKELETON_METRIC_USERS)!.failure
  printTable(
    `Failure spread: ${METRIC_SERVERS} servers, ${count(USERS)} users, R = ${COPIES}: one server fails, its primary users fall over to their next server`,
    header,
    [
      [
        'busiest survivor / mean survivor (mean over failing each server)',
        ...ALL.map((impl) => fixed(get(impl).failure.mean)),
        '<= 1.05',
        checkTarget(
          SUITE,
          'failure spread (mean)',
          fixed(mine.failure.mean),
          '<= 1.05',
          mine.failure.mean <= 1.05,
        ),
      ],
      ['same, worst failed server', ...ALL.map((impl) => fixed(get(impl).failure.worst)), 'info', ''],
    ],
    [
      `Of a failed server's ~${count(Math.round(USERS / METRIC_SERVERS))} primary users, each falls over to its second server; counted per survivor (${METRIC_SERVERS - 1} of them). ${METRIC_SERVERS - 1}.00 would mean all on one.`,
      `Noise floor (random independent copies): mean ${fixed(floor.mean)} / worst ${fixed(floor.worst)} at ${count(USERS)} users; ` +
        `mean ${fixed(floorSampled.mean)} / worst ${fixed(floorSampled.worst)} at ${count(SKELETON_METRIC_USERS)} (skeleton-rendezvous' sample).`,
    ],
  )
}

function weightedMetricsSection(users: readonly string[]): void {
  const base = weightedServers(WEIGHTED_SERVERS)
  const added: ServerSpec = {name: serverName(WEIGHTED_SERVERS), weight: 2}
  const removed = base.find((server) => server.weight === 4)!
  const totalWeight = base.reduce((sum, server) => sum + server.weight, 0)
  const implementations = [mailring, hashring, uncorrectedHrw]

  interface Result {
    classRatio: Map<number, number> // weight -> class share of copies / class weight share
    worstError: number
    serverMax: number // max over servers of copies / fair share
    serverMin: number
    add: Movement
    remove: Movement
  }
  const measure = (impl: Implementation): Result => {
    const before = place(impl, base, users, USERS)
    const afterAdd = place(impl, [...base, added], users, USERS)
    const afterRemove = place(
      impl,
      base.filter((server) => server !== removed),
      users,
      USERS,
    )
    const counts = copiesPerServer(before)
    const copies = USERS * COPIES
    const classRatio = new Map<number, number>()
    for (const weight of WEIGHT_CYCLE) {
      const members = base.filter((server) => server.weight === weight)
      const share = members.reduce((sum, server) => sum + counts[idOf(server.name)]!, 0) / copies
      classRatio.set(weight, share / ((weight * members.length) / totalWeight))
    }
    const perServer = base.map(
      (server) => counts[idOf(server.name)]! / ((copies * server.weight) / totalWeight),
    )
    return {
      classRatio,
      worstError: Math.max(...[...classRatio.values()].map((ratio) => Math.abs(ratio - 1))),
      serverMax: Math.max(...perServer),
      serverMin: Math.min(...perServer),
      add: addMovement(before, afterAdd, USERS, added, totalWeight + added.weight),
      remove: removeMovement(before, afterRemove, USERS, removed),
    }
  }
  const results = new Map(implementations.map((impl) => [impl, measure(impl)]))
  const get = (impl: Implementation): Result => results.get(impl)!
  const mine = get(mailring)

  const header = [
    '',
    ...implementations.map((impl) => impl.label),
    'consistent-hash',
    'skeleton-rendezvous',
    'target (mailring)',
    'mailring',
  ]
  const noWeights = ['n/a (no weights)', 'n/a (no weights)']
  printTable(
    `Weighted proportionality: ${WEIGHTED_SERVERS} servers with weights ${WEIGHT_CYCLE.join(', ')} cycling (${WEIGHTED_SERVERS / WEIGHT_CYCLE.length} of each), ${count(USERS)} users, R = ${COPIES}`,
    header,
    [
      ...WEIGHT_CYCLE.map((weight) => [
        `weight ${weight}: class share of copies / weight share`,
        ...implementations.map(
          (impl) =>
            `${fixed(get(impl).classRatio.get(weight)!)} (${percent(get(impl).classRatio.get(weight)! - 1, 1)})`,
        ),
        ...noWeights,
        'within 2%',
        '',
      ]),
      [
        'worst class error',
        ...implementations.map((impl) => percent(get(impl).worstError)),
        ...noWeights,
        '<= 2%',
        checkTarget(
          SUITE,
          'weighted proportionality',
          percent(mine.worstError),
          '<= 2%',
          mine.worstError <= 0.02,
        ),
      ],
      [
        'per server: max copies / fair share',
        ...implementations.map((impl) => fixed(get(impl).serverMax)),
        ...noWeights,
        'info',
        '',
      ],
      [
        'per server: min copies / fair share',
        ...implementations.map((impl) => fixed(get(impl).serverMin)),
        ...noWeights,
        'info',
        '',
      ],
    ],
    [
      "Weight share of a class: its servers' total weight / all weight; fair share of a server: all copies x weight / total weight.",
      '"uncorrected HRW": top-R weighted rendezvous with mailring\'s own hash and logarithm but no weight correction (a bench-local reference, not a package): the multi-pick anomaly.',
      'consistent-hash ("uniform" ignores per-node weights) and skeleton-rendezvous have no weights.',
    ],
  )

  printTable(
    `Movement with weights: ${WEIGHTED_SERVERS} servers (weights ${WEIGHT_CYCLE.join(', ')}) -> add ${added.name} (weight ${added.weight}); -> remove ${removed.name} (weight ${removed.weight})`,
    header,
    [
      [
        'add: moved copies / copies on new server',
        ...implementations.map((impl) => fixed(get(impl).add.efficiency)),
        ...noWeights,
        '<= 1.02',
        checkTarget(
          SUITE,
          'weighted add movement efficiency',
          fixed(mine.add.efficiency),
          '<= 1.02',
          mine.add.efficiency <= 1.02,
        ),
      ],
      [
        'add: new server fill (copies / fair share)',
        ...implementations.map((impl) => fixed(get(impl).add.fill)),
        ...noWeights,
        'info',
        '',
      ],
      [
        'remove: moved copies / copies on removed server',
        ...implementations.map((impl) => fixed(get(impl).remove.efficiency)),
        ...noWeights,
        '<= 1.02',
        checkTarget(
          SUITE,
          'weighted remove movement efficiency',
          fixed(mine.remove.efficiency),
          '<= 1.02',
          mine.remove.efficiency <= 1.02,
        ),
      ],
      [
        'moved copies, % of all (add / remove)',
        ...implementations.map(
          (impl) => `${percent(get(impl).add.movedShare)} / ${percent(get(impl).remove.movedShare)}`,
        ),
        ...noWeights,
        `ideal ${percent(added.weight / (totalWeight + added.weight))} / ${percent(removed.weight / totalWeight)}`,
        '',
      ],
    ],
    [
      `Fair share of the new server: all copies x ${added.weight} / ${totalWeight + added.weight}. mailring re-corrects every weight when the set changes, which moves a few copies between servers that stayed; "uncorrected HRW" moves the minimum but misses proportionality.`,
      `mailring: add moved ${count(mine.add.moved)} copies for ${count(mine.add.needed)} landed on ${added.name}; remove moved ${count(mine.remove.moved)} for ${count(mine.remove.needed)} held by ${removed.name}.`,
    ],
  )
}

// ---------------------------------------------------------------------------------------------------------

export const placementBench = {
  name: SUITE,
  description:
    `mailring vs hashring ${peerVersion('hashring')}, consistent-hash ${peerVersion('consistent-hash')} (distribution: uniform), ` +
    `skeleton-rendezvous ${peerVersion('skeleton-rendezvous')}; R = ${COPIES}`,
  run(): void {
    const users = makeUsers(USERS)
    const step = (label: string, section: () => void): void => {
      const start = performance.now()
      section()
      console.log(`\n(${label}: ${seconds(performance.now() - start)})`)
    }
    step('timing', () => timingSection())
    step('equal-weight metrics', () => equalMetricsSection(users))
    step('weighted metrics', () => weightedMetricsSection(users))
  },
}
