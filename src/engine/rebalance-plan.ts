import {once} from 'node:events'
import {createWriteStream, renameSync, rmSync} from 'node:fs'
import {basename, dirname, join} from 'node:path'

import {ExitCode, MailringError} from '../core/errors.js'
import {Placement, type PlacementWarning} from '../core/placement.js'
import {
  canonicalTopology,
  PlanBuilder,
  type PlanSummary,
  type RebalancePlan,
  type ServerBalance,
} from '../core/plan.js'
import type {Topology} from '../core/topology.js'
import {parseTopology} from '../core/validate.js'
import type {Store, StoreMeta} from '../store/store.js'
import {checkAlgorithm, checkedTopology} from './topology-check.js'
import {readTextFile} from '../config/yaml-file.js'

export interface PlanOutcome {
  plan: RebalancePlan
  meta: StoreMeta
  current: Topology
  target: Topology
  warnings: PlacementWarning[]
}

/**
 * The plan from the store's current placement to the target of `target` (the store's own topology when
 * absent), streaming every user from the store.
 */
export async function computePlan(
  store: Store,
  options: {target?: Topology; chunkSize?: number} = {},
): Promise<PlanOutcome> {
  const meta = await store.meta()
  const current = await store.readTopology()
  const target = checkedTopology(options.target ?? current)
  checkAlgorithm(meta, target)
  if (current.servers.length === 0 && !options.target) {
    throw new MailringError(
      'The cluster has no servers yet: add them first (mailring node add, or mailring topology apply -f FILE).',
      {
        code: 'no_servers',
      },
    )
  }
  const placement = new Placement(target)
  const scan = await store.scanPlacements(options.chunkSize)
  const builder = new PlanBuilder(scan.servers, placement, {
    clusterId: meta.clusterId,
    algorithm: meta.algorithm,
    current,
    target,
  })
  for await (const chunk of scan.chunks) builder.add(chunk)
  return {plan: builder.finish(), meta, current, target, warnings: placement.warnings()}
}

/** Whether the plan leaves anything to do. */
export function hasPendingMoves(summary: PlanSummary): boolean {
  return summary.moves + summary.drops > 0
}

export const PLAN_FORMAT = 'mailring-plan'
export const PLAN_FORMAT_VERSION = 1

export interface PlanFileHeader {
  format: typeof PLAN_FORMAT
  version: number
  createdAt: string
  clusterId: string
  algorithm: number
  fingerprint: string
  target: Topology
  summary: PlanSummary
  servers: ServerBalance[]
}

/**
 * Writes the plan as JSON, moves streamed one per line, to a temporary file renamed into place: a reader
 * never sees half a plan, and a failure leaves any older file as it was.
 */
export async function writePlanFile(path: string, outcome: PlanOutcome): Promise<void> {
  const header: PlanFileHeader = {
    format: PLAN_FORMAT,
    version: PLAN_FORMAT_VERSION,
    createdAt: new Date().toISOString(),
    clusterId: outcome.meta.clusterId,
    algorithm: outcome.meta.algorithm,
    fingerprint: outcome.plan.fingerprint,
    target: outcome.target,
    summary: outcome.plan.summary,
    servers: outcome.plan.balance,
  }
  const temporary = join(dirname(path), `.${basename(path)}.${process.pid}.tmp`)
  const out = createWriteStream(temporary, {mode: 0o644})
  try {
    const write = async (text: string): Promise<void> => {
      if (!out.write(text)) await once(out, 'drain')
    }
    await write(`${JSON.stringify(header, null, 2).slice(0, -2)},\n  "moves": [`)
    const moves = outcome.plan.moves
    for (let i = 0; i < moves.length; i++)
      await write(`${i === 0 ? '' : ','}\n    ${JSON.stringify(moves.at(i))}`)
    await write(moves.length === 0 ? ']\n}\n' : '\n  ]\n}\n')
    out.end()
    await once(out, 'finish')
    renameSync(temporary, path)
  } catch (error) {
    out.destroy()
    rmSync(temporary, {force: true})
    throw new MailringError(`Cannot write plan ${path}: ${(error as Error).message}.`, {cause: error})
  }
}

/** Reads a plan file, refusing anything that is not a mailring plan this version understands. */
export function readPlanFile(path: string): PlanFileHeader {
  const text = readTextFile(path, 'plan')
  let data: Partial<PlanFileHeader>
  try {
    data = JSON.parse(text) as Partial<PlanFileHeader>
  } catch {
    throw foreignPlan(`${path} is not a mailring plan (not JSON)`)
  }
  if (typeof data !== 'object' || data === null || data.format !== PLAN_FORMAT) {
    throw foreignPlan(`${path} is not a mailring plan (no "format": "${PLAN_FORMAT}")`)
  }
  if (data.version !== PLAN_FORMAT_VERSION) {
    throw foreignPlan(
      `${path} is a plan of format version ${String(data.version)}; this mailring reads version ${PLAN_FORMAT_VERSION}`,
    )
  }
  const {topology} = parseTopology(data.target)
  if (typeof data.clusterId !== 'string' || typeof data.fingerprint !== 'string' || !topology) {
    throw foreignPlan(`${path} is a damaged mailring plan (cluster id, fingerprint or target missing)`)
  }
  return {...(data as PlanFileHeader), target: topology}
}

/**
 * Recomputes the plan of a saved plan file's target and refuses it when it was made for another cluster
 * or when anything it depends on has changed since (its fingerprint differs).
 */
export async function verifyPlanFile(store: Store, path: string): Promise<PlanOutcome> {
  const saved = readPlanFile(path)
  const meta = await store.meta()
  if (saved.clusterId !== meta.clusterId) {
    throw foreignPlan(
      `${path} was made for another cluster (cluster id ${saved.clusterId}; this store's is ${meta.clusterId}): make a plan here with \`mailring rebalance --dry-run --out FILE\``,
    )
  }
  const outcome = await computePlan(store, {target: saved.target})
  if (outcome.plan.fingerprint !== saved.fingerprint) {
    throw new MailringError(
      `${path} is stale: the topology or the placement has changed since it was made (${saved.createdAt}); make a new one with \`mailring rebalance --dry-run --out ${path}\`.`,
      {code: 'stale_plan', exitCode: ExitCode.error},
    )
  }
  return outcome
}

function foreignPlan(message: string): MailringError {
  return new MailringError(`${message}.`, {code: 'foreign_plan', exitCode: ExitCode.error})
}

/**
 * A saved plan is executed only towards the topology in the store: moving copies towards one that is not
 * applied would leave the store planning them back.
 */
export function checkPlanTargetsStore(path: string, outcome: PlanOutcome): void {
  if (
    JSON.stringify(canonicalTopology(outcome.target)) !== JSON.stringify(canonicalTopology(outcome.current))
  )
    throw new MailringError(
      `${path} plans towards a topology that is not the store's: apply it first (mailring topology apply -f FILE), then make the plan again.`,
      {code: 'plan_not_applied'},
    )
}
