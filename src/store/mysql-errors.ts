/**
 * MySQL/MariaDB errors as the store's one-line errors (exit code 4), with what to do about each, and never
 * the password.
 */
import {ExitCode, MailringError} from '../core/errors.js'
import {Rollback} from './aggregates/users.js'
import {PASSWORD_ENV, type MysqlSettings} from './mysql-settings.js'

const PRIVILEGES_HINT = 'SELECT, INSERT, UPDATE, DELETE, CREATE, ALTER, INDEX, REFERENCES'

/**
 * Turns mysql2's errors into one-line store errors (exit code 4) that never show the password; mailring's
 * own errors pass through.
 */
export function mysqlStoreError(error: unknown, settings: MysqlSettings): unknown {
  if (error instanceof MailringError || error instanceof Rollback) return error
  const err = error as {code?: string; errno?: number; sqlMessage?: string; message?: string; fatal?: boolean}
  if (err === null || typeof err !== 'object' || (err.code === undefined && err.errno === undefined))
    return error
  const where = `${settings.host}:${settings.port}`
  const user = settings.user
  const code = err.code ?? ''
  const raw = err.sqlMessage ?? err.message ?? String(error)
  let message: string
  if (['ECONNREFUSED', 'ENOTFOUND', 'EAI_AGAIN', 'ETIMEDOUT', 'EHOSTUNREACH', 'ENETUNREACH'].includes(code)) {
    const reason =
      code === 'ECONNREFUSED'
        ? 'connection refused'
        : code === 'ENOTFOUND' || code === 'EAI_AGAIN'
          ? 'unknown host'
          : code === 'ETIMEDOUT'
            ? 'timed out'
            : 'no route to host'
    message = `Cannot reach the MySQL/MariaDB server at ${where} (${reason}): is it running, and are host and port in ${settings.location} right?`
  } else if (code === 'ER_ACCESS_DENIED_ERROR' || code === 'ER_ACCESS_DENIED_NO_PASSWORD_ERROR') {
    message = `The MySQL/MariaDB server at ${where} refused user ${user} (access denied): check the password (${settings.passwordSource === 'none' ? `none given: set ${PASSWORD_ENV} or db_password_file` : `from ${settings.passwordSource}`}) and that the user may connect from this host.`
  } else if (code === 'ER_DBACCESS_DENIED_ERROR') {
    message = `Store ${settings.location}: user ${user} may not use database ${settings.database}: GRANT ${PRIVILEGES_HINT} ON \`${settings.database}\`.* TO it.`
  } else if (code === 'ER_BAD_DB_ERROR') {
    message = `Store ${settings.location}: database ${settings.database} does not exist: create it (CREATE DATABASE \`${settings.database}\` CHARACTER SET utf8mb4) and grant ${user} ${PRIVILEGES_HINT} on it.`
  } else if (
    code === 'ER_TABLEACCESS_DENIED_ERROR' ||
    code === 'ER_COLUMNACCESS_DENIED_ERROR' ||
    code === 'ER_SPECIFIC_ACCESS_DENIED_ERROR' ||
    code === 'ER_PROCACCESS_DENIED_ERROR'
  ) {
    const privilege = /^([\w ,]+?) command denied/i.exec(raw)?.[1]?.toUpperCase()
    const table = /for table [`']?(?:[^`']*[`']?\.[`']?)?([^`']+)[`']?/i.exec(raw)?.[1]
    message = privilege
      ? `Store ${settings.location}: user ${user} lacks the ${privilege} privilege${privilege.includes(',') ? 's' : ''}${table ? ` on table ${table}` : ''}: GRANT ${PRIVILEGES_HINT} ON \`${settings.database}\`.* TO it.`
      : `Store ${settings.location}: user ${user} lacks a privilege (${raw}): GRANT ${PRIVILEGES_HINT} ON \`${settings.database}\`.* TO it.`
  } else if (code === 'ER_KILL_DENIED_ERROR') {
    message = `Store ${settings.location}: user ${user} may not end the connection that holds the cluster lock (${raw}): unlock as the database user that took it, or as one with the CONNECTION ADMIN (MySQL: CONNECTION_ADMIN) or SUPER privilege.`
  } else if (code === 'PROTOCOL_CONNECTION_LOST' || code === 'ECONNRESET' || code === 'EPIPE') {
    message = `Store ${settings.location}: lost the connection to the server; nothing of the interrupted step was written. Try again.`
  } else if (code === 'ER_LOCK_WAIT_TIMEOUT' || code === 'ER_LOCK_DEADLOCK') {
    message = `Store ${settings.location}: the database is busy (${code === 'ER_LOCK_DEADLOCK' ? 'deadlock' : 'lock wait timeout'}); nothing was written; try again.`
  } else if (code.startsWith('HANDSHAKE') || /SSL|TLS|certificate/i.test(raw)) {
    message = `Store ${settings.location}: TLS failed: ${raw} (check db_tls in the config file).`
  } else {
    message = `Store ${settings.location}: ${raw}`
  }
  return new MailringError(redactSecret(message, settings.password), {
    code: 'store',
    exitCode: ExitCode.store,
    cause: error,
  })
}

/** Removes a secret from a message, whatever echoed it. */
function redactSecret(message: string, secret: string | undefined): string {
  if (secret === undefined || secret === '') return message
  return message.split(secret).join('***')
}
