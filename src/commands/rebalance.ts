import * as Flags from '@oclif/core/flags'
import type {Interfaces} from '@oclif/core'

import {confirmOrRefuse} from '../cli/confirm.js'
import {lockFlags} from '../cli/flags.js'
import {StoreCommand, type StoreFlagValues} from '../cli/store-command.js'
import {loadTopologyFile} from '../config/topology-file.js'
import {formatBytes, parseByteRate} from '../core/bytes.js'
import {parseDuration} from '../core/duration.js'
import {ExitCode, MailringError} from '../core/errors.js'
import type {PlanMove, PlanSummary} from '../core/plan.js'
import {executeRebalance, loadPlan, narrowedMoves, rebalanceWork} from '../engine/rebalance/execute.js'
import type {MoveOutcome} from '../engine/rebalance/move.js'
import {narrowingText} from '../engine/rebalance/narrowing.js'
import {hasPendingMoves, writePlanFile} from '../engine/rebalance/plan.js'
import type {RebalanceEvent, RebalanceSummary} from '../engine/rebalance/run.js'
import {startProgress} from '../ui/progress.js'
import {moveLine, rebalanceSummaryLines} from '../ui/rebalance.js'
import {
  planMovesText,
  planServerRows,
  planServersTable,
  planSummaryLine,
  type PlanServerRow,
} from '../ui/plan.js'

export interface RebalanceResult {
  dryRun: true
  /** "store" for the store's topology, else the file planned against. */
  target: string
  fingerprint: string
  clusterId: string
  algorithm: number
  summary: PlanSummary
  servers: PlanServerRow[]
  /** Every move, or with --server/--user only those that involve them. */
  moves: PlanMove[]
  /** What --server and --user narrowed the moves to, or null. */
  narrowed: {servers: string[]; users: string[]} | null
  /** The plan file written with --out, or null. */
  out: string | null
}

export interface RebalanceRunOutput {
  dryRun: false
  /** The plan the run started from. */
  fingerprint: string
  summary: RebalanceSummary
  /** Every move the run worked on, as it finished. */
  moves: MoveOutcome[]
  failures: MoveOutcome[]
  /** Draining servers that hold no copies any more. */
  emptied: string[]
}

function emptyRun(): Omit<RebalanceRunOutput, 'dryRun' | 'fingerprint'> {
  return {
    summary: {
      moved: 0,
      failed: 0,
      resumed: 0,
      left: 0,
      copyCountChanges: 0,
      interrupted: false,
      seconds: 0,
      movesPerSecond: 0,
      bytes: 0,
      bytesPerSecond: 0,
    },
    moves: [],
    failures: [],
    emptied: [],
  }
}

function withoutEvent(event: RebalanceEvent): Record<string, unknown> {
  const {event: _, ...rest} = event
  return rest
}

export default class Rebalance extends StoreCommand {
  static override summary =
    'Move copies to where the ring puts them, make-before-break and resumable; --dry-run only plans.'
  static override description = `With --dry-run: shows each move (user, from, to), copies per server before and after, and the moves against the minimum possible (per user, the target servers that hold no copy yet). --topology plans against a proposed topology file without applying it, e.g. in CI on a pull request. --out saves the plan with a fingerprint of its inputs; \`--plan FILE\` checks a saved plan and refuses it when anything changed since (stale), when the file was edited (it is not what its inputs give), or when it belongs to another cluster.

Without --dry-run: executes the plan (or the saved --plan, refused when stale) under the cluster lock, after confirmation on a terminal (--yes for scripts). Each move is journaled, copied with doveadm sync to the new server, verified, switched in the store in one transaction, caught up from the old copy, and the old copy is moved to a dated trash folder on the server it left (\`rebalance cleanup\` deletes old trash). A move that fails changes nothing and stays in the journal; the next run retries it. Ctrl-C lets the moves in flight finish; after a crash the next run resumes from the journal (\`rebalance status\`, \`rebalance cancel\`).

Exit codes: --dry-run: 0 planned (with --detailed-exitcode: nothing to move), 2 moves pending (only with --detailed-exitcode). Executing: 0 every move done, 2 stopped with moves left (Ctrl-C, --max-moves), 1 some moves failed (nothing lost; run again). Both: 1 bad input (stale or foreign plan, not confirmed), 3 cluster locked, 4 store error.`

