import type {MoveList, PlanMove} from './plan.js'
import {formatPath} from './validate.js'

/**
 * Whether a saved plan says what its inputs give, part by part: a plan file whose fingerprint matches
 * (its inputs are unchanged) may still have been edited by hand, and only what its inputs give is ever
 * carried out. Each check names the first difference, as "X in the file, Y by its inputs".
 */

/** The first place where two JSON values differ, as a path and the two values there. */
function firstDifference(
  file: unknown,
  inputs: unknown,
  path: (string | number)[] = [],
): {path: (string | number)[]; file: unknown; inputs: unknown} | undefined {
  if (Object.is(file, inputs)) return undefined
  if (Array.isArray(file) && Array.isArray(inputs)) {
    for (let i = 0; i < Math.min(file.length, inputs.length); i++) {
      const found = firstDifference(file[i], inputs[i], [...path, i])
      if (found) return found
    }
    return file.length === inputs.length
      ? undefined
      : {path: [...path, 'length'], file: file.length, inputs: inputs.length}
  }
  if (isRecord(file) && isRecord(inputs)) {
    for (const key of Object.keys(inputs)) {
      const found = firstDifference(file[key], inputs[key], [...path, key])
      if (found) return found
    }
    const extra = Object.keys(file).find((key) => !(key in inputs))
    return extra === undefined ? undefined : {path: [...path, extra], file: file[extra], inputs: undefined}
  }
  return {path, file, inputs}
}

/** "summary.moves is 3 in the file, 5 by its inputs", or undefined when the two agree. */
export function describeDifference(name: string, file: unknown, inputs: unknown): string | undefined {
  const found = firstDifference(file, inputs)
  if (!found) return undefined
  const last = found.path[found.path.length - 1]
  if (last === 'length' && typeof found.file === 'number') {
    const list = formatPath([name, ...found.path.slice(0, -1)])
    return `${list} has ${found.file} entr${found.file === 1 ? 'y' : 'ies'} in the file, ${shown(found.inputs)} by its inputs`
  }
  const where = formatPath([name, ...found.path])
  if (found.inputs === undefined) return `${where} is in the file, not in a plan`
  return `${where} is ${shown(found.file)} in the file, ${shown(found.inputs)} by its inputs`
}

/**
 * Checks the moves of a plan file, one at a time as they are read, against the moves its inputs give:
 * linear in the moves, keeping nothing of the file. `add` and `finish` return the first difference.
 */
export class PlanMovesCheck {
  private count = 0
  private difference: string | undefined

  constructor(private readonly moves: MoveList) {}

  /** The next move of the file; the first difference once there is one (later moves are only counted). */
  add(move: unknown): string | undefined {
    const index = this.count++
    if (this.difference !== undefined || index >= this.moves.length) return this.difference
    this.difference = moveDifference(index, move, this.moves.at(index))
    return this.difference
  }

  /** After the last move: the first difference, or the counts when the file lists more or fewer moves. */
  finish(): string | undefined {
    if (this.difference !== undefined) return this.difference
    if (this.count === this.moves.length) return undefined
    return `the file lists ${this.count} move${this.count === 1 ? '' : 's'}, its inputs give ${this.moves.length}`
  }
}

/** What differs between move `index` of the file and of the inputs, counted from 1 in the message. */
function moveDifference(index: number, file: unknown, inputs: PlanMove): string | undefined {
  const name = `move ${index + 1}`
  if (!isRecord(file)) return `${name} is ${shown(file)} in the file, not a move (user, from, to)`
  if (file.user !== inputs.user)
    return `${name} is of ${plain(file.user)} in the file, of ${inputs.user} by its inputs`
  const of = `${name} (${inputs.user})`
  if (file.from !== inputs.from)
    return `${of} comes from ${server(file.from, 'a new copy')} in the file, from ${server(inputs.from, 'a new copy')} by its inputs`
  if (file.to !== inputs.to)
    return `${of} goes to ${server(file.to, 'a copy deleted')} in the file, to ${server(inputs.to, 'a copy deleted')} by its inputs`
  const extra = Object.keys(file).find((key) => key !== 'user' && key !== 'from' && key !== 'to')
  return extra === undefined ? undefined : `${of} has "${extra}" in the file, which a move does not have`
}

function server(value: unknown, none: string): string {
  return value === null ? `no server (${none})` : plain(value)
}

function plain(value: unknown): string {
  return typeof value === 'string' ? value : shown(value)
}

/** A value short enough for one line: a list or an object is named, not printed. */
function shown(value: unknown): string {
  if (value === undefined) return 'missing'
  if (Array.isArray(value)) return `a list of ${value.length}`
  if (isRecord(value)) return 'an object'
  return JSON.stringify(value)
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value)
}
