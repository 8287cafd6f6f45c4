import {StoreCommand} from '../cli/store-command.js'
import {describeHolder} from '../store/lock.js'
import type {LockHolder} from '../store/store.js'
import {availabilityIssues} from '../core/validate.js'
import {computePlan} from '../engine/rebalance-plan.js'
import {percent, renderTable} from '../ui/table.js'

export interface StatusServer {
  name: string
  state: string
  zone: string | null
  weight: number
  /** Users whose primary copy is here now. */
  primaries: number
  copies: number
  /** This server's share of all copies now, and in the target placement. */
  share: number
  targetShare: number
  targetCopies: number
  movesIn: number
  movesOut: number
}

export interface StatusResult {
  store: string
  schemaVersion: number
  algorithm: number
  clusterId: string
  copies: number
  users: number
  servers: StatusServer[]
  pendingMoves: number
  pendingDrops: number
  lock: LockHolder | null
}

export default class Status extends StoreCommand {
  static override summary =
    'Show the servers with their users, copies, share against the target, and pending moves.'
  static override description = `SHARE is each server's share of all copies now, TARGET its share once the pending moves are done. Reads the whole placement: a few seconds for a million users.

Exit codes: 0 shown, 4 store error.`

  static override examples = ['<%= config.bin %> status', '<%= config.bin %> status --json']

  async run(): Promise<StatusResult> {
    const {flags} = await this.parse(Status)
    const store = await this.store(flags)
    const meta = await store.meta()
    const topology = await store.readTopology()
    const lock = (await store.lockHolder()) ?? null
    const result: StatusResult = {
      store: store.location,
      schemaVersion: meta.schemaVersion,
      algorithm: meta.algorithm,
      clusterId: meta.clusterId,
      copies: topology.copies,
      users: 0,
      servers: [],
      pendingMoves: 0,
      pendingDrops: 0,
      lock,
    }
    this.log(`Store ${store.location} (schema ${meta.schemaVersion}, placement algorithm ${meta.algorithm})`)
    if (lock) this.log(`Locked by ${describeHolder(lock)}`)
    if (topology.servers.length === 0) {
      this.log('No servers yet: add them with `mailring node add` or `mailring topology apply -f FILE`.')
      return result
    }
    const shortfall = availabilityIssues(topology)
    if (shortfall.length > 0) {
      for (const issue of shortfall)
        this.warnUser(`${issue.message} (users can be added once there are enough)`)
      return result
    }
    const {plan, warnings} = await computePlan(store)
    for (const warning of warnings) this.warnUser(warning.message)
    const balance = new Map(plan.balance.map((b) => [b.server, b]))
    const totalBefore = plan.summary.copiesBefore || 1
    const totalAfter = plan.summary.copiesAfter || 1
    result.users = plan.summary.users
    result.pendingMoves = plan.summary.moves
    result.pendingDrops = plan.summary.drops
    result.servers = topology.servers.map((server) => {
      const b = balance.get(server.name)!
      return {
        name: server.name,
        state: server.state,
        zone: server.zone ?? null,
        weight: server.weight,
        primaries: b.primariesBefore,
        copies: b.before,
        share: b.before / totalBefore,
        targetShare: b.after / totalAfter,
        targetCopies: b.after,
        movesIn: b.movesIn,
        movesOut: b.movesOut,
      }
    })
    this.log(
      renderTable(
        ['SERVER', 'STATE', 'ZONE', 'WEIGHT', 'USERS', 'COPIES', 'SHARE', 'TARGET', 'IN', 'OUT'],
        result.servers.map((s) => [
          s.name,
          s.state,
          s.zone ?? '-',
          s.weight,
          s.primaries,
          s.copies,
          percent(s.share),
          percent(s.targetShare),
          s.movesIn,
          s.movesOut,
        ]),
        {align: ['left', 'left', 'left', 'right', 'right', 'right', 'right', 'right', 'right', 'right']},
      ),
    )
    this.log(
      `${result.users} users, ${plan.summary.copiesBefore} copies (default ${topology.copies} per user). ` +
        (result.pendingMoves + result.pendingDrops === 0
          ? 'Every copy is on its target server.'
          : `Pending: ${result.pendingMoves} moves${result.pendingDrops ? `, ${result.pendingDrops} copies to delete` : ''}; see \`mailring rebalance --dry-run\`.`),
    )
    return result
  }
}
