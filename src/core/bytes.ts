/** Byte counts and rates as operators write and read them. */
import {MailringError} from './errors.js'

/**
 * Bytes per unit, as rsync's --bwlimit reads them: K, M, G and KiB, MiB, GiB are powers of 1024; KB, MB, GB
 * powers of 1000.
 */
const UNITS: Record<string, number> = {
  b: 1,
  k: 1024,
  kib: 1024,
  kb: 1000,
  m: 1024 ** 2,
  mib: 1024 ** 2,
  mb: 1000 ** 2,
  g: 1024 ** 3,
  gib: 1024 ** 3,
  gb: 1000 ** 3,
}

const RATE = /^(\d+(?:\.\d+)?)\s*([a-z]+)(?:\/s)?$/i

/**
 * A rate such as 20MB/s, 500K or 1.5GiB/s, in bytes per second. A bare number is refused: rsync reads one as
 * KiB, others as bytes, and a limit off by 1024 times is worse than an error.
 */
export function parseByteRate(text: string, flag: string): number {
  const match = RATE.exec(text.trim())
  const unit = match ? UNITS[match[2]!.toLowerCase()] : undefined
  const bytes = match && unit !== undefined ? Number(match[1]) * unit : NaN
  if (!(bytes >= 1))
    throw new MailringError(
      `${flag} "${text}" is not a rate: use a number and a unit, e.g. 20MB/s, 500KB/s or 1GiB/s`,
      {code: 'invalid_rate'},
    )
  return Math.round(bytes)
}

/** A byte count for people, in powers of 1000: 0 B, 950 B, 12.3 kB, 4.1 MB, 2.0 GB. */
export function formatBytes(bytes: number): string {
  const units = ['B', 'kB', 'MB', 'GB', 'TB']
  let value = bytes
  let unit = 0
  while (value >= 1000 && unit < units.length - 1) {
    value /= 1000
    unit++
  }
  return unit === 0 ? `${Math.round(value)} B` : `${value.toFixed(1)} ${units[unit]}`
}
