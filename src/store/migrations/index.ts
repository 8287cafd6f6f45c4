import {ExitCode, MailringError} from '../../core/errors.js'

/**
 * Versioned schema migrations. Each store dialect keeps its own list with the same version numbers and
 * meaning, so that a SQLite and a MySQL store at version N hold the same data. The version lives in the
 * meta table (key schema_version). Migrations only ever get appended; a released one never changes.
 *
 * Version 3 is the move journal, 4 where retired copies went, 5 the replicator's tables: the replication
 * queue, server health, replication markers and proxy/director hosts (docs/decisions/0004-replicator.md),
 * 6 moves without a `from` or a `to` (copies added or dropped).
 */
export interface Migration {
  version: number
  description: string
  statements: readonly string[]
}

/** The highest version in `migrations`, after checking that they are numbered 1, 2, 3... */
export function latestVersion(migrations: readonly Migration[]): number {
  migrations.forEach((migration, i) => {
    if (migration.version !== i + 1) throw new Error(`migration ${i} has version ${migration.version}`)
  })
  return migrations.length
}

/** The migrations still to apply to a database at `current`; refuses a schema from a newer mailring. */
export function pendingMigrations(
  migrations: readonly Migration[],
  current: number,
  location: string,
): Migration[] {
  const latest = latestVersion(migrations)
  if (current > latest) {
    throw new MailringError(
      `The store ${location} has schema version ${current}, written by a newer mailring; this one knows up to version ${latest}: upgrade mailring.`,
      {code: 'schema_too_new', exitCode: ExitCode.store},
    )
  }
  return migrations.filter((migration) => migration.version > current)
}
