/**
 * Plans a rebalance of one store and prints time, peak memory and the plan's summary as JSON. Run as its own
 * process by the store benchmarks, so that maxRSS measures the plan and nothing else.
 *   plan-child.js sqlite PATH
 *   plan-child.js mysql SETTINGS_JSON      (the password in MAILRING_DB_PASSWORD)
 */
import {computePlan} from '../src/engine/rebalance/plan.js'
import {MysqlStore} from '../src/store/mysql.js'
import type {MysqlSettings} from '../src/store/mysql-settings.js'
import {SqliteStore} from '../src/store/sqlite.js'
import type {Store} from '../src/store/store.js'
import type {PlanChildReport} from './plan-measure.js'

async function openStore(kind: string | undefined, where: string | undefined): Promise<Store> {
  if (kind === 'sqlite' && where) return SqliteStore.open(where)
  if (kind === 'mysql' && where) {
    const settings = JSON.parse(where) as MysqlSettings
    settings.password = process.env.MAILRING_DB_PASSWORD
    return MysqlStore.open(settings)
  }
  throw new Error('usage: plan-child.js sqlite PATH | mysql SETTINGS_JSON')
}

const start = performance.now()
const store = await openStore(process.argv[2], process.argv[3])
const {plan} = await computePlan(store)
const ms = performance.now() - start
await store.close()
const report: PlanChildReport = {
  ms,
  maxRssMb: Math.round(process.resourceUsage().maxRSS / 1024), // maxRSS is in kilobytes
  users: plan.summary.users,
  moves: plan.summary.moves,
  minimumMoves: plan.summary.minimumMoves,
}
process.stdout.write(JSON.stringify(report))
