import {Flags} from '@oclif/core'

import {MailringError} from '../core/errors.js'
import {SERVER_STATES, type ServerState} from '../core/topology.js'

/** Flags describing a server, shared by `node add` and `node set`. */
export const serverFlags = {
  address: Flags.string({summary: 'Host name or IP address where Dovecot listens.'}),
  zone: Flags.string({summary: 'Failure zone (rack, room, data centre); "" removes it.'}),
  weight: Flags.string({
    summary: 'Relative capacity (default 1): a server of weight 2 gets twice the copies.',
  }),
  state: Flags.string({summary: 'active, draining or down.', options: [...SERVER_STATES]}),
}

export function weightValue(text: string | undefined): number | undefined {
  if (text === undefined) return undefined
  const weight = Number(text)
  if (text.trim() === '' || !Number.isFinite(weight) || weight <= 0) {
    throw new MailringError(`--weight must be a positive number (got "${text}").`)
  }
  return weight
}

export function stateValue(text: string | undefined): ServerState | undefined {
  return text as ServerState | undefined
}
