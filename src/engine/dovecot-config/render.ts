/**
 * Rendering Dovecot's SQL configuration from the store and the config file (the service behind
 * `mailring config render`, and the first step of `config diff` and `config push`).
 */
import {MailringError} from '../../core/errors.js'
import type {Server} from '../../core/topology.js'
import {
  maskSecrets,
  renderDovecotSql,
  type DovecotRole,
  type DovecotVersion,
  type OperatorUsersTable,
  type RenderedConfig,
  type SqlConnection,
} from '../../dovecot/render.js'
import {configPathOf, dovecotDbPassword, versionOf} from '../../dovecot/settings.js'
import type {MysqlSettings} from '../../store/mysql-settings.js'
import {usersTableFromConfig} from '../../store/users-table-config.js'
import type {Host} from '../../store/store.js'
import type {DovecotContext} from '../context.js'

/** What Dovecot connects to: the store's database, as the servers see it. */
export function dovecotConnection(ctx: DovecotContext): SqlConnection {
  const location = ctx.location
  if (location.kind === 'sqlite') {
    return {dialect: 'sqlite', path: ctx.settings.sqlitePath ?? location.path}
  }
  return mysqlConnection(ctx, location.settings)
}

/**
 * A MySQL store: hosts, port and database from dovecot.db_hosts/db_port/db_name, else from the store's own
 * location; the user and password of the database user Dovecot connects as from the `dovecot` section.
 */
function mysqlConnection(ctx: DovecotContext, store: MysqlSettings): SqlConnection {
  const s = ctx.settings
  const storeHost = store.host === '' ? undefined : store.host
  const storePort = store.port
  const storeDb = store.database
  const hosts = s.dbHosts ?? (storeHost ? [storeHost] : [])
  const dbname = s.dbName ?? storeDb
  if (hosts.length === 0 || dbname === undefined) {
    throw new MailringError(
      'Cannot tell Dovecot where the database is: set dovecot.db_hosts and dovecot.db_name in the config file.',
      {code: 'invalid_config'},
    )
  }
  if (s.dbUser === undefined) {
    throw new MailringError(
      'dovecot.db_user is not set: name the database user Dovecot connects as (with read access to the mailring_ tables).',
      {code: 'invalid_config'},
    )
  }
  const port = s.dbPort ?? storePort
  return {
    dialect: 'mysql',
    hosts,
    ...(port === undefined ? {} : {port}),
    dbname,
    user: s.dbUser,
    password: dovecotDbPassword(s, ctx.env),
  }
}

/**
 * The operator's users table, for password_query: the `users_table` section ({table, user_column} or
 * {table, local_column, domain_column}), with the password column from dovecot.password_column.
 */
export function operatorUsersTable(ctx: DovecotContext): OperatorUsersTable | undefined {
  const spec = usersTableFromConfig(ctx.config)
  if (!spec) return undefined
  const out: OperatorUsersTable = {table: spec.table, passwordColumn: ctx.settings.passwordColumn}
  if (spec.userColumn !== undefined) out.userColumn = spec.userColumn
  if (spec.localColumn !== undefined) out.localColumn = spec.localColumn
  if (spec.domainColumn !== undefined) out.domainColumn = spec.domainColumn
  return out
}

export interface ServerRendering {
  server: string
  address: string
  version: DovecotVersion
  /** Where the file goes on the server. */
  path: string
  rendered: RenderedConfig
}

export function findServer(ctx: DovecotContext, name: string): Server {
  const server = ctx.servers.find((s) => s.name === name)
  if (!server) {
    const known = ctx.servers.map((s) => s.name)
    throw new MailringError(
      `Unknown server "${name}"${known.length > 0 ? ` (servers: ${known.slice(0, 10).join(', ')}${known.length > 10 ? ', ...' : ''})` : ': the store has no servers yet'}.`,
      {code: 'unknown_server'},
    )
  }
  return server
}

/**
 * The proxy passdb for one proxy or director host (`config push --role proxy`): the host's Dovecot version
 * (its own, else dovecot.versions[name], else dovecot.version; --dovecot overrides), its address, and the
 * config path with `{server}` = the host's name.
 */
