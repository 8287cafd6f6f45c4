import type {ClusterLock, Store} from '../store/store.js'
import {describeHolder} from '../store/lock.js'

/**
 * Runs `work` holding the cluster lock, which every change of placements takes; releases it whatever
 * happens. `onStale` hears about a lock taken over from a process that no longer runs.
 */
export async function withClusterLock<T>(
  store: Store,
  command: string,
  work: (lock: ClusterLock) => Promise<T>,
  onStale?: (message: string) => void,
): Promise<T> {
  const lock = await store.acquireLock(command)
  if (lock.replacedStale && onStale) {
    onStale(`took over the cluster lock left by ${describeHolder(lock.replacedStale)}, which no longer runs`)
  }
  try {
    return await work(lock)
  } finally {
    await lock.release()
  }
}
