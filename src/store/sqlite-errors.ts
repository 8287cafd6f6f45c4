/** SQLite's errors as the store's one-line errors (exit code 4). */
import Database from 'better-sqlite3'

import {ExitCode, MailringError} from '../core/errors.js'
import {Rollback} from './aggregates/users.js'

/** Runs `work`, turning SQLite's errors into one-line store errors; mailring's own errors pass through. */
export function sqliteGuard<T>(location: string, work: () => T): T {
  try {
    return work()
  } catch (error) {
    if (error instanceof MailringError || error instanceof Rollback) throw error
    if (!(error instanceof Database.SqliteError) && (error as NodeJS.ErrnoException).code === undefined)
      throw error
    const code = (error as {code?: string}).code ?? ''
    const reason =
      code === 'SQLITE_BUSY'
        ? 'the database is busy: another process kept it locked for too long; try again'
        : code === 'SQLITE_NOTADB'
          ? 'not a SQLite database'
          : code === 'SQLITE_READONLY'
            ? 'the database is read-only'
            : code === 'SQLITE_CORRUPT'
              ? 'the database file is corrupt'
              : (error as Error).message
    throw new MailringError(`Store ${location}: ${reason}.`, {
      code: 'store',
      exitCode: ExitCode.store,
      cause: error,
    })
  }
}
