import {hostname} from 'node:os'

import {formatDuration} from '../core/duration.js'
import {ExitCode, MailringError} from '../core/errors.js'
import type {ClusterLock, LockHolder, Store} from '../store/store.js'
import {describeHolder, LockedError, lockedError, processAlive} from '../store/aggregates/lock.js'

export interface ClusterLockOptions {
  /** Wait up to this long (ms) for a lock another process holds, instead of failing at once (--wait). */
  waitMs?: number
  /** Hears once, before waiting, who holds the lock. */
  onWaiting?: (message: string) => void
  /** Hears about a lock taken over from a process that no longer runs. */
  onStale?: (message: string) => void
}

/**
 * Runs `work` holding the cluster lock, which every change of placements takes; releases it whatever
 * happens. With `waitMs`, waits for a lock another process holds (see acquireClusterLock).
 */
export async function withClusterLock<T>(
  store: Store,
  command: string,
  work: (lock: ClusterLock) => Promise<T>,
  options: ClusterLockOptions = {},
): Promise<T> {
  const lock = await acquireClusterLock(store, command, options)
  if (lock.replacedStale && options.onStale) {
    options.onStale(
      `took over the cluster lock left by ${describeHolder(lock.replacedStale)}, which no longer runs`,
    )
  }
  try {
    return await work(lock)
  } finally {
    await lock.release()
  }
}

/** First pause between two tries for a taken lock; each next one is longer, up to MAX_POLL_MS. */
const FIRST_POLL_MS = 100
const MAX_POLL_MS = 2_000

/**
 * Takes the cluster lock. Taken by another process: fails at once, or with `waitMs` tries again with
 * back-off (100 ms growing to 2 s, never past the deadline) and, when the time is up, fails with the
 * locked error naming the holder then (exit code 3).
 */
export async function acquireClusterLock(
  store: Store,
  command: string,
  options: ClusterLockOptions = {},
): Promise<ClusterLock> {
  const waitMs = options.waitMs ?? 0
  const deadline = Date.now() + waitMs
  for (let pause = FIRST_POLL_MS; ; pause = Math.min(MAX_POLL_MS, pause * 1.6)) {
    try {
      return await store.acquireLock(command)
    } catch (error) {
      if (!(error instanceof LockedError)) throw error
      const left = deadline - Date.now()
      if (left <= 0) throw waitMs > 0 && error.holder ? lockedError(error.holder, waitMs) : error
      if (pause === FIRST_POLL_MS && error.holder)
        options.onWaiting?.(
          `Waiting up to ${formatDuration(waitMs)} for the cluster lock of ${describeHolder(error.holder)}`,
        )
      // A little jitter, so that processes waiting for one lock do not all try at once.
      await new Promise((resolve) => setTimeout(resolve, Math.min(left, pause * (0.8 + Math.random() * 0.4))))
    }
  }
}

/** Whether the holder's process runs: known only on the holder's own host. */
export type HolderRuns = 'yes' | 'no' | 'unknown'

export interface LockState {
  holder: LockHolder
  runs: HolderRuns
}

/** Who holds the cluster lock, and whether its process still runs; undefined when no one does. */
export async function readClusterLock(store: Store): Promise<LockState | undefined> {
  const holder = await store.lockHolder()
  if (!holder) return undefined
  const runs = holder.host !== hostname() ? 'unknown' : processAlive(holder.pid) ? 'yes' : 'no'
  return {holder, runs}
}

/** The holder and what is known of its process, for messages. */
export function describeLockState(state: LockState): string {
  const runs = {
    yes: 'which still runs',
    no: 'which no longer runs',
    unknown: 'a process on another host: whether it still runs cannot be checked from here',
  }[state.runs]
  return `${describeHolder(state.holder)}, ${runs}`
}

/**
 * Breaks the lock `state` names (`mailring unlock`) if that holder still holds it: 'unlocked', or
 * 'released' when its holder freed it meanwhile. Refuses (exit code 3) a holder that still runs on this
 * host (it is stopped, not unlocked) and a lock that another process took meanwhile.
 */
export async function breakClusterLock(store: Store, state: LockState): Promise<'unlocked' | 'released'> {
  checkBreakable(state)
  if (await store.breakLock(state.holder)) return 'unlocked'
  const now = await store.lockHolder()
  if (!now) return 'released'
  throw new MailringError(
    `Not unlocked: the cluster lock changed hands meanwhile and is held by ${describeHolder(now)} now: run unlock again to see it.`,
    {code: 'locked', exitCode: ExitCode.locked},
  )
}

/** Refuses to break the lock of a process that still runs on this host. */
export function checkBreakable(state: LockState): void {
  if (state.runs === 'yes') {
    throw new MailringError(
      `Not unlocked: ${describeHolder(state.holder)} still runs on this host: let it finish, or stop it (kill ${state.holder.pid}), which frees its lock.`,
      {code: 'locked', exitCode: ExitCode.locked},
    )
  }
}