  static override examples = [
    '<%= config.bin %> rebalance --dry-run',
    '<%= config.bin %> rebalance --dry-run --topology cluster.yaml --detailed-exitcode',
    '<%= config.bin %> rebalance --dry-run --out plan.json',
    '<%= config.bin %> rebalance --dry-run --plan plan.json',
    '<%= config.bin %> rebalance --dry-run --json | jq .result.summary',
    '<%= config.bin %> rebalance',
    '<%= config.bin %> rebalance --plan plan.json --yes --parallel 8 --json-lines',
    '<%= config.bin %> rebalance --yes --max-moves 100',
    '<%= config.bin %> rebalance --yes --bwlimit 50MB/s',
  ]

  static override flags = {
    ...lockFlags,
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
    yes: Flags.boolean({char: 'y', summary: 'Execute without asking for confirmation (scripts, CI).'}),
    parallel: Flags.integer({summary: 'Moves at once.', default: 4, min: 1, max: 256}),
    'per-server': Flags.integer({
      summary: 'Moves at once that involve any one server (leaving it or arriving on it).',
      default: 2,
      min: 1,
      max: 64,
    }),
    server: Flags.string({
      summary: 'Only the moves from or to this server (repeatable): list them, or execute only them.',
      multiple: true,
      exclusive: ['out'],
    }),
    user: Flags.string({
      summary: 'Only the moves of this user (repeatable): list them, or execute only them.',
      multiple: true,
      exclusive: ['out'],
    }),
    'max-moves': Flags.integer({summary: 'Start at most this many moves in this run.', min: 1}),
    bwlimit: Flags.string({
      summary:
        'Limit the copying to this rate on average, for the run as a whole, e.g. 50MB/s (K, M, G: powers of 1024; KB, MB, GB: of 1000).',
      description:
        "doveadm sync copies server to server, so mailring paces the moves rather than the bytes: a move starts copying only when the mailboxes started before it (each one's size is asked first) fit in the rate. One mailbox still copies at full speed; for a hard cap on the wire, shape the traffic on the servers (tc).",
    }),
    'retire-after': Flags.string({
      summary:
        'Wait this long after a move catches up before retiring the old copy (deliveries routed there before the switch land first).',
      default: '10s',
    }),
    'json-lines': Flags.boolean({
      summary: 'One JSON line per move as it finishes, then one with the summary (for CI logs).',
      exclusive: ['json'],
    }),
    'accept-new': Flags.boolean({
      summary: 'Trust and record the SSH host key of a server not in known_hosts yet.',
    }),
  }

  async run(): Promise<RebalanceResult | RebalanceRunOutput> {
    const {flags} = await this.parse(Rebalance)
    if (!flags['dry-run']) return this.execute(flags)
    const store = await this.store(flags)
    const outcome = await loadPlan(store, {
      ...(flags.plan ? {planFile: flags.plan} : {}),
      ...(flags.topology ? {target: loadTopologyFile(flags.topology)} : {}),
    })
    for (const warning of outcome.warnings) this.warnUser(warning.message)
    if (flags.out) await writePlanFile(flags.out, outcome)

    const {plan} = outcome
    const rows = planServerRows(plan, outcome.target)
    const selected = await narrowedMoves(store, outcome, narrowingOf(flags))
    this.log(planServersTable(rows))
    this.log('')
    const moves = planMovesText(selected ?? plan.moves, flags.moves)
    if (moves !== '') this.log(`${moves}\n`)
    this.log(planSummaryLine(plan.summary))
    if (selected) this.log(`${selected.length} of these moves involve ${narrowingText(narrowingOf(flags))}.`)
    if (flags.plan) this.log(`${flags.plan} is current (fingerprint ${plan.fingerprint}).`)
    if (flags.out) this.log(`Saved the plan to ${flags.out}.`)
    if (flags['detailed-exitcode'] && (selected ? selected.length > 0 : hasPendingMoves(plan.summary)))
      process.exitCode = ExitCode.changesPending

    return {
      dryRun: true,
      target: flags.plan ?? flags.topology ?? 'store',
      fingerprint: plan.fingerprint,
      clusterId: outcome.meta.clusterId,
      algorithm: outcome.meta.algorithm,
      summary: plan.summary,
      servers: rows,
      moves: selected ?? [...plan.moves],
      narrowed: selected ? {servers: flags.server ?? [], users: flags.user ?? []} : null,
      out: flags.out ?? null,
    }
  }

