import {once} from 'node:events'
import {createWriteStream, renameSync, rmSync} from 'node:fs'
import {basename, dirname, join} from 'node:path'

import {ExitCode, MailringError} from '../../core/errors.js'
import {Placement, type PlacementWarning} from '../../core/placement.js'
import {
  canonicalTopology,
  PlanBuilder,
  type MoveList,
  type PlanSummary,
  type RebalancePlan,
  type ServerBalance,
} from '../../core/plan.js'
import {describeDifference, PlanMovesCheck} from '../../core/plan-check.js'
import type {Topology} from '../../core/topology.js'
import {parseTopology} from '../../core/validate.js'
import type {Store, StoreMeta} from '../../store/store.js'
import {checkAlgorithm, checkedTopology} from '../cluster/topology-check.js'
import {JsonObjectError, readJsonObject, type JsonObjectPart} from '../../config/json-object.js'

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

/** The members of a plan file: anything else is not part of a plan. */
const PLAN_KEYS = [
  'format',
  'version',
  'createdAt',
  'clusterId',
  'algorithm',
  'fingerprint',
  'target',
  'summary',
  'servers',
  'moves',
] as const

/**
 * Reads a plan file's header (everything but its moves, which are only read past), refusing anything that
 * is not a mailring plan this version understands.
 */
export async function readPlanFile(path: string): Promise<PlanFileHeader> {
  const data: Record<string, unknown> = {}
  for await (const part of planParts(path, {skip: ['moves']}, false)) {
    if ('value' in part) data[part.key] = part.value
  }
  if (data.format !== PLAN_FORMAT) {
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
  return {...(data as unknown as PlanFileHeader), target: topology}
}

/**
 * Recomputes the plan of a saved plan file's target and refuses the file when it was made for another
 * cluster, when anything it depends on has changed since (its fingerprint differs), or when any part of
 * it says other than its inputs give (edited by hand): only what its inputs give is ever carried out.
 * The file's moves are read one at a time, never the whole file at once.
 */
export async function verifyPlanFile(store: Store, path: string): Promise<PlanOutcome> {
  const saved = await readPlanFile(path)
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
  const difference = headerDifference(saved, outcome) ?? (await movesDifference(path, outcome.plan.moves))
  if (difference !== undefined) {
    throw new MailringError(
      `${path} is not the plan its inputs give: ${difference}. A plan file cannot be edited: change the topology, then make a new one with \`mailring rebalance --dry-run --out ${path}\`.`,
      {code: 'edited_plan', exitCode: ExitCode.error},
    )
  }
  return outcome
}

function headerDifference(saved: PlanFileHeader, outcome: PlanOutcome): string | undefined {
  const extra = Object.keys(saved).find((key) => !(PLAN_KEYS as readonly string[]).includes(key))
  if (extra !== undefined) return `"${extra}" is in the file, not in a plan`
  return (
    describeDifference('algorithm', saved.algorithm, outcome.meta.algorithm) ??
    describeDifference('summary', saved.summary, outcome.plan.summary) ??
    describeDifference('servers', saved.servers, outcome.plan.balance)
  )
}

/** The first move of the file that differs from the moves its inputs give, read one move at a time. */
async function movesDifference(path: string, moves: MoveList): Promise<string | undefined> {
  const check = new PlanMovesCheck(moves)
  const others = PLAN_KEYS.filter((key) => key !== 'moves')
  for await (const part of planParts(path, {elementsOf: ['moves'], skip: others}, true)) {
    if ('elements' in part) {
      for (const move of part.elements) if (check.add(move) !== undefined) return check.finish()
    } else if ('count' in part) return check.finish()
    else if ('value' in part) return `moves is not a list in the file; its inputs give ${moves.length} moves`
  }
  return 'the file has no moves (not even an empty list)'
}

/** The parts of a plan file; what is not JSON, or cannot be read, is one line. */
async function* planParts(
  path: string,
  options: {elementsOf?: readonly string[]; skip?: readonly string[]},
  knownPlan: boolean,
): AsyncGenerator<JsonObjectPart> {
  let isPlan = knownPlan
  try {
    for await (const part of readJsonObject(path, options)) {
      if (part.key === 'format' && 'value' in part && part.value === PLAN_FORMAT) isPlan = true
      yield part
    }
  } catch (error) {
    if (error instanceof JsonObjectError) {
      throw foreignPlan(
        isPlan
          ? `${path} is a damaged mailring plan (not JSON: ${error.message})`
          : `${path} is not a mailring plan (not JSON)`,
      )
    }
    const code = (error as NodeJS.ErrnoException).code
    if (error instanceof MailringError || typeof code !== 'string') throw error
    throw new MailringError(
      `Cannot read plan ${path}: ${code === 'ENOENT' ? 'no such file' : (error as Error).message}.`,
    )
  }
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
