import {describe, expect, it} from 'vitest'

import {MailringError} from '../../src/core/errors.js'
import {formatDuration, parseDuration} from '../../src/core/duration.js'

describe('durations on the command line', () => {
  it.each([
    ['30s', 30_000],
    ['5m', 300_000],
    ['1h', 3_600_000],
    ['500ms', 500],
    ['1m30s', 90_000],
    ['1.5s', 1_500],
    ['0s', 0],
    ['7d', 7 * 86_400_000],
    ['2w', 14 * 86_400_000],
  ])('%s is %i ms', (text, ms) => {
    expect(parseDuration(text, '--wait')).toBe(ms)
  })

  it.each(['5x', '', '30', 's', '-5s', '5 m', ' 5m', '5m ', '1.s', 'five minutes', '5M'])(
    'refuses "%s" in one line naming the flag',
    (text) => {
      const refuse = (): number => parseDuration(text, '--wait')
      expect(refuse).toThrow(MailringError)
      expect(refuse).toThrow(`--wait "${text}" is not a duration: use e.g. 30s, 5m or 1h`)
    },
  )

  it('reads back in messages as operators write it', () => {
    expect(formatDuration(200)).toBe('200ms')
    expect(formatDuration(1_500)).toBe('1.5s')
    expect(formatDuration(30_000)).toBe('30s')
    expect(formatDuration(90_000)).toBe('1m30s')
    expect(formatDuration(300_000)).toBe('5m')
    expect(formatDuration(3_720_000)).toBe('1h2m')
  })
})
