/**
 * Runs every benchmark suite in sequence: `npm run bench` (builds first, runs with --expose-gc so that
 * timings start from a collected heap). Give suite names as arguments to run only those.
 */
import {cpus, loadavg, totalmem} from 'node:os'

import {configPushBench} from './config-push.js'
import {placementBench} from './placement.js'
import {storeBench} from './store.js'
import {mysqlBench} from './mysql.js'
import {syncBench} from './sync.js'
import {syncCheckBench} from './sync-check.js'
import {rebalanceBench} from './rebalance.js'
import {replicatorBench} from './replicator.js'
import {startupBench} from './startup.js'
import {printTable, seconds, targetResults} from './report.js'

interface BenchSuite {
  name: string
  description: string
  run(): void | Promise<void>
}

const suites: BenchSuite[] = [
  startupBench,
  placementBench,
  storeBench,
  configPushBench,
  mysqlBench,
  syncBench,
  syncCheckBench,
  rebalanceBench,
  replicatorBench,
]

const wanted = process.argv.slice(2)
const unknown = wanted.filter((name) => !suites.some((suite) => suite.name === name))
if (unknown.length > 0) {
  console.error(
    `Unknown benchmark suite(s): ${unknown.join(', ')}. Known: ${suites.map((suite) => suite.name).join(', ')}.`,
  )
  process.exit(2)
}
const selected = wanted.length === 0 ? suites : suites.filter((suite) => wanted.includes(suite.name))

const cpuList = cpus()
console.log('# mailring benchmarks')
console.log('')
console.log(
  `Node ${process.version}, ${cpuList.length} x ${cpuList[0]?.model.trim() ?? 'unknown CPU'}, ${Math.round(totalmem() / 2 ** 30)} GiB; ` +
    `gc ${typeof (globalThis as {gc?: unknown}).gc === 'function' ? 'exposed' : 'NOT exposed (run with --expose-gc)'}.`,
)

const load = (): string =>
  loadavg()
    .map((value) => value.toFixed(2))
    .join(' ')
console.log(`Load average at start: ${load()}.`)
if (loadavg()[0]! > cpuList.length / 2) {
  console.log(
    `WARNING: the machine is busy (load ${loadavg()[0]!.toFixed(2)} on ${cpuList.length} CPUs): timings will be slow and noisy.`,
  )
}

const started = performance.now()
for (const suite of selected) {
  console.log('')
  console.log(`## ${suite.name}: ${suite.description}`)
  const start = performance.now()
  await suite.run()
  console.log('')
  console.log(`${suite.name}: done in ${seconds(performance.now() - start)}`)
}

console.log('')
console.log(`Load average at end: ${load()}.`)

const results = targetResults()
if (results.length > 0) {
  printTable(
    'Targets (mailring)',
    ['suite', 'metric', 'value', 'target', 'result'],
    results.map((result) => [
      result.suite,
      result.metric,
      result.value,
      result.target,
      result.pass ? 'PASS' : 'FAIL',
    ]),
    [
      `${results.filter((result) => result.pass).length} of ${results.length} targets met; total ${seconds(performance.now() - started)}.`,
    ],
    2,
  )
}
