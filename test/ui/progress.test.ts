/**
 * The progress bar on a terminal (stderr's isTTY set for the test: vitest's stderr is a pipe) and its
 * silence elsewhere: what `rebalance` shows while it moves copies (moves, bytes copied, ETA).
 */
import {afterEach, describe, expect, it, vi} from 'vitest'

import {startProgress} from '../../src/ui/progress.js'

function captureStderr(tty: boolean): {text: () => string} {
  let written = ''
  vi.spyOn(process.stderr, 'write').mockImplementation((chunk: string | Uint8Array) => {
    written += chunk.toString()
    return true
  })
  Object.defineProperty(process.stderr, 'isTTY', {value: tty, configurable: true})
  return {text: () => written}
}

afterEach(() => {
  vi.restoreAllMocks()
  Object.defineProperty(process.stderr, 'isTTY', {value: false, configurable: true})
})

describe('startProgress', () => {
  it('on a terminal shows the count, the total, the detail and the ETA', () => {
    const out = captureStderr(true)
    const bar = startProgress('Moving', {json: false, total: 10, unit: 'moves', eta: true, detail: true})
    bar.update(3, '1.2 kB copied')
    bar.stop()
    expect(out.text()).toMatch(/Moving \[.*\] 30% \| 3\/10 moves \| 1\.2 kB copied \| ETA/)
  })

  it('writes nothing under --json or without a terminal', () => {
    for (const [json, tty] of [
      [true, true],
      [false, false],
    ] as const) {
      const out = captureStderr(tty)
      const bar = startProgress('Moving', {json, total: 10, unit: 'moves', detail: true})
      bar.update(3, '1.2 kB copied')
      bar.stop()
      expect(out.text()).toBe('')
      vi.restoreAllMocks()
    }
  })
})
