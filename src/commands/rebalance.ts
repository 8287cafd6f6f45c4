import {Flags} from '@oclif/core'

import {StoreCommand} from '../cli/store-command.js'
import {loadTopologyFile} from '../config/topology-file.js'
import {ExitCode, MailringError} from '../core/errors.js'
import type {PlanMove, PlanSummary} from '../core/plan.js'
import {
  computePlan,
  hasPendingMoves,
  verifyPlanFile,
  writePlanFile,
  type PlanOutcome,
} from '../engine/rebalance-plan.js'
import {planServerRows, planServersTable, planSummaryLine, type PlanServerRow} from '../ui/plan.js'
import {renderTable} from '../ui/table.js'

export interface RebalanceResult {
  dryRun: true
  /** "store" for the store's topology, else the file planned against. */
  target: string
  fingerprint: string
  clusterId: string
  algorithm: number
  summary: PlanSummary
  servers: PlanServerRow[]
  moves: PlanMove[]
  /** The plan file written with --out, or null. */
  out: string | null
}

export default class Rebalance extends StoreCommand {
  static override summary = 'Plan the moves that take the current placement to the target (--dry-run).'
  static override description = `Shows each move (user, from, to), copies per server before and after, and the moves against the minimum possible (per user, the target servers that hold no copy yet). --topology plans against a proposed topology file without applying it, e.g. in CI on a pull request. --out saves the plan with a fingerprint of its inputs; \`--plan FILE\` checks a saved plan and refuses it when anything changed since (stale) or when it belongs to another cluster.

Executing moves comes in a later release: without --dry-run, rebalance refuses and changes nothing.

Exit codes: 0 planned (with --detailed-exitcode: nothing to move), 2 moves pending (only with --detailed-exitcode), 1 error (bad input, stale or foreign plan, execution requested), 4 store error.`

  static override examples = [
    '<%= config.bin %> rebalance --dry-run',
    '<%= config.bin %> rebalance --dry-run --topology cluster.yaml --detailed-exitcode',
    '<%= config.bin %> rebalance --dry-run --out plan.json',
    '<%= config.bin %> rebalance --dry-run --plan plan.json',
    '<%= config.bin %> rebalance --dry-run --json | jq .result.summary',
  ]

  static override flags = {
    'dry-run': Flags.boolean({summary: 'Only plan: show the moves, change nothing.'}),
    topology: Flags.string({
      char: 't',
      summary: "Plan against this proposed topology file instead of the store's (nothing is applied).",
    }),
    out: Flags.string({char: 'o', summary: 'Save the plan (JSON, with its fingerprint) to this file.'}),
    plan: Flags.string({
      summary: 'Check a saved plan file against the store: refused when stale or foreign.',
      exclusive: ['topology'],
    }),
    'detailed-exitcode': Flags.boolean({
      summary: 'Exit 0 when nothing is to move, 2 when moves are pending.',
    }),
    moves: Flags.integer({
      summary: 'Moves to list (human output; --json and --out have all).',
      default: 20,
      min: 0,
    }),
  }

  async run(): Promise<RebalanceResult> {
    const {flags} = await this.parse(Rebalance)
    const store = await this.store(flags)
    if (!flags['dry-run']) {
      // A saved plan is still checked, so that a stale one is named as such.
      if (flags.plan) await verifyPlanFile(store, flags.plan)
      throw new MailringError(
        'Executing moves is not available yet (it comes in a later release); nothing was changed. Run `mailring rebalance --dry-run` to see the plan, with --out plan.json to save it.',
        {code: 'not_supported'},
      )
    }
    let outcome: PlanOutcome
    if (flags.plan) outcome = await verifyPlanFile(store, flags.plan)
    else outcome = await computePlan(store, flags.topology ? {target: loadTopologyFile(flags.topology)} : {})
    for (const warning of outcome.warnings) this.warnUser(warning.message)
    if (flags.out) await writePlanFile(flags.out, outcome)

    const {plan} = outcome
    const rows = planServerRows(plan, outcome.target)
    this.log(planServersTable(rows))
    this.log('')
    const shown = Math.min(flags.moves, plan.moves.length)
    if (shown > 0) {
      const moves = Array.from({length: shown}, (_, i) => plan.moves.at(i))
      this.log(
        renderTable(
          ['USER', 'FROM', 'TO'],
          moves.map((m) => [m.user, m.from ?? '(new copy)', m.to ?? '(delete)']),
        ),
      )
      if (plan.moves.length > shown) this.log(`... and ${plan.moves.length - shown} more moves`)
      this.log('')
    }
    this.log(planSummaryLine(plan.summary))
    if (flags.plan) this.log(`${flags.plan} is current (fingerprint ${plan.fingerprint}).`)
    if (flags.out) this.log(`Saved the plan to ${flags.out}.`)
    if (flags['detailed-exitcode'] && hasPendingMoves(plan.summary))
      process.exitCode = ExitCode.changesPending

    return {
      dryRun: true,
      target: flags.plan ?? flags.topology ?? 'store',
      fingerprint: plan.fingerprint,
      clusterId: outcome.meta.clusterId,
      algorithm: outcome.meta.algorithm,
      summary: plan.summary,
      servers: rows,
      moves: [...plan.moves],
      out: flags.out ?? null,
    }
  }
}
