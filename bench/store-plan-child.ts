/**
 * Plans a rebalance of the store given as argument and prints time, peak memory and the summary as JSON:
 * run as its own process by bench/store.ts, so that maxRSS measures the plan and nothing else.
 */
import {computePlan} from '../src/engine/rebalance-plan.js'
import {SqliteStore} from '../src/store/sqlite.js'
import type {PlanChildReport} from './store.js'

const path = process.argv[2]
if (!path) throw new Error('usage: store-plan-child.js DB')
const start = performance.now()
const store = await SqliteStore.open(path)
const {plan} = await computePlan(store)
const ms = performance.now() - start
await store.close()
const report: PlanChildReport = {
  ms,
  // maxRSS is in kilobytes.
  maxRssMb: Math.round(process.resourceUsage().maxRSS / 1024),
  users: plan.summary.users,
  moves: plan.summary.moves,
  minimumMoves: plan.summary.minimumMoves,
}
process.stdout.write(JSON.stringify(report))
