/**
 * A SQLite store that this user may read but not write (e.g. the proxy passdb's checks run as dovecot):
 * every read works, a change is refused in one line that says so. Without write access to the folder SQLite
 * cannot keep its -wal and -shm files, so such a store may have to be read as an immutable file (see
 * openReadOnly), checked after every read for a writer that changed it meanwhile.
 */
import {accessSync, constants, existsSync, statSync} from 'node:fs'
import {userInfo} from 'node:os'
import {dirname} from 'node:path'

import Database from 'better-sqlite3'

import {ExitCode, MailringError} from '../core/errors.js'
import {sqliteGuard} from './sqlite-errors.js'

// A store that this user may read but not write is opened as a file: URI with ?immutable=1 when no other
// process has it open (see openReadOnly); SQLite takes such URIs only when told before its first connection.
process.env.SQLITE_USE_URI ??= '1'

/**
 * Whether this user may write `path` (an existing store: the file, and its folder for the -wal and -shm
 * files SQLite keeps beside it), or, with `isFolder`, create files in the folder `path`.
 */
export function mayWrite(path: string, isFolder = false): boolean {
  try {
    if (!isFolder) accessSync(path, constants.W_OK)
    accessSync(isFolder ? path : dirname(path), constants.W_OK | constants.X_OK)
    return true
  } catch {
    return false
  }
}

/** The folder of `path`, or its nearest ancestor that exists (init creates the folders in between). */
export function nearestFolder(path: string): string {
  let folder = dirname(path)
  while (!existsSync(folder) && dirname(folder) !== folder) folder = dirname(folder)
  return folder
}

/** This process's user, for messages. */
export function userName(): string {
  try {
    return `user ${userInfo().username}`
  } catch {
    return `user id ${process.getuid?.() ?? '?'}`
  }
}

/**
 * How a store that this user may only read is open. `signature` is set when SQLite reads the file as
 * immutable, without its -wal and -shm files (none exist, and the folder is not this user's to create
 * them), which holds only as long as nobody writes the file: it is the file as it was when opened, and is
 * checked after every read.
 */
export class ReadOnlyAccess {
  readonly location: string

  constructor(
    private readonly path: string,
    private readonly signature?: string,
  ) {
    this.location = `sqlite:${path}`
  }

  /**
   * sqliteGuard, and for this store: a write refused as one line that says so, and for an immutable read,
   * a refusal when the file changed while it was read.
   */
  guard<T>(work: () => T): T {
    let result: T
    try {
      result = work()
    } catch (error) {
      const code = (error as {code?: unknown}).code
      if (typeof code === 'string' && code.startsWith('SQLITE_READONLY')) throw this.readOnlyError(error)
      this.checkUnchanged()
      return sqliteGuard(this.location, () => {
        throw error
      })
    }
    this.checkUnchanged()
    return result
  }

  /** The refusal of a store that needs migrations this user may not write. */
  upgradeRefused(current: number, latest: number): MailringError {
    return new MailringError(
      `Store ${this.location} has schema ${current}, this mailring needs ${latest}, and ${userName()} may not write it: run \`mailring init\` once as a user who may, to upgrade it.`,
      {code: 'store_read_only', exitCode: ExitCode.store},
    )
  }

  private readOnlyError(cause: unknown): MailringError {
    return new MailringError(
      `Store ${this.location} is read-only for ${userName()}: run commands that change it as a user who may write ${this.path} and its folder ${dirname(this.path)} (its owner), or give ${userName()} write access to both.`,
      {code: 'store_read_only', exitCode: ExitCode.store, cause},
    )
  }

  private checkUnchanged(): void {
    if (this.signature === undefined || fileSignature(this.path) === this.signature) return
    throw new MailringError(
      `Store ${this.location} was written by another process while this one read it (read only, without a lock): run the command again.`,
      {code: 'store_changed', exitCode: ExitCode.store},
    )
  }
}

/**
 * Opens a store that this user may read but not write. While another process has it open, its -wal and
 * -shm files exist and SQLite reads through them as usual. Otherwise SQLite cannot read a WAL database
 * without creating them, which the folder does not allow: it reads the file as immutable, without locks,
 * and every read checks that the file has not changed since (a writer that starts meanwhile changes it
 * only when it checkpoints).
 */
export function openReadOnly(path: string): {db: Database.Database; access: ReadOnlyAccess} {
  if (existsSync(`${path}-wal`)) {
    const db = sqliteGuard(path, () => new Database(path, {readonly: true, fileMustExist: true}))
    try {
      db.prepare('SELECT count(*) FROM sqlite_master').get()
      return {db, access: new ReadOnlyAccess(path)}
    } catch {
      // The writer closed the store meanwhile and took its -wal file with it: read the file as it is.
      db.close()
    }
  }
  const signature = fileSignature(path)
  const uri = `file:${path.replace(/[%?#]/g, (c) => `%${c.charCodeAt(0).toString(16)}`)}?immutable=1`
  const db = sqliteGuard(path, () => new Database(uri, {readonly: true, fileMustExist: true}))
  return {db, access: new ReadOnlyAccess(path, signature)}
}

/** What changes when a file is written: its identity, size and times. */
function fileSignature(path: string): string {
  const stat = statSync(path, {bigint: true})
  return `${stat.dev}:${stat.ino}:${stat.size}:${stat.mtimeNs}:${stat.ctimeNs}`
}
