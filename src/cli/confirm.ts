import {createInterface} from 'node:readline/promises'

import {MailringError} from '../core/errors.js'

/** Whether the operator can be asked: stdin and stderr are a terminal. */
export function canAsk(): boolean {
  return process.stdin.isTTY === true && process.stderr.isTTY === true
}

/** Asks on the terminal (stderr); only y or yes is yes, and so is nothing else (end of input included). */
export async function askYesNo(question: string): Promise<boolean> {
  const terminal = createInterface({input: process.stdin, output: process.stderr})
  try {
    const closed = new Promise<string>((resolve) => terminal.once('close', () => resolve('')))
    const answer = await Promise.race([terminal.question(`${question} [y/N] `), closed])
    return /^y(es)?$/i.test(answer.trim())
  } finally {
    terminal.close()
  }
}

/**
 * Asks before work that changes the cluster; `--yes` skips the question. Without a terminal to ask on (a
 * script, CI) and without --yes, refuses in one line: nothing is done unconfirmed.
 */
export async function confirmOrRefuse(
  question: string,
  options: {yes: boolean; what: string},
): Promise<void> {
  if (options.yes) return
  if (!canAsk())
    throw new MailringError(
      `${options.what} needs confirmation and there is no terminal to ask on: pass --yes to go ahead.`,
      {code: 'confirmation_required'},
    )
  if (!(await askYesNo(question)))
    throw new MailringError(`${options.what}: not confirmed; nothing was changed.`, {code: 'not_confirmed'})
}
