import {MailringError} from './errors.js'

/** Milliseconds per unit of a duration as operators write it. */
const UNIT_MS = {ms: 1, s: 1_000, m: 60_000, h: 3_600_000, d: 86_400_000, w: 604_800_000} as const

const DURATION = /^(?:\d+(?:\.\d+)?(?:ms|s|m|h|d|w))+$/
const PART = /(\d+(?:\.\d+)?)(ms|s|m|h|d|w)/g

/**
 * A duration such as 30s, 5m, 1h, 7d, 2w, 500ms or 1m30s, in milliseconds; a bad value is refused naming the flag,
 * e.g. `--wait "5x" is not a duration: use e.g. 30s, 5m or 1h`.
 */
export function parseDuration(text: string, flag: string): number {
  if (!DURATION.test(text)) {
    throw new MailringError(`${flag} "${text}" is not a duration: use e.g. 30s, 5m or 1h`, {
      code: 'invalid_duration',
    })
  }
  let ms = 0
  for (const [, amount, unit] of text.matchAll(PART))
    ms += Number(amount) * UNIT_MS[unit as keyof typeof UNIT_MS]
  return Math.round(ms)
}

/** A duration for messages: 1h2m, 5m, 30s, 1.5s, 200ms. */
export function formatDuration(ms: number): string {
  if (ms < 1_000) return `${Math.round(ms)}ms`
  if (ms < 60_000) return `${Math.round(ms / 100) / 10}s`
  const seconds = Math.round(ms / 1_000)
  const parts = [
    [Math.floor(seconds / 3_600), 'h'],
    [Math.floor(seconds / 60) % 60, 'm'],
    [seconds % 60, 's'],
  ] as const
  return parts
    .filter(([amount]) => amount > 0)
    .map(([amount, unit]) => `${amount}${unit}`)
    .join('')
}
