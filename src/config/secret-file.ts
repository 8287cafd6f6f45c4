import {readFileSync, statSync} from 'node:fs'

import {ExitCode, MailringError} from '../core/errors.js'

/**
 * The first line of a password file that only its owner can read. Passwords come from such files or the
 * environment, never from the command line (argv is visible to every user of the machine).
 */
export function readPasswordFile(path: string, exitCode: number = ExitCode.error): string {
  const fail = (message: string) => new MailringError(message, {code: 'password_file', exitCode})
  let mode: number
  try {
    mode = statSync(path).mode
  } catch (error) {
    const reason =
      (error as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file' : (error as Error).message
    throw fail(`Cannot read the password file ${path}: ${reason}.`)
  }
  if ((mode & 0o077) !== 0) {
    throw fail(
      `The password file ${path} is readable by group or others (mode ${(mode & 0o777).toString(8)}): run \`chmod 600 ${path}\`.`,
    )
  }
  let text: string
  try {
    text = readFileSync(path, 'utf8')
  } catch (error) {
    throw fail(`Cannot read the password file ${path}: ${(error as Error).message}.`)
  }
  const line = text.split(/\r?\n/)[0] ?? ''
  if (line === '') throw fail(`The password file ${path} is empty: write the password on its first line.`)
  return line
}
