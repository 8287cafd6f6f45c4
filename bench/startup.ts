/**
 * Start-up benchmark: the CPU time (user + system) of the built CLI for commands that should cost little more
 * than starting Node (`mailring --version`, `mailring --help`, `mailring place USER -t examples/cluster.yaml`),
 * against the peer `node -e 0` (Node starting and doing nothing), measured in the same run, the runs of
 * every command interleaved so that the machine's load falls on them alike. Each figure is the median over
 * BENCH_STARTUP_RUNS runs (default 15), after one warm-up run of each (the files in the page cache).
 *
 * The CPU time of a child is read by bash's `time` (getrusage of its waited-for children, microseconds),
 * which counts the CLI and anything it starts, and nothing of this process.
 */
import {spawnSync} from 'node:child_process'
import {existsSync} from 'node:fs'
import {dirname, join} from 'node:path'
import {fileURLToPath} from 'node:url'

import {checkTarget, printTable, times} from './report.js'

const SUITE = 'startup'
const TARGET_MS = 300
const RUNS = Number(process.env.BENCH_STARTUP_RUNS ?? 15)

interface Subject {
  label: string
  args: string[]
  /** Whether the target applies (not to the peer). */
  target: boolean
}

/** The repository root: the bench runs from bench/ (tsx) or dist/bench/ (npm run bench). */
function projectRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url))
  while (!existsSync(join(dir, 'package.json')) || !existsSync(join(dir, 'bin', 'run.js'))) {
    const parent = dirname(dir)
    if (parent === dir) throw new Error('startup bench: no bin/run.js above bench/')
    dir = parent
  }
  return dir
}

/** The child's environment: what Node and oclif need, nothing of this machine's mailring settings. */
function childEnv(): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {NO_COLOR: '1'}
  for (const name of ['PATH', 'HOME', 'TMPDIR', 'LANG']) if (process.env[name]) env[name] = process.env[name]
  return env
}

/** Runs `args` once under bash's `time`; returns its CPU time (user + system) in ms. */
function cpuMsOf(args: readonly string[], cwd: string, env: NodeJS.ProcessEnv): number {
  const script = 'TIMEFORMAT="cpu %3U %3S"; time "$@" >/dev/null 2>&1'
  const run = spawnSync('bash', ['-c', script, 'bash', ...args], {cwd, env, encoding: 'utf8'})
  if (run.status !== 0) {
    const again = spawnSync(args[0]!, args.slice(1), {cwd, env, encoding: 'utf8'})
    throw new Error(`startup bench: \`${args.join(' ')}\` failed (${run.status}): ${again.stderr.trim()}`)
  }
  const match = /cpu (\d+\.\d+) (\d+\.\d+)/.exec(run.stderr)
  if (!match) throw new Error(`startup bench: no time reported by bash: ${run.stderr.trim()}`)
  return (Number(match[1]) + Number(match[2])) * 1000
}

function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b)
  const middle = sorted.length >> 1
  return sorted.length % 2 === 1 ? sorted[middle]! : (sorted[middle - 1]! + sorted[middle]!) / 2
}

const ms = (value: number): string => `${Math.round(value)} ms`

function runStartupBench(): void {
  const root = projectRoot()
  const cli = join(root, 'bin', 'run.js')
  const subjects: Subject[] = [
    {label: 'node -e 0 (peer)', args: [process.execPath, '-e', '0'], target: false},
    {label: 'mailring --version', args: [process.execPath, cli, '--version'], target: true},
    {label: 'mailring --help', args: [process.execPath, cli, '--help'], target: true},
    {
      label: 'mailring place alice@example.com -t examples/cluster.yaml',
      args: [process.execPath, cli, 'place', 'alice@example.com', '-t', 'examples/cluster.yaml'],
      target: true,
    },
  ]
  const env = childEnv()
  for (const subject of subjects) cpuMsOf(subject.args, root, env)
  const samples = subjects.map((): number[] => [])
  for (let round = 0; round < RUNS; round++)
    subjects.forEach((subject, i) => samples[i]!.push(cpuMsOf(subject.args, root, env)))

  const medians = samples.map(median)
  const peer = medians[0]!
  const target = `<= ${ms(TARGET_MS)}`
  printTable(
    `CPU time (user + system) of one run, median of ${RUNS}`,
    ['command', 'CPU', 'min', 'max', 'x node -e 0', 'beyond node -e 0', 'target', 'result'],
    subjects.map((subject, i) => [
      subject.label,
      ms(medians[i]!),
      ms(Math.min(...samples[i]!)),
      ms(Math.max(...samples[i]!)),
      times(medians[i]! / peer),
      ms(medians[i]! - peer),
      subject.target ? target : '',
      subject.target
        ? checkTarget(SUITE, `${subject.label}: CPU`, ms(medians[i]!), target, medians[i]! <= TARGET_MS)
        : '',
    ]),
    [
      `The built CLI (${cli}), run as \`node bin/run.js ...\` from the repository root; \`npm run build\` writes its oclif.manifest.json.`,
    ],
  )
}

export const startupBench = {
  name: SUITE,
  description: 'CPU time of starting the CLI (--version, --help, place -t) against node -e 0',
  run: runStartupBench,
}
