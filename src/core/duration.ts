import {MailringError} from './errors.js'

const UNITS: Record<string, number> = {s: 1_000, m: 60_000, h: 3_600_000, d: 86_400_000, w: 604_800_000}

/** A duration such as 30s, 5m, 12h, 7d or 2w, in milliseconds; `flag` names the flag in the error. */
export function parseDuration(text: string, flag: string): number {
  const match = /^(\d+(?:\.\d+)?)\s*([smhdw])$/.exec(text.trim())
  if (!match)
    throw new MailringError(`${flag} "${text}" is not a duration: use e.g. 30s, 5m, 12h, 7d or 2w.`, {
      code: 'bad_duration',
    })
  return Number(match[1]) * UNITS[match[2]!]!
}
