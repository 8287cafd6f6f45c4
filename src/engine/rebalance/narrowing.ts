/** `rebalance --server/--user`: the moves that involve the named servers or users. */
import {MailringError} from '../../core/errors.js'
import type {PlanMove} from '../../core/plan.js'
import type {Store} from '../../store/store.js'
import type {PlanOutcome} from './plan.js'

export interface Narrowing {
  servers?: string[]
  users?: string[]
}

/**
 * The moves --server and --user keep (a move is kept when it involves any named server or user), after
 * checking that each name exists; undefined when neither is given.
 */
export async function narrowing(
  store: Store,
  outcome: PlanOutcome,
  names: Narrowing,
): Promise<((move: PlanMove) => boolean) | undefined> {
  const servers = new Set(names.servers ?? [])
  const users = new Set(names.users ?? [])
  if (servers.size === 0 && users.size === 0) return undefined
  const known = new Set(outcome.plan.servers)
  for (const server of servers)
    if (!known.has(server))
      throw new MailringError(`--server ${server}: no such server (mailring node list shows them).`, {
        code: 'unknown_server',
      })
  for (const user of users)
    if (!(await store.getUser(user)))
      throw new MailringError(`--user ${user}: no such user (mailring users list shows them).`, {
        code: 'unknown_user',
      })
  return (move) =>
    users.has(move.user) ||
    (move.from !== null && servers.has(move.from)) ||
    (move.to !== null && servers.has(move.to))
}

/** The named servers and users, for messages. */
export function narrowingText(names: Narrowing): string {
  return [...(names.servers ?? []), ...(names.users ?? [])].join(', ')
}
