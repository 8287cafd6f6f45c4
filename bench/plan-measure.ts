/**
 * The plan measurement both store benchmarks make: plan-child.js plans in its own process (so that its
 * maxRSS is the plan's own), and the same rows report it against the targets.
 */
import {execFile} from 'node:child_process'
import {fileURLToPath} from 'node:url'
import {promisify} from 'node:util'

import {checkTarget, count, seconds} from './report.js'

export interface PlanChildReport {
  ms: number
  maxRssMb: number
  users: number
  moves: number
  minimumMoves: number
}

/** Runs plan-child.js with `args` (`sqlite PATH` or `mysql SETTINGS_JSON`). */
export async function measurePlan(
  args: string[],
  env: NodeJS.ProcessEnv = process.env,
): Promise<PlanChildReport> {
  const child = fileURLToPath(new URL('./plan-child.js', import.meta.url))
  const {stdout} = await promisify(execFile)(process.execPath, [child, ...args], {maxBuffer: 1 << 20, env})
  return JSON.parse(stdout) as PlanChildReport
}

/** Table rows: time and peak memory against their targets, and the moves against the minimum. */
export function planRows(
  suite: string,
  report: PlanChildReport,
  targetMs: number,
  targetMb: number,
): string[][] {
  return [
    [
      'plan: open store, stream 1M placements, place, pair moves',
      seconds(report.ms),
      `<= ${seconds(targetMs)}`,
      checkTarget(
        suite,
        'plan 1M users',
        seconds(report.ms),
        `<= ${seconds(targetMs)}`,
        report.ms <= targetMs,
      ),
    ],
    [
      'plan: peak memory (maxRSS of the planning process)',
      `${report.maxRssMb} MB`,
      `<= ${targetMb} MB`,
      checkTarget(
        suite,
        'plan peak memory',
        `${report.maxRssMb} MB`,
        `<= ${targetMb} MB`,
        report.maxRssMb <= targetMb,
      ),
    ],
    ['plan: moves (minimum)', `${count(report.moves)} (${count(report.minimumMoves)})`, '', ''],
  ]
}
