import {createInterface} from 'node:readline/promises'

import {MailringError} from '../core/errors.js'

/**
 * Asks a yes/no question on the terminal before work that changes the cluster; `--yes` skips it. Without a
 * terminal to ask on (a script, CI) and without --yes, refuses in one line: nothing is done unconfirmed.
 */
export async function confirmOrRefuse(
  question: string,
  options: {yes: boolean; what: string},
): Promise<void> {
  if (options.yes) return
  if (process.stdin.isTTY !== true || process.stderr.isTTY !== true)
    throw new MailringError(
      `${options.what} needs confirmation and there is no terminal to ask on: pass --yes to go ahead.`,
      {code: 'confirmation_required'},
    )
  const rl = createInterface({input: process.stdin, output: process.stderr})
  try {
    const answer = (await rl.question(`${question} [y/N] `)).trim().toLowerCase()
    if (answer !== 'y' && answer !== 'yes')
      throw new MailringError(`${options.what}: not confirmed; nothing was changed.`, {code: 'not_confirmed'})
  } finally {
    rl.close()
  }
}
