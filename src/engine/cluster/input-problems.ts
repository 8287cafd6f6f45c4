import {MailringError} from '../../core/errors.js'

/**
 * What all-or-nothing inputs (users import, adopt) share: a bad line stops the whole input, and the error
 * lists the bad lines so that one round of fixes is enough.
 */

/** Problems listed in an error message; the rest are counted. */
export const PROBLEMS_SHOWN = 20
/** Problems kept for --json output. */
export const PROBLEMS_KEPT = 1000

export interface InputProblem {
  /** Where the problem is: "FILE:LINE", or the table it came from. */
  where: string
  message: string
}

/**
 * The refusal of an input with problems (`total` of them; `problems` the first, in order): the problem
 * itself when there is one, else a line per problem (the first 20) and `summary` (e.g. "2 invalid lines
 * in users.txt"); both say that nothing was written and how to write the rest.
 */
export function inputRefused(
  problems: readonly InputProblem[],
  total: number,
  summary: string,
  words: {written: string; write: string; code: string},
): MailringError {
  const rest = `nothing ${words.written} (fix ${total === 1 ? 'it' : 'them'}, or pass --skip-invalid to ${words.write} the rest).`
  if (total === 1) {
    const only = problems[0]!
    return new MailringError(`${only.where}: ${only.message}: ${rest}`, {code: words.code})
  }
  const lines = problems.slice(0, PROBLEMS_SHOWN).map((p) => `${p.where}: ${p.message}`)
  if (total > PROBLEMS_SHOWN) lines.push(`... and ${total - PROBLEMS_SHOWN} more`)
  lines.push(`${summary}: ${rest}`)
  return new MailringError(lines.join('\n'), {code: words.code})
}