  private async execute(
    flags: Interfaces.InferredFlags<typeof Rebalance.flags> & StoreFlagValues,
  ): Promise<RebalanceRunOutput> {
    if (flags.topology)
      throw new MailringError(
        'rebalance executes against the topology in the store: apply the file first (mailring topology apply -f FILE), then run mailring rebalance.',
        {code: 'topology_not_applied'},
      )
    const lines = flags['json-lines']
    const retireAfterMs = parseDuration(flags['retire-after'], '--retire-after')
    const bytesPerSecond = flags.bwlimit === undefined ? undefined : parseByteRate(flags.bwlimit, '--bwlimit')
    return this.locked(flags, 'rebalance', async (store, lock) => {
      const work = await rebalanceWork(store, {
        ...(flags.plan ? {planFile: flags.plan} : {}),
        ...narrowingOf(flags),
      })
      for (const warning of work.outcome.warnings) this.warnUser(warning.message)
      const fingerprint = work.outcome.plan.fingerprint
      if (work.nothing) {
        if (lines) this.log(JSON.stringify({type: 'summary', moved: 0}))
        else this.log('Nothing to move: every copy is where the ring puts it.')
        return {dryRun: false, fingerprint, ...emptyRun()}
      }
      if (!lines && !this.jsonEnabled()) {
        this.log(planSummaryLine(work.outcome.plan.summary))
        if (work.open.length > 0)
          this.log(`${work.open.length} journaled moves of an earlier run will be finished first.`)
      }
      await confirmOrRefuse(`${work.what}?`, {yes: flags.yes, what: 'rebalance'})

      const progress = startProgress('Moving', {
        json: this.jsonEnabled() || lines,
        total: work.toMove + work.open.length,
        unit: 'moves',
        eta: true,
        detail: true,
      })
      let finished = 0
      let bytes = 0
      let result: Awaited<ReturnType<typeof executeRebalance>>
      try {
        result = await executeRebalance({
          store,
          lock,
          location: this.storeLocation(flags),
          ...(flags.config === undefined ? {} : {config: flags.config}),
          acceptNew: flags['accept-new'],
          work,
          tuning: {
            parallel: flags.parallel,
            perServer: flags['per-server'],
            ...(flags['max-moves'] === undefined ? {} : {maxMoves: flags['max-moves']}),
            retireAfterMs,
            ...(bytesPerSecond === undefined ? {} : {bytesPerSecond}),
          },
          interrupts: {
            onStopping: (reason) => {
              if (reason.kind === 'signal')
                process.stderr.write(
                  'Stopping: no new move starts; the moves in flight finish (Ctrl-C again stops at once, resumable).\n',
                )
            },
            onExit: () =>
              process.stderr.write(
                'Stopped at once: the journal keeps every move; `mailring rebalance` resumes them.\n',
              ),
          },
          onEvent: (event) => {
            if (event.event === 'finish') {
              if (event.error === undefined) bytes += event.bytes
              progress.update(++finished, `${formatBytes(bytes)} copied`)
              if (!lines) {
                const line = moveLine(event)
                if (line) process.stderr.write(`${line}\n`)
              }
            }
            if (lines && event.event !== 'start')
              this.log(
                JSON.stringify({
                  type: event.event === 'finish' ? 'move' : event.event,
                  ...withoutEvent(event),
                }),
              )
          },
        })
      } finally {
        progress.stop()
      }
      const {run} = result
      if (lines) this.log(JSON.stringify({type: 'summary', ...run.summary, emptied: run.emptied}))
      else for (const line of rebalanceSummaryLines(run)) this.log(line)
      if (result.lockLost) throw result.lockLost
      process.exitCode =
        run.summary.failed > 0
          ? ExitCode.error
          : run.summary.left > 0 || run.summary.interrupted
            ? ExitCode.changesPending
            : ExitCode.ok
      return {
        dryRun: false,
        fingerprint,
        summary: run.summary,
        moves: run.moves,
        failures: run.failures,
        emptied: run.emptied,
      }
    })
  }
}

function narrowingOf(flags: {server?: string[]; user?: string[]}): {servers?: string[]; users?: string[]} {
  return {...(flags.server ? {servers: flags.server} : {}), ...(flags.user ? {users: flags.user} : {})}
}
