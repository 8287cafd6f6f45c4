import {formatDuration} from '../core/duration.js'
import type {ClusterLock, Store} from '../store/store.js'
import {describeHolder, LockedError, lockedError} from '../store/lock.js'

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
