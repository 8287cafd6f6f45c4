import type {ConfigFile} from '../config/config-file.js'
import {describeIssues} from '../config/yaml-file.js'
import {MailringError} from '../core/errors.js'
import type {UsersTableSpec} from './store.js'

const KEYS = ['table', 'user_column', 'local_column', 'domain_column']
const IDENTIFIER = /^[A-Za-z0-9_$]{1,64}$/

/**
 * The config section `users_table`: the operator's own users table beside mailring's tables, which
 * mailring reads and never alters. Either
 *   users_table: {table: users, user_column: email}
 * or
 *   users_table: {table: users, local_column: local_part, domain_column: domain}
 * Undefined when the section is absent.
 */
export function usersTableFromConfig(config: ConfigFile | undefined): UsersTableSpec | undefined {
  const value = config?.section('users_table')
  if (config === undefined || value === undefined || value === null) return undefined
  const issue = (path: string[], message: string): MailringError =>
    new MailringError(describeIssues(config.file, [{path: ['users_table', ...path], message}]), {
      code: 'invalid_config',
    })
  if (typeof value !== 'object' || Array.isArray(value))
    throw issue([], 'users_table is a mapping: table, and user_column or local_column with domain_column')
  const record = value as Record<string, unknown>
  const unknown = Object.keys(record).find((key) => !KEYS.includes(key))
  if (unknown !== undefined)
    throw issue([unknown], `unknown key "${unknown}" (expected one of ${KEYS.join(', ')})`)
  const name = (key: string): string | undefined => {
    const v = record[key]
    if (v === undefined || v === null) return undefined
    if (typeof v !== 'string' || !IDENTIFIER.test(v))
      throw issue([key], `${key} must be a table or column name (letters, digits, _ and $, at most 64)`)
    return v
  }
  const table = name('table')
  if (table === undefined) throw issue([], "users_table needs table: the name of the operator's users table")
  if (table.toLowerCase().startsWith('mailring_'))
    throw issue(['table'], `${table} is one of mailring's own tables, not the operator's users table`)
  const userColumn = name('user_column')
  const localColumn = name('local_column')
  const domainColumn = name('domain_column')
  const line = config.file.lineOf(['users_table'])
  const source = `${config.path}${line === undefined ? '' : `:${line}`}: users_table`
  if (userColumn !== undefined) {
    if (localColumn !== undefined || domainColumn !== undefined)
      throw issue(['user_column'], 'give either user_column, or local_column with domain_column, not both')
    return {table, userColumn, source}
  }
  if (localColumn === undefined || domainColumn === undefined)
    throw issue([], 'users_table needs user_column (the whole address), or local_column and domain_column')
  return {table, localColumn, domainColumn, source}
}
