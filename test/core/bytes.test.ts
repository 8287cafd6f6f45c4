import {describe, expect, it} from 'vitest'

import {formatBytes, parseByteRate} from '../../src/core/bytes.js'
import {MailringError} from '../../src/core/errors.js'

describe('parseByteRate', () => {
  it('reads the units as rsync does: K, M, G and KiB, MiB, GiB in 1024s; KB, MB, GB in 1000s', () => {
    expect(parseByteRate('50MB/s', '--bwlimit')).toBe(50_000_000)
    expect(parseByteRate('50M', '--bwlimit')).toBe(50 * 1024 * 1024)
    expect(parseByteRate('1.5GiB/s', '--bwlimit')).toBe(Math.round(1.5 * 1024 ** 3))
    expect(parseByteRate('500kb/s', '--bwlimit')).toBe(500_000)
    expect(parseByteRate('800K', '--bwlimit')).toBe(800 * 1024)
    expect(parseByteRate('4000B/s', '--bwlimit')).toBe(4000)
  })

  it('refuses a bare number, an unknown unit and zero, naming the flag and an example', () => {
    for (const bad of ['50', '50XB/s', '0MB/s', 'fast', '-1M', ''])
      expect(() => parseByteRate(bad, '--bwlimit'), bad).toThrow(
        new MailringError(
          `--bwlimit "${bad}" is not a rate: use a number and a unit, e.g. 20MB/s, 500KB/s or 1GiB/s`,
          {code: 'invalid_rate'},
        ),
      )
  })
})

describe('formatBytes', () => {
  it('writes powers of 1000 with one decimal past bytes', () => {
    expect(formatBytes(0)).toBe('0 B')
    expect(formatBytes(999)).toBe('999 B')
    expect(formatBytes(12_345)).toBe('12.3 kB')
    expect(formatBytes(4_100_000)).toBe('4.1 MB')
    expect(formatBytes(2e12)).toBe('2.0 TB')
  })
})
