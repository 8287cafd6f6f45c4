import * as Flags from '@oclif/core/flags'

import {lockFlags} from '../../cli/flags.js'
import {StoreCommand} from '../../cli/store-command.js'
import {loadTopologyFile} from '../../config/topology-file.js'
import type {PlanSummary} from '../../core/plan.js'
import {
  applyTopology,
  previewTopology,
  type TopologyDiff,
  type TopologyPreview,
} from '../../engine/cluster/topology-apply.js'
import {planServerRows, planServersTable, planSummaryLine, type PlanServerRow} from '../../ui/plan.js'

export interface TopologyApplyResult {
  file: string
  applied: boolean
  changed: boolean
  diff: TopologyDiff
  movement: {summary: PlanSummary; servers: PlanServerRow[]}
}

export default class TopologyApply extends StoreCommand {
  static override summary =
    'Show what a topology file changes and the movement it causes; apply it with --yes.'
  static override description = `Without --yes nothing is written. Servers the file leaves out that still hold copies are kept, draining, until a rebalance has emptied them. The movement is the plan that \`mailring rebalance --dry-run\` would show afterwards.

Exit codes: 0 shown or applied, 1 invalid file (each problem with file:line: key), 3 cluster locked, 4 store error.`

  static override examples = [
    '<%= config.bin %> topology apply -f cluster.yaml',
    '<%= config.bin %> topology apply -f cluster.yaml --yes',
  ]

  static override flags = {
    ...lockFlags,
    file: Flags.string({char: 'f', summary: 'Topology file (YAML).', required: true}),
    yes: Flags.boolean({char: 'y', summary: 'Apply the change (otherwise only show it).'}),
  }

  async run(): Promise<TopologyApplyResult> {
    const {flags} = await this.parse(TopologyApply)
    const proposed = loadTopologyFile(flags.file)
    const preview: TopologyPreview = flags.yes
      ? await this.locked(flags, `topology apply -f ${flags.file}`, (store) => applyTopology(store, proposed))
      : await previewTopology(await this.store(flags), proposed)
    for (const warning of preview.outcome.warnings) this.warnUser(warning.message)
    const rows = planServerRows(preview.outcome.plan, preview.topology)
    this.log(describeDiff(preview.diff, preview.changed))
    if (preview.changed) {
      this.log('')
      this.log(planServersTable(rows))
      this.log(planSummaryLine(preview.outcome.plan.summary))
      this.log(
        flags.yes
          ? 'Applied. Nothing has moved yet: `mailring rebalance --dry-run` shows the plan.'
          : 'Not applied: run again with --yes to apply.',
      )
    }
    return {
      file: flags.file,
      applied: Boolean(flags.yes) && preview.changed,
      changed: preview.changed,
      diff: preview.diff,
      movement: {summary: preview.outcome.plan.summary, servers: rows},
    }
  }
}

function describeDiff(diff: TopologyDiff, changed: boolean): string {
  if (!changed) return 'No change: the store has this topology already.'
  const lines: string[] = []
  if (diff.copies) lines.push(`copies: ${diff.copies.from} -> ${diff.copies.to}`)
  for (const name of diff.servers.added) lines.push(`+ server ${name}`)
  for (const name of diff.servers.removed) lines.push(`- server ${name}`)
  for (const change of diff.servers.changed)
    lines.push(`~ server ${change.name}: ${change.fields.join(', ')}`)
  for (const name of diff.keptDraining)
    lines.push(`! server ${name} is not in the file but still holds copies: kept, draining`)
  for (const domain of diff.domains.added) lines.push(`+ domain ${domain}`)
  for (const domain of diff.domains.removed) lines.push(`- domain ${domain}`)
  for (const domain of diff.domains.changed) lines.push(`~ domain ${domain}`)
  return lines.join('\n')
}
