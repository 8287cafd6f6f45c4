import * as Flags from '@oclif/core/flags'

import {MailringError} from '../core/errors.js'
import {SERVER_STATES, type ServerState} from '../core/topology.js'
import {serverAddressProblem, serverNameProblem, weightProblem} from '../core/validate.js'

/** Flags describing a server, shared by `node add` and `node set`. */
export const serverFlags = {
  address: Flags.string({summary: 'Host name or IP address where Dovecot listens.'}),
  zone: Flags.string({summary: 'Failure zone (rack, room, data centre); "" removes it.'}),
  weight: Flags.string({
    summary: 'Relative capacity (default 1): a server of weight 2 gets twice the copies.',
  }),
  state: Flags.string({summary: 'active, draining or down.', options: [...SERVER_STATES]}),
}

/**
 * The server name, --address and --weight as given, checked before the store is opened: every problem in
 * one line, each naming the value (the wording of src/core/validate.ts, as for a topology file).
 */
export function checkedServerFlags(input: {name?: string; address?: string; weight?: string}): {
  weight?: number
} {
  const problems: string[] = []
  if (input.name !== undefined) {
    const problem = serverNameProblem(input.name)
    if (problem) problems.push(problem)
  }
  if (input.address !== undefined) {
    const problem = serverAddressProblem(input.address)
    if (problem) problems.push(`--address ${problem}`)
  }
  let weight: number | undefined
  if (input.weight !== undefined) {
    weight = input.weight.trim() === '' ? Number.NaN : Number(input.weight)
    const problem = weightProblem(weight, JSON.stringify(input.weight))
    if (problem) problems.push(`--weight ${problem}`)
  }
  if (problems.length > 0) {
    const line = problems.join('; ')
    throw new MailringError(`${line.charAt(0).toUpperCase()}${line.slice(1)}.`)
  }
  return weight === undefined ? {} : {weight}
}

export function stateValue(text: string | undefined): ServerState | undefined {
  return text as ServerState | undefined
}
