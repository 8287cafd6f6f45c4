/**
 * Dovecot's SQL configuration for one server, rendered from the store's schema (pure: no I/O).
 *
 * A backend server gets a passdb (from the operator's users table, when one is configured) and a userdb
 * whose `user_query` finds a user only when THIS server holds a copy, with `mail_replica` pointing at the
 * next copy after this one in the user's ordered copy list (wrapping around), and whose `iterate_query`
 * lists only this server's users. A proxy (or director) host gets a passdb that sends each login (and
 * LMTP delivery) to the first copy on a server that is neither down (operator state) nor unhealthy (the
 * replicator's probes: health down or returning, docs/decisions/0004-replicator.md).
 *
 * Safety: every value placed into SQL or configuration text is validated here against a strict pattern
 * (server names, identifiers, templates, numbers) or rejected with a MailringError; user input reaches
 * Dovecot only through Dovecot's own variables (%Lu, %Ln, %Ld in 2.3; %{user|lower}... in 2.4), which
 * Dovecot escapes for SQL itself. The queries read only indexed paths of the store (see test/dovecot).
 */
import {MailringError} from '../core/errors.js'

export type DovecotVersion = '2.3' | '2.4'
export const DOVECOT_VERSIONS: readonly DovecotVersion[] = ['2.3', '2.4']
export type SqlDialect = 'mysql' | 'sqlite'
export type DovecotRole = 'backend' | 'proxy'

export type SqlConnection =
  | {dialect: 'sqlite'; /** The database file as seen on the Dovecot server. */ path: string}
  | {
      dialect: 'mysql'
      /** One or more database hosts (2.3: several host= give round-robin failover). */
      hosts: string[]
      port?: number
      dbname: string
      /** The database user Dovecot connects as, and its password (from the config file, never argv). */
      user: string
      password: string
    }

/** The operator's own users table (read only), where passwords live. */
export interface OperatorUsersTable {
  table: string
  /** Either one column with the whole address ... */
  userColumn?: string
  /** ... or the local part and the domain in two columns. */
  localColumn?: string
  domainColumn?: string
  passwordColumn: string
}

export interface RenderInput {
  /** The server whose configuration this is (backend role); a proxy renders the same for every proxy. */
  server?: string
  role: DovecotRole
  version: DovecotVersion
  connection: SqlConnection
  /** Without it no password_query is rendered (a backend then needs another passdb, e.g. passwd-file). */
  usersTable?: OperatorUsersTable
  /** Home directory template, e.g. /var/vmail/%d/%n (variables: %u %n %d and %Lu %Ln %Ld). */
  home: string
  /** System user and group of the mail files: a name (vmail) or a number. */
  uid: string
  gid: string
  defaultPassScheme?: string
  replica: {scheme: 'tcp' | 'tcps'; port: number}
  /** Proxy role: seconds to wait for the backend's connection. */
  proxyTimeoutSeconds: number
}

export interface RenderedConfig {
  text: string
  /** Values that must not be shown unless asked (--show-secrets). */
  secrets: string[]
  /** Things the operator should know, e.g. "no password_query". */
  notes: string[]
}

