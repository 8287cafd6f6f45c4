/**
 * Plans a rebalance of the MySQL store whose settings come as JSON in argv[2] (the password in
 * MAILRING_DB_PASSWORD) and prints time, peak memory and the summary as JSON: run as its own process by
 * bench/mysql.ts, so that maxRSS measures the plan and nothing else.
 */
import {computePlan} from '../src/engine/rebalance-plan.js'
import {MysqlStore} from '../src/store/mysql.js'
import type {MysqlSettings} from '../src/store/mysql-settings.js'
import type {PlanChildReport} from './store.js'

const settings = JSON.parse(process.argv[2] ?? '{}') as MysqlSettings
settings.password = process.env.MAILRING_DB_PASSWORD
const start = performance.now()
const store = await MysqlStore.open(settings)
const {plan} = await computePlan(store)
const ms = performance.now() - start
await store.close()
const report: PlanChildReport = {
  ms,
  maxRssMb: Math.round(process.resourceUsage().maxRSS / 1024),
  users: plan.summary.users,
  moves: plan.summary.moves,
  minimumMoves: plan.summary.minimumMoves,
}
process.stdout.write(JSON.stringify(report))
