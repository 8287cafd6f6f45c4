/**
 * How every long-running job stops, one way for all (`rebalance`, `replicator run`, ...):
 *   - the first SIGINT or SIGTERM asks it to stop: no new work starts, what is in flight finishes;
 *   - a second one stops the process at once (exit 130): the job's journal or queue keeps what was left;
 *   - the cluster lock lost (its connection broke, or `mailring unlock`) stops it as the first signal does,
 *     and the job then fails with the lock's error (exit code 3).
 */
import type {ClusterLock} from '../store/store.js'

export type StopReason = {kind: 'signal'; signal: NodeJS.Signals} | {kind: 'lock-lost'; error: Error}

/** What the watch listens on and how it leaves; the process by default (tests pass their own). */
export interface SignalSource {
  on(signal: NodeJS.Signals, listener: () => void): unknown
  off(signal: NodeJS.Signals, listener: () => void): unknown
  exit(code: number): void
}

export interface InterruptOptions {
  /** Stop when this lock is lost, too. */
  lock?: ClusterLock
  /** Hears the first request to stop (to say what happens now). */
  onStopping?: (reason: StopReason) => void
  /** Hears the second signal, just before the process exits (to say how to resume). */
  onExit?: () => void
  source?: SignalSource
}

export interface Interrupts {
  /** Aborted on the first signal or when the lock is lost: pass it to the job. */
  readonly signal: AbortSignal
  /** Settles with the first reason to stop; stays pending while nothing asks. */
  readonly stopped: Promise<StopReason>
  /** The lock's error once the lock is lost, else undefined. */
  lockLost(): Error | undefined
  /** Stops listening (call it when the job is over). */
  dispose(): void
}

const SIGNALS: NodeJS.Signals[] = ['SIGINT', 'SIGTERM']

export function watchInterrupts(options: InterruptOptions = {}): Interrupts {
  const source: SignalSource = options.source ?? {
    on: (s, l) => process.on(s, l),
    off: (s, l) => process.off(s, l),
    exit: (code) => process.exit(code),
  }
  const controller = new AbortController()
  let lost: Error | undefined
  let disposed = false
  let resolveStopped: (reason: StopReason) => void = () => undefined
  const stopped = new Promise<StopReason>((resolve) => (resolveStopped = resolve))

  const stop = (reason: StopReason) => {
    if (controller.signal.aborted) return
    controller.abort()
    options.onStopping?.(reason)
    resolveStopped(reason)
  }
  let signals = 0
  const listeners = SIGNALS.map((signal) => {
    const listener = () => {
      signals++
      if (signals > 1) {
        options.onExit?.()
        source.exit(130)
        return
      }
      stop({kind: 'signal', signal})
    }
    source.on(signal, listener)
    return {signal, listener}
  })
  void options.lock?.lost.then((error) => {
    if (disposed) return
    lost = error
    stop({kind: 'lock-lost', error})
  })

  return {
    signal: controller.signal,
    stopped,
    lockLost: () => lost,
    dispose: () => {
      disposed = true
      for (const {signal, listener} of listeners) source.off(signal, listener)
    },
  }
}