export const SERVER_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/
const HOST = /^[A-Za-z0-9](?:[A-Za-z0-9.-]{0,251}[A-Za-z0-9])?$|^[0-9A-Fa-f:.]+$/
const IDENTIFIER = /^[A-Za-z_][A-Za-z0-9_]{0,63}$/
const SYSTEM_ID = /^(?:[A-Za-z_][A-Za-z0-9_-]{0,31}|[0-9]{1,10})$/
const PASS_SCHEME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,31}$/
/** A template: path characters and the Dovecot variables it may name. */
const TEMPLATE_TOKEN = /%(L?)([und])/g
const TEMPLATE_TEXT = /^[A-Za-z0-9/._+-]*$/
/** Connect-string values in 2.3 are split at white space and cannot be quoted. */
const CONNECT_VALUE = /^[^\s'"\\]+$/

function refuse(message: string): never {
  throw new MailringError(message, {code: 'invalid_dovecot_config'})
}

function checkServerName(name: string | undefined): string {
  if (name === undefined || !SERVER_NAME.test(name)) {
    refuse(`"${name ?? ''}" is not a valid server name (letters, digits, ".", "_", "-").`)
  }
  return name
}

export function checkIdentifier(name: string, what: string): string {
  const parts = name.split('.')
  if (parts.length > 2 || !parts.every((p) => IDENTIFIER.test(p))) {
    refuse(`${what} "${name}" is not a plain SQL identifier (letters, digits, "_"; optionally schema.table).`)
  }
  return name
}

function quoteIdentifier(name: string, dialect: SqlDialect): string {
  const q = dialect === 'mysql' ? '`' : '"'
  return name
    .split('.')
    .map((p) => `${q}${p}${q}`)
    .join('.')
}

/** A template checked and translated to the Dovecot version's variable syntax. */
export function templateToDovecot(template: string, version: DovecotVersion, what = 'template'): string {
  const withoutVariables = template.replace(TEMPLATE_TOKEN, '')
  if (template === '' || !TEMPLATE_TEXT.test(withoutVariables) || withoutVariables.includes('%')) {
    refuse(
      `${what} "${template}" may hold only letters, digits, "/", ".", "_", "+", "-" and the variables %u, %n, %d (lower-cased: %Lu, %Ln, %Ld).`,
    )
  }
  if (version === '2.3') return template
  return template.replace(TEMPLATE_TOKEN, (_m, lower: string, v: string) => {
    const base = v === 'u' ? 'user' : v === 'n' ? 'user|username' : 'user|domain'
    return `%{${base}${lower ? '|lower' : ''}}`
  })
}

function checkSystemId(value: string, what: string): string {
  if (!SYSTEM_ID.test(value)) refuse(`${what} "${value}" must be a user or group name, or a number.`)
  return value
}

function checkPort(port: number, what: string): number {
  if (!Number.isInteger(port) || port < 1 || port > 65535) refuse(`${what} must be a port number (1-65535).`)
  return port
}

/** The Dovecot variables a query uses, in the version's syntax. */
function variables(version: DovecotVersion): {user: string; local: string; domain: string} {
  return version === '2.3'
    ? {user: '%Lu', local: '%Ln', domain: '%Ld'}
    : {user: '%{user|lower}', local: '%{user|username|lower}', domain: '%{user|domain|lower}'}
}

function concat(dialect: SqlDialect, parts: string[]): string {
  return dialect === 'mysql' ? `CONCAT(${parts.join(', ')})` : parts.join(' || ')
}

export interface Queries {
  passwordQuery?: string
  userQuery?: string
  iterateQuery?: string
}

/** The SQL queries for one server (or a proxy). Exposed for EXPLAIN checks in tests. */
export function renderQueries(input: RenderInput): Queries {
  const d = input.connection.dialect
  const v = variables(input.version)
  if (input.role === 'proxy') {
    const timeout = input.proxyTimeoutSeconds
    if (!Number.isInteger(timeout) || timeout < 1 || timeout > 600)
      refuse('proxy_timeout must be a whole number of seconds between 1 and 600.')
    // The first copy on a healthy server: neither down by the operator (state) nor by the replicator's
    // probes (health down or returning; a server without a health record is up); when every copy is on an
    // unhealthy server, still the first copy (a login that may fail beats none). The backend checks the
    // password (nopassword=y here). One user's copies only: an indexed lookup by address, then primary keys.
    return {
      passwordQuery:
        `SELECT u.address AS user, NULL AS password, 'Y' AS nopassword, 'Y' AS proxy, s.address AS host, ` +
        `'${timeout}' AS proxy_timeout ` +
        `FROM mailring_users u JOIN mailring_copies c ON c.user_id = u.id ` +
        `JOIN mailring_servers s ON s.id = c.server_id ` +
        `LEFT JOIN mailring_server_health h ON h.server_id = s.id ` +
        `WHERE u.address = '${v.user}' ` +
        `ORDER BY (s.state = 'down' OR COALESCE(h.health, 'up') <> 'up'), c.position LIMIT 1`,
    }
  }

  const server = checkServerName(input.server)
  const home = templateToDovecot(input.home, input.version, 'home')
  const uid = checkSystemId(input.uid, 'uid')
  const gid = checkSystemId(input.gid, 'gid')
  const port = checkPort(input.replica.port, 'doveadm_port')
  if (input.replica.scheme !== 'tcp' && input.replica.scheme !== 'tcps')
    refuse('replica_scheme must be tcp or tcps.')
  const here = `(SELECT id FROM mailring_servers WHERE name = '${server}')`
  const replica = concat(d, [`'${input.replica.scheme}:'`, 's2.address', `':${port}'`])
  // The next copy after this one in the user's list, wrapping around to the first. (SQLite does not let an
  // ORDER BY inside a subquery name the outer row, so: the first copy after this one, else the first before.)
  const next = (op: '>' | '<') =>
    `(SELECT ${replica} FROM mailring_copies c2 JOIN mailring_servers s2 ON s2.id = c2.server_id ` +
    `WHERE c2.user_id = c.user_id AND c2.position ${op} c.position ORDER BY c2.position LIMIT 1)`
  // A user moving here (a rebalance copying or verifying its new copy) is known here too, so that this
  // server's doveadm accepts the sync, and so is a user whose copy here has just been replaced (switched,
  // caught-up), for the last sync that catches up on mail delivered here during the switch and for finding
  // the home to retire. Logins and deliveries go
  // by mailring_copies only (the proxy passdb). mail_replica names the other end of the move
  // (docs/decisions/0002-rebalance-execution.md).
  // A copy added by a copy-count change has no other end (from is NULL), nor has a dropped one (to is NULL):
  // mail_replica is then the user's first current copy.
  const moving = [
    {here: 'm.to_server_id', other: 'm.from_server_id', states: `'copying', 'verified'`},
    {here: 'm.from_server_id', other: 'm.to_server_id', states: `'switched', 'caught-up'`},
  ]
  const first =
    `(SELECT ${replica} FROM mailring_copies c2 JOIN mailring_servers s2 ON s2.id = c2.server_id ` +
    `WHERE c2.user_id = u.id ORDER BY c2.position LIMIT 1)`
  const queries: Queries = {
    userQuery: [
      `SELECT u.address AS user, '${home}' AS home, '${uid}' AS uid, '${gid}' AS gid, ` +
        `COALESCE(${next('>')}, ${next('<')}) AS mail_replica ` +
        `FROM mailring_users u JOIN mailring_copies c ON c.user_id = u.id ` +
        `WHERE u.address = '${v.user}' AND c.server_id = ${here}`,
      ...moving.map(
        (m) =>
          `SELECT u.address AS user, '${home}' AS home, '${uid}' AS uid, '${gid}' AS gid, ` +
          `COALESCE(${replica}, ${first}) AS mail_replica ` +
          `FROM mailring_users u JOIN mailring_moves m ON m.user_id = u.id LEFT JOIN mailring_servers s2 ON s2.id = ${m.other} ` +
          `WHERE u.address = '${v.user}' AND ${m.here} = ${here} AND m.state IN (${m.states})`,
      ),
    ].join(' UNION ALL '),
    iterateQuery: [
      `SELECT u.address AS user FROM mailring_copies c JOIN mailring_users u ON u.id = c.user_id ` +
        `WHERE c.server_id = ${here}`,
      ...moving.map(
        (m) =>
          `SELECT u.address AS user FROM mailring_moves m JOIN mailring_users u ON u.id = m.user_id ` +
          `WHERE ${m.here} = ${here} AND m.state IN (${m.states})`,
      ),
    ].join(' UNION ALL '),
  }
  const t = input.usersTable
  if (t) {
    const table = quoteIdentifier(checkIdentifier(t.table, 'users_table.table'), d)
    const password = quoteIdentifier(checkIdentifier(t.passwordColumn, 'password_column'), d)
    if (t.userColumn !== undefined) {
      const user = quoteIdentifier(checkIdentifier(t.userColumn, 'users_table.user_column'), d)
      queries.passwordQuery = `SELECT t.${user} AS user, t.${password} AS password FROM ${table} t WHERE t.${user} = '${v.user}'`
    } else if (t.localColumn !== undefined && t.domainColumn !== undefined) {
      const local = quoteIdentifier(checkIdentifier(t.localColumn, 'users_table.local_column'), d)
      const domain = quoteIdentifier(checkIdentifier(t.domainColumn, 'users_table.domain_column'), d)
      queries.passwordQuery =
        `SELECT ${concat(d, [`t.${local}`, `'@'`, `t.${domain}`])} AS user, t.${password} AS password ` +
        `FROM ${table} t WHERE t.${local} = '${v.local}' AND t.${domain} = '${v.domain}'`
    } else {
      refuse('users_table needs user_column, or local_column and domain_column.')
    }
  }
  return queries
}

function checkConnection(c: SqlConnection): void {
  if (c.dialect === 'sqlite') {
    if (!c.path.startsWith('/') || /[\s"'\\#$%]/.test(c.path))
      refuse(`The SQLite path "${c.path}" must be absolute, without spaces, quotes, "#", "$" or "%".`)
    return
  }
  if (c.hosts.length === 0) refuse('The database for Dovecot needs at least one host.')
  for (const host of c.hosts)
    if (!HOST.test(host)) refuse(`"${host}" is not a database host name or address.`)
  if (c.port !== undefined) checkPort(c.port, 'the database port')
  checkIdentifier(c.dbname, 'the database name')
  if (!CONNECT_VALUE.test(c.user)) refuse(`The database user "${c.user}" must not contain spaces or quotes.`)
  if (c.password === '' || !CONNECT_VALUE.test(c.password) || /[#$%]/.test(c.password)) {
    refuse(
      'The password of the database user Dovecot connects as must be non-empty, without spaces, quotes, backslashes, "#", "$" or "%" (Dovecot cannot quote it in a connect string).',
    )
  }
}

/** The whole file for one server (backend) or for proxies. */
export function renderDovecotSql(input: RenderInput): RenderedConfig {
  checkConnection(input.connection)
  if (input.defaultPassScheme !== undefined && !PASS_SCHEME.test(input.defaultPassScheme))
    refuse(`default_pass_scheme "${input.defaultPassScheme}" is not a password scheme name.`)
  const queries = renderQueries(input)
  const c = input.connection
  const secrets = c.dialect === 'mysql' ? [c.password] : []
  const notes: string[] = []
  if (input.role === 'backend' && queries.passwordQuery === undefined) {
    notes.push(
      'No password_query: no users_table is configured, so this file serves as userdb only; give Dovecot another passdb (e.g. passwd-file) for logins.',
    )
  }
  const who =
    input.role === 'proxy' ? 'proxy and director hosts' : `server ${input.server ?? ''} (its copies only)`
  const header = [
    `# Generated by mailring for ${who}; Dovecot ${input.version}, ${c.dialect}.`,
    '# Do not edit: `mailring config push` replaces this file.',
  ]
  const text = input.version === '2.3' ? render23(input, queries, header) : render24(input, queries, header)
  return {text, secrets, notes}
}

function render23(input: RenderInput, q: Queries, header: string[]): string {
  const c = input.connection
  const connect =
    c.dialect === 'sqlite'
      ? c.path
      : [
          ...c.hosts.map((h) => `host=${h}`),
          ...(c.port === undefined ? [] : [`port=${c.port}`]),
          `dbname=${c.dbname}`,
          `user=${c.user}`,
          `password=${c.password}`,
        ].join(' ')
  const lines = [...header, '', `driver = ${c.dialect}`, `connect = ${connect}`]
  if (input.defaultPassScheme) lines.push(`default_pass_scheme = ${input.defaultPassScheme}`)
  if (input.role === 'proxy') {
    lines.push(
      '',
      '# Sends each login (IMAP, POP3, and LMTP deliveries) to the first copy whose server is not down',
      "# (operator state) and is up by the replicator's probes (mailring_server_health).",
      `password_query = ${q.passwordQuery}`,
    )
  } else {
    if (q.passwordQuery) lines.push('', `password_query = ${q.passwordQuery}`)
    lines.push(
      '',
      `# Finds a user only when ${input.server} holds a copy; mail_replica is the next copy in the user's list.`,
      `user_query = ${q.userQuery}`,
      '',
      `# The users ${input.server} holds (the replicator lists them at start-up).`,
      `iterate_query = ${q.iterateQuery}`,
    )
  }
  return lines.join('\n') + '\n'
}

function quote24(value: string): string {
  return `"${value.replace(/\\/g, '\\\\').replace(/"/g, '\\"')}"`
}

function render24(input: RenderInput, q: Queries, header: string[]): string {
  const c = input.connection
  // No dovecot_config_version here: 2.4 takes it only as the first setting of dovecot.conf itself (an
  // `!include` before it does not count) and refuses to see it set again, even to the same value (seen on
  // 2.4.1, test/dovecot/dovecot-sql24.int.test.ts).
  const lines = [
    ...header,
    '# Include it with `!include` in dovecot.conf, anywhere after dovecot_config_version (never set here).',
    '',
    `sql_driver = ${c.dialect}`,
  ]
  if (c.dialect === 'sqlite') {
    lines.push(`sqlite_path = ${c.path}`)
  } else {
    for (const host of c.hosts) {
      lines.push(`mysql ${host} {`)
      if (c.port !== undefined) lines.push(`  port = ${c.port}`)
      lines.push(`  dbname = ${c.dbname}`, `  user = ${c.user}`, `  password = ${quote24(c.password)}`, '}')
    }
  }
  if (input.defaultPassScheme) lines.push(`passdb_default_password_scheme = ${input.defaultPassScheme}`)
  if (q.passwordQuery) {
    lines.push('', 'passdb sql {', `  query = ${q.passwordQuery}`, '}')
  }
  if (input.role === 'backend') {
    lines.push('', 'userdb sql {', `  query = ${q.userQuery}`, `  iterate_query = ${q.iterateQuery}`, '}')
  }
  return lines.join('\n') + '\n'
}

/** `text` with every secret replaced by a mask (for output without --show-secrets). */
export function maskSecrets(text: string, secrets: readonly string[], mask = '********'): string {
  let out = text
  for (const secret of secrets) if (secret !== '') out = out.split(secret).join(mask)
  return out
}
