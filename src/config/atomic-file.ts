import {renameSync, rmSync, writeFileSync} from 'node:fs'
import {basename, dirname, join} from 'node:path'

import {MailringError} from '../core/errors.js'

/** Writes through a temporary file renamed into place: readers see the old file or the new, never half. */
export function writeFileAtomically(path: string, text: string): void {
  const temporary = join(dirname(path), `.${basename(path)}.${process.pid}.tmp`)
  try {
    writeFileSync(temporary, text)
    renameSync(temporary, path)
  } catch (error) {
    rmSync(temporary, {force: true})
    throw new MailringError(`Cannot write ${path}: ${(error as Error).message}.`, {cause: error})
  }
}
