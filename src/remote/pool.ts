/**
 * Running work over many servers with a concurrency limit (`--parallel N`), and a counting semaphore that
 * bounds concurrent use of one resource (e.g. the channels of one SSH connection). Generic: SSH steps today,
 * doveadm calls later.
 */

/** A counting semaphore; waiters are served first come, first served. */
export class Semaphore {
  private available: number
  private readonly waiters: Array<() => void> = []

  constructor(readonly size: number) {
    if (!Number.isInteger(size) || size < 1)
      throw new RangeError(`Semaphore size must be a positive integer, not ${size}`)
    this.available = size
  }

  /** Resolves with a release function once a permit is free. Call release exactly once. */
  acquire(): Promise<() => void> {
    return new Promise((resolve) => {
      const grant = () => {
        let released = false
        resolve(() => {
          if (released) return
          released = true
          const next = this.waiters.shift()
          if (next) next()
          else this.available++
        })
      }
      if (this.available > 0) {
        this.available--
        grant()
      } else {
        this.waiters.push(grant)
      }
    })
  }

  async run<T>(fn: () => Promise<T>): Promise<T> {
    const release = await this.acquire()
    try {
      return await fn()
    } finally {
      release()
    }
  }

  /** Permits in use. */
  get active(): number {
    return this.size - this.available
  }

  /** Callers waiting for a permit. */
  get waiting(): number {
    return this.waiters.length
  }
}

export type ServerResult<S, T> =
  | {server: S; status: 'ok'; value: T}
  | {server: S; status: 'failed'; error: unknown}
  /** Not started because an earlier server failed (without continueOnError) or the run was aborted. */
  | {server: S; status: 'skipped'}

export interface RunOptions<S, T> {
  /** How many servers are worked on at once; default 1. */
  parallel?: number
  /** Keep starting servers after one failed; default false: stop starting new ones at the first failure. */
  continueOnError?: boolean
  /** Aborting stops starting new servers (running ones get the signal too and may stop early). */
  signal?: AbortSignal
  /** Called as each server finishes, for progress output. */
  onResult?: (result: ServerResult<S, T>) => void
}

/**
 * Runs `task` once per server, at most `parallel` at a time, and returns one result per server in the order
 * of `servers`. Never rejects for a task's failure: failures are results. At the first failure (unless
 * continueOnError) servers not yet started are skipped; tasks already running finish, and see `signal`
 * aborted so that they can stop at a safe point.
 */
export async function runPerServer<S, T>(
  servers: readonly S[],
  task: (server: S, signal: AbortSignal) => Promise<T>,
  options: RunOptions<S, T> = {},
): Promise<ServerResult<S, T>[]> {
  const parallel = options.parallel ?? 1
  if (!Number.isInteger(parallel) || parallel < 1)
    throw new RangeError(`parallel must be a positive integer, not ${parallel}`)
  const stop = new AbortController()
  const onOuterAbort = () => stop.abort(options.signal?.reason)
  if (options.signal?.aborted) onOuterAbort()
  else options.signal?.addEventListener('abort', onOuterAbort, {once: true})

  const results: ServerResult<S, T>[] = servers.map((server) => ({server, status: 'skipped'}))
  let next = 0
  const worker = async (): Promise<void> => {
    while (next < servers.length && !stop.signal.aborted) {
      const index = next++
      const server = servers[index] as S
      let result: ServerResult<S, T>
      try {
        result = {server, status: 'ok', value: await task(server, stop.signal)}
      } catch (error) {
        result = {server, status: 'failed', error}
        if (!options.continueOnError) stop.abort(error)
      }
      results[index] = result
      options.onResult?.(result)
    }
  }
  try {
    await Promise.all(Array.from({length: Math.min(parallel, servers.length)}, worker))
  } finally {
    options.signal?.removeEventListener('abort', onOuterAbort)
  }
  return results
}

/** The failures of a run, for a summary or an exit code. */
export function failures<S, T>(results: readonly ServerResult<S, T>[]): Array<{server: S; error: unknown}> {
  return results.flatMap((r) => (r.status === 'failed' ? [{server: r.server, error: r.error}] : []))
}