export function renderForHost(
  ctx: DovecotContext,
  host: Host,
  options: {version?: DovecotVersion} = {},
): ServerRendering {
  const version =
    options.version ?? (host.dovecotVersion as DovecotVersion | null) ?? versionOf(ctx.settings, host.name)
  const r = renderFor(ctx, undefined, {role: 'proxy', version})
  return {
    ...r,
    server: host.name,
    address: host.address,
    path: configPathOf(ctx.settings, version).split('{server}').join(host.name),
  }
}

/** A proxy host by name, or a MailringError (exit code 1) naming the hosts there are. */
export function findHost(hosts: readonly Host[], name: string): Host {
  const host = hosts.find((h) => h.name === name)
  if (host) return host
  const known = hosts.map((h) => h.name)
  throw new MailringError(
    `Unknown proxy "${name}"${known.length > 0 ? ` (proxies: ${known.slice(0, 10).join(', ')}${known.length > 10 ? ', ...' : ''})` : ': there are none yet (add one with `mailring proxy add NAME --address HOST`)'}.`,
    {code: 'unknown_host'},
  )
}

/** One server's file (backend role), or the proxies' file with role 'proxy'. */
export function renderFor(
  ctx: DovecotContext,
  name: string | undefined,
  options: {version?: DovecotVersion; role?: DovecotRole} = {},
): ServerRendering {
  const role = options.role ?? 'backend'
  const server = name === undefined ? undefined : findServer(ctx, name)
  if (role === 'backend' && !server) throw new MailringError('Name the server to render with --server.')
  const version = options.version ?? (server ? versionOf(ctx.settings, server.name) : ctx.settings.version)
  const s = ctx.settings
  const usersTable = role === 'backend' ? operatorUsersTable(ctx) : undefined
  const rendered = renderDovecotSql({
    ...(server ? {server: server.name} : {}),
    role,
    version,
    connection: dovecotConnection(ctx),
    ...(usersTable ? {usersTable} : {}),
    home: s.home,
    uid: s.uid,
    gid: s.gid,
    ...(s.defaultPassScheme ? {defaultPassScheme: s.defaultPassScheme} : {}),
    replica: {scheme: s.replicaScheme, port: s.doveadmPort},
    proxyTimeoutSeconds: s.proxyTimeoutSeconds,
  })
  return {
    server: server?.name ?? 'proxy',
    address: server?.address ?? '',
    version,
    // `{server}` in config_path: the server's name (several servers sharing one file system: tests, containers).
    path: configPathOf(s, version)
      .split('{server}')
      .join(server?.name ?? 'proxy'),
    rendered,
  }
}

/** The rendered file as shown to the operator: secrets masked unless asked for. */
export function renderedText(r: ServerRendering, showSecrets: boolean): string {
  return showSecrets ? r.rendered.text : maskSecrets(r.rendered.text, r.rendered.secrets)
}

export interface SampleUser {
  user: string
  /** The mail_replica this server's userdb must return for the user (undefined: a single copy). */
  mailReplica?: string
}

/**
 * For each named server, one user it holds and the mail_replica its userdb must return: what `config push`
 * looks up through the new configuration. Reads the placement only until every server has one.
 */
export async function sampleUsers(
  ctx: DovecotContext,
  names: readonly string[],
): Promise<Map<string, SampleUser>> {
  const wanted = new Set(names)
  const found = new Map<string, SampleUser>()
  const addressOf = new Map(ctx.servers.map((s) => [s.name, s.address]))
  const scan = await ctx.store.scanPlacements(2000)
  for await (const chunk of scan.chunks) {
    for (let i = 0; i < chunk.users.length; i++) {
      const start = chunk.copyStart[i]!
      const end = chunk.copyStart[i + 1]!
      const copies = Array.from(chunk.copyServers.subarray(start, end), (k) => scan.servers[k]!)
      copies.forEach((server, position) => {
        if (!wanted.has(server) || found.has(server)) return
        const peer = copies.length > 1 ? copies[(position + 1) % copies.length]! : undefined
        const sample: SampleUser = {user: chunk.users[i]!}
        if (peer !== undefined)
          sample.mailReplica = `${ctx.settings.replicaScheme}:${addressOf.get(peer) ?? ''}:${ctx.settings.doveadmPort}`
        found.set(server, sample)
      })
    }
    if (found.size === wanted.size) break
  }
  return found
}
