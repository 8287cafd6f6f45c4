import {describe, expect, it} from 'vitest'

import {failures, runPerServer, Semaphore} from '../../src/remote/pool.js'

const tick = (ms = 5) => new Promise((resolve) => setTimeout(resolve, ms))

describe('Semaphore', () => {
  it('never lets more than `size` holders in, and serves waiters in order', async () => {
    const sem = new Semaphore(2)
    let inside = 0
    let most = 0
    const order: number[] = []
    await Promise.all(
      Array.from({length: 8}, (_, i) =>
        sem.run(async () => {
          order.push(i)
          inside++
          most = Math.max(most, inside)
          await tick()
          inside--
        }),
      ),
    )
    expect(most).toBe(2)
    expect(order).toEqual([0, 1, 2, 3, 4, 5, 6, 7])
    expect(sem.active).toBe(0)
    expect(sem.waiting).toBe(0)
  })

  it('releases on failure and ignores a second release', async () => {
    const sem = new Semaphore(1)
    await expect(sem.run(() => Promise.reject(new Error('boom')))).rejects.toThrow('boom')
    const release = await sem.acquire()
    release()
    release()
    expect(sem.active).toBe(0)
    expect(() => new Semaphore(0)).toThrow(RangeError)
  })
})

describe('runPerServer', () => {
  it('runs at most `parallel` tasks at once and returns results in input order', async () => {
    let inside = 0
    let most = 0
    const servers = ['a', 'b', 'c', 'd', 'e', 'f', 'g']
    const results = await runPerServer(
      servers,
      async (s) => {
        inside++
        most = Math.max(most, inside)
        await tick(s === 'a' ? 30 : 5) // 'a' finishes last
        inside--
        return s.toUpperCase()
      },
      {parallel: 3},
    )
    expect(most).toBe(3)
    expect(results).toEqual(servers.map((s) => ({server: s, status: 'ok', value: s.toUpperCase()})))
  })

  it('runs one at a time by default', async () => {
    let inside = 0
    let most = 0
    await runPerServer([1, 2, 3], async () => {
      most = Math.max(most, ++inside)
      await tick()
      inside--
    })
    expect(most).toBe(1)
  })

  it('stops starting servers at the first failure; running ones finish and see the abort', async () => {
    const started: string[] = []
    let sawAbort = false
    const results = await runPerServer(
      ['ok1', 'slow', 'bad', 'never1', 'never2'],
      async (s, signal) => {
        started.push(s)
        if (s === 'bad') throw new Error('bad failed')
        if (s === 'slow') {
          await tick(30)
          sawAbort = signal.aborted
        }
        return s
      },
      {parallel: 2},
    )
    expect(started).toEqual(['ok1', 'slow', 'bad'])
    expect(sawAbort).toBe(true)
    expect(results.map((r) => r.status)).toEqual(['ok', 'ok', 'failed', 'skipped', 'skipped'])
    expect(failures(results)).toEqual([{server: 'bad', error: new Error('bad failed')}])
  })

  it('with continueOnError, runs every server and reports each failure', async () => {
    const seen: string[] = []
    const results = await runPerServer(
      ['a', 'b', 'c', 'd'],
      async (s) => {
        if (s === 'a' || s === 'c') throw new Error(`${s} failed`)
        return s
      },
      {parallel: 2, continueOnError: true, onResult: (r) => seen.push(`${r.server}:${r.status}`)},
    )
    expect(results.map((r) => r.status)).toEqual(['failed', 'ok', 'failed', 'ok'])
    expect(seen.sort()).toEqual(['a:failed', 'b:ok', 'c:failed', 'd:ok'])
  })

  it('stops starting servers when the caller aborts', async () => {
    const controller = new AbortController()
    const results = await runPerServer(
      [1, 2, 3],
      async (n) => {
        if (n === 1) controller.abort()
        return n
      },
      {signal: controller.signal},
    )
    expect(results.map((r) => r.status)).toEqual(['ok', 'skipped', 'skipped'])
  })

  it('handles an empty list and rejects a bad parallel value', async () => {
    expect(await runPerServer([], async () => 1)).toEqual([])
    await expect(runPerServer([1], async () => 1, {parallel: 0})).rejects.toThrow(RangeError)
  })
})
