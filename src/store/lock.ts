import {hostname} from 'node:os'

import {formatDuration} from '../core/duration.js'
import {ExitCode, MailringError} from '../core/errors.js'
import type {LockHolder} from './store.js'

/** Whether a process with this pid runs on this host (EPERM: it runs, as another user). */
export function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM'
  }
}

/** This process, taking the cluster lock now for `command`. */
export function holderNow(command: string): LockHolder {
  return {pid: process.pid, host: hostname(), command, since: new Date().toISOString()}
}

export function describeHolder(holder: LockHolder): string {
  return `"mailring ${holder.command}" (pid ${holder.pid} on ${holder.host}, since ${holder.since})`
}

/** Whether two records name the same holder (compare-and-delete of `mailring unlock`). */
export function sameHolder(a: LockHolder, b: LockHolder): boolean {
  return a.pid === b.pid && a.host === b.host && a.command === b.command && a.since === b.since
}

/** The cluster lock is taken: the one-line error of every store, which keeps the holder for callers that wait. */
export class LockedError extends MailringError {
  constructor(
    message: string,
    /** Unknown while another process is just taking or releasing the lock. */
    readonly holder?: LockHolder,
  ) {
    super(message, {code: 'locked', exitCode: ExitCode.locked})
  }
}

/** The error when `holder` has the lock; `waitedMs`: after waiting that long for it (--wait). */
export function lockedError(holder: LockHolder, waitedMs?: number): LockedError {
  // A holder on this host that no longer runs is taken over at once: only one elsewhere may need unlock.
  const gone = holder.host === hostname() ? '' : '; if it no longer runs, `mailring unlock` frees the lock'
  return new LockedError(
    waitedMs === undefined
      ? `The cluster is locked by ${describeHolder(holder)}: wait for it to finish and try again (--wait 5m waits for it)${gone}.`
      : `The cluster is still locked by ${describeHolder(holder)} after waiting ${formatDuration(waitedMs)}: try again later${gone}.`,
    holder,
  )
}

/** The error of a holder whose lock another process broke with `mailring unlock`. */
export function lockBrokenError(holder: LockHolder): MailringError {
  return new MailringError(
    `Lost the cluster lock of ${describeHolder(holder)}: \`mailring unlock\` broke it; stopped before writing anything more. Run the command again.`,
    {code: 'lock_lost', exitCode: ExitCode.locked},
  )
}
