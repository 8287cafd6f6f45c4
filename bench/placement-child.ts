/**
 * One timing of bench/placement.ts, in a process of its own: builds the implementation, runs a warm-up,
 * then times one run and prints a TimingReport as JSON. A fresh process per run keeps the JIT's view of
 * the code to the implementation and scenario measured.
 */
import {
  equalServers,
  implementation,
  mailring,
  makeUsers,
  TIMING_SERVERS,
  type TimingJob,
  type TimingReport,
  weightedServers,
} from './placement-impls.js'

const argument = process.argv[2]
if (!argument) throw new Error('usage: placement-child.js JOB (JSON)')
const job = JSON.parse(argument) as TimingJob
const users = makeUsers(Math.max(job.sampled, job.warmup))
const servers = job.weighted ? weightedServers(TIMING_SERVERS) : equalServers(TIMING_SERVERS)
const impl = implementation(job.impl)

const setupStart = performance.now()
const placer = impl.build(servers)
const setupMs = performance.now() - setupStart

let checksum = 0
if (job.mixed) {
  // One call site placing all users in an equal-weight pool and in a weighted one, alternately, as a plan
  // does with an old and a new topology; the last of them is timed.
  if (impl !== mailring) throw new Error('mixed is for mailring only')
  const other = impl.build(job.weighted ? equalServers(TIMING_SERVERS) : weightedServers(TIMING_SERVERS))
  checksum += other.time(users, job.sampled)
  checksum += placer.time(users, job.sampled)
  checksum += other.time(users, job.sampled)
} else {
  checksum += placer.time(users, job.warmup)
}
;(globalThis as {gc?: () => void}).gc?.()
const start = performance.now()
checksum += placer.time(users, job.sampled)
const ms = performance.now() - start

const report: TimingReport = {ms, setupMs, checksum}
process.stdout.write(JSON.stringify(report))
