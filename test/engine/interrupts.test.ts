import {EventEmitter} from 'node:events'

import {describe, expect, it, vi} from 'vitest'

import {watchInterrupts, type SignalSource, type StopReason} from '../../src/engine/interrupts.js'
import type {ClusterLock} from '../../src/store/store.js'

/** The process's signals, stood in for by an emitter: a test cannot send SIGINT to its own worker safely. */
function fakeProcess(): SignalSource & {emitter: EventEmitter; exits: number[]} {
  const emitter = new EventEmitter()
  const exits: number[] = []
  return {
    emitter,
    exits,
    on: (signal, listener) => emitter.on(signal, listener),
    off: (signal, listener) => emitter.off(signal, listener),
    exit: (code) => void exits.push(code),
  }
}

function fakeLock(): ClusterLock & {lose(error: Error): void} {
  let lose: (error: Error) => void = () => undefined
  const lost = new Promise<Error>((resolve) => (lose = resolve))
  return {
    holder: {host: 'h', pid: 1, command: 'test', since: new Date(0).toISOString()},
    lost,
    assertHeld: () => undefined,
    release: async () => undefined,
    lose: (error) => lose(error),
  }
}

describe('watchInterrupts', () => {
  it('asks the job to stop on the first signal and exits 130 on the second', async () => {
    const source = fakeProcess()
    const onStopping = vi.fn<(reason: StopReason) => void>()
    const onExit = vi.fn()
    const interrupts = watchInterrupts({source, onStopping, onExit})
    expect(interrupts.signal.aborted).toBe(false)

    source.emitter.emit('SIGINT')
    expect(interrupts.signal.aborted).toBe(true)
    expect(await interrupts.stopped).toEqual({kind: 'signal', signal: 'SIGINT'})
    expect(onStopping).toHaveBeenCalledTimes(1)
    expect(source.exits).toEqual([])

    source.emitter.emit('SIGTERM')
    expect(onExit).toHaveBeenCalledTimes(1)
    expect(source.exits).toEqual([130])
    interrupts.dispose()
  })

  it('stops the job when the cluster lock is lost, and keeps the lock error to report', async () => {
    const source = fakeProcess()
    const lock = fakeLock()
    const interrupts = watchInterrupts({source, lock})
    expect(interrupts.lockLost()).toBeUndefined()

    const error = new Error('Lost the cluster lock')
    lock.lose(error)
    expect(await interrupts.stopped).toEqual({kind: 'lock-lost', error})
    expect(interrupts.signal.aborted).toBe(true)
    expect(interrupts.lockLost()).toBe(error)
    // The lock lost is no signal: a first Ctrl-C after it does not kill the process.
    source.emitter.emit('SIGINT')
    expect(source.exits).toEqual([])
    interrupts.dispose()
  })

  it('keeps the lock error when a signal came first', async () => {
    const source = fakeProcess()
    const lock = fakeLock()
    const interrupts = watchInterrupts({source, lock})
    source.emitter.emit('SIGTERM')
    const error = new Error('Lost the cluster lock')
    lock.lose(error)
    await new Promise((resolve) => setImmediate(resolve))
    expect(await interrupts.stopped).toEqual({kind: 'signal', signal: 'SIGTERM'})
    expect(interrupts.lockLost()).toBe(error)
    interrupts.dispose()
  })

  it('stops listening once disposed', () => {
    const source = fakeProcess()
    const interrupts = watchInterrupts({source})
    expect(source.emitter.listenerCount('SIGINT')).toBe(1)
    expect(source.emitter.listenerCount('SIGTERM')).toBe(1)
    interrupts.dispose()
    expect(source.emitter.listenerCount('SIGINT')).toBe(0)
    expect(source.emitter.listenerCount('SIGTERM')).toBe(0)
    source.emitter.emit('SIGINT')
    expect(interrupts.signal.aborted).toBe(false)
  })
})
