import {createInterface} from 'node:readline/promises'

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
