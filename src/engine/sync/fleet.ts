/**
 * Every server's doveadm for one run of a command: the transport each server is configured for (the HTTP
 * API, or the doveadm command over one SSH connection per server), opened when first needed, and the
 * servers found unusable during the run, so that the rest of the run skips them instead of waiting for
 * each one's time-out again.
 */
import {errorText, isMailringError, MailringError} from '../../core/errors.js'
import type {Server} from '../../core/topology.js'
import {
  type DoveadmCommand,
  mailboxStatusCommand,
  type Row,
  userLookupCommand,
} from '../../dovecot/doveadm.js'
import type {DoveadmReply, DoveadmTransport} from '../../remote/doveadm.js'
import {SshDoveadm} from '../../remote/doveadm.js'
import {HttpDoveadm} from '../../remote/doveadm-http.js'
import {doveadmPassword, httpPortOf, transportOf} from '../../remote/doveadm-settings.js'
import {SshConnection} from '../../remote/ssh.js'
import {connectOptions} from '../context.js'
import type {DovecotContext} from '../context.js'

export interface FleetOptions {
  /** Requests in flight to one server (default: doveadm.per_server). */
  perServer?: number
  /** Trust and record unknown SSH host keys (servers on the ssh transport). */
  acceptNew?: boolean
}

/** What a probe of one server's doveadm found. */
export type ProbeResult =
  | {server: string; state: 'ok'; ms: number}
  /** Down in the store, no address, or no answer: its copies are skipped. */
  | {server: string; state: 'unreachable'; reason: string}
  /** It answered but refused mailring or is not doveadm (wrong password, port, host key): fix the configuration. */
  | {server: string; state: 'refused'; reason: string}

/** Errors that no retry and no other user will get past: the configuration is wrong. */
const REFUSALS = new Set([
  'doveadm_auth',
  'doveadm_garbage',
  'ssh_host_key_unknown',
  'ssh_host_key_changed',
  'ssh_host_key_revoked',
  'ssh_no_key',
  'ssh_permission_denied',
])

function isRefusal(error: unknown): boolean {
  return isMailringError(error) && REFUSALS.has(error.code)
}

/** A user no server holds: looking it up costs the server nothing and proves that doveadm answers. */
const PROBE_USER = 'mailring-probe@invalid'
/** A server that does not answer a lookup within seconds is not worth waiting for in a probe. */
const PROBE_CALL = {timeoutMs: 5_000, retries: 0}

/**
 * A copy that could not be worked on: its server cannot be used in this run (`serverUnusable`: skip it), or
 * the call on this copy failed (the user fails).
 */
export class CopyProblem extends Error {
  constructor(
    readonly server: string,
    message: string,
    readonly serverUnusable: boolean,
  ) {
    super(message)
  }
}

export class DoveadmFleet {
  private readonly transports = new Map<string, Promise<DoveadmTransport>>()
  private readonly connections = new Map<string, Promise<SshConnection>>()
  private readonly unusable = new Map<string, string>()
  private readonly refused = new Set<string>()
  private password: string | undefined

  constructor(
    readonly ctx: DovecotContext,
    private readonly options: FleetOptions = {},
  ) {}

  server(name: string): Server {
    const server = this.ctx.servers.find((s) => s.name === name)
    if (!server) throw new MailringError(`Unknown server "${name}".`, {code: 'unknown_server'})
    return server
  }

  /** Why a server cannot be used in this run (down in the store, or found unusable); undefined: usable. */
  problemOf(name: string): string | undefined {
    const known = this.unusable.get(name)
    if (known !== undefined) return known
    const server = this.ctx.servers.find((s) => s.name === name)
    if (!server) return `${name} is not a server in the store`
    if (server.state === 'down') return `${name} is marked down in the store`
    if (server.address === '')
      return `${name} has no address: set one with \`mailring node set ${name} --address HOST\``
    return undefined
  }

  /**
   * Whether each server's doveadm answers, and how fast: one harmless call (a user lookup; two with
   * `timed`, for a response time on a warm connection). Servers that do not answer are marked unusable for
   * the rest of the run.
   */
  async probe(servers: Iterable<string>, options: {timed?: boolean} = {}): Promise<ProbeResult[]> {
    return Promise.all(
      [...new Set(servers)].map(async (server): Promise<ProbeResult> => {
        const known = this.problemOf(server)
        if (known !== undefined) return {server, state: 'unreachable', reason: known}
        try {
          const transport = await this.transport(server)
          // With `timed`, a first call pays for opening the connection (and, once per process, loading the
          // HTTP client), so that the second one measures the server's response time.
          if (options.timed) await transport.run(userLookupCommand(PROBE_USER), PROBE_CALL)
          const started = performance.now()
          await transport.run(userLookupCommand(PROBE_USER), PROBE_CALL)
          return {server, state: 'ok', ms: performance.now() - started}
        } catch (error) {
          const reason = errorText(error)
          this.markUnusable(server, reason)
          return {server, state: isRefusal(error) ? 'refused' : 'unreachable', reason}
        }
      }),
    )
  }

  /**
   * Validate first: the password is there, and no server refuses mailring (password, port, host key), a
   * configuration error every user would hit. Servers that do not answer are marked unusable.
   */
  async checkBeforeWork(servers: ReadonlySet<string>): Promise<void> {
    this.preflight(servers)
    const probes = await this.probe(servers)
    const refused = probes.filter((p) => p.state === 'refused')
    for (const p of refused) this.refused.add(p.server)
    // Every server refusing is the configuration (a wrong password): one line, nothing done. One server
    // refusing is that server's problem: its users fail, the others go on.
    const first = refused[0]
    if (
      first &&
      first.state === 'refused' &&
      refused.length === probes.filter((p) => p.state !== 'unreachable').length
    )
      throw new MailringError(first.reason, {code: 'doveadm_refused'})
  }

  /** Whether a server answered but refused mailring (password, port, host key): a configuration error. */
  isRefused(name: string): boolean {
    return this.refused.has(name)
  }

  /** Records that a server cannot be used for the rest of the run. */
  markUnusable(name: string, reason: string): void {
    if (!this.unusable.has(name)) this.unusable.set(name, reason)
  }

  /**
   * Forgets that a server was found unusable, and its transport and SSH connection, so that the next call
   * connects again (a long-running replicator, once the server answers its probes again).
   */
  forget(name: string): void {
    this.unusable.delete(name)
    this.refused.delete(name)
    this.transports.delete(name)
    const connection = this.connections.get(name)
    this.connections.delete(name)
    connection?.then(
      (c) => c.close(),
      () => undefined,
    )
  }

  /** Servers found unusable during the run, with the reason. */
  unusableServers(): {server: string; reason: string}[] {
    return [...this.unusable].map(([server, reason]) => ({server, reason}))
  }

  /** Where other servers reach this one's doveadm server for a sync: `tcp:ADDRESS:doveadm_port`. */
  syncDestination(name: string): string {
    const s = this.ctx.settings
    const address = this.server(name).address
    return `${s.replicaScheme}:${address.includes(':') ? `[${address}]` : address}:${s.doveadmPort}`
  }

  /**
   * Fails early, before any work, on what would fail for every server alike: no doveadm password while
   * some of `servers` use the HTTP API.
   */
  preflight(servers: Iterable<string>): void {
    for (const name of servers) {
      if (transportOf(this.ctx.doveadm, name) === 'http') {
        this.password ??= doveadmPassword(this.ctx.doveadm, this.ctx.env)
        return
      }
    }
  }

  /** The server's doveadm, opened on first use. Throws a MailringError when it cannot be reached. */
  transport(name: string): Promise<DoveadmTransport> {
    let transport = this.transports.get(name)
    if (!transport) {
      transport = this.open(name)
      this.transports.set(name, transport)
    }
    return transport
  }

  /**
   * The run's one SSH connection to a server (the ssh transport's, and the shell work of a rebalance),
   * opened on first use with the host key checked against known_hosts.
   */
  ssh(name: string): Promise<SshConnection> {
    let connection = this.connections.get(name)
    if (!connection) {
      const problem = this.problemOf(name)
      if (problem !== undefined) return Promise.reject(new CopyProblem(name, problem, true))
      connection = SshConnection.connect(
        connectOptions(this.ctx, this.server(name).address, {
          ...(this.options.acceptNew ? {acceptNew: true} : {}),
          agent: true,
        }),
      )
      // A server that cannot be reached over SSH is skipped for the rest of the run, as for doveadm.
      connection.catch((error: unknown) => this.markUnusable(name, errorText(error)))
      this.connections.set(name, connection)
    }
    return connection
  }

  private async open(name: string): Promise<DoveadmTransport> {
    const problem = this.problemOf(name)
    if (problem !== undefined) throw new MailringError(problem, {code: 'server_unusable'})
    const server = this.server(name)
    const settings = this.ctx.doveadm
    if (transportOf(settings, name) === 'ssh')
      return new SshDoveadm(await this.ssh(name), this.ctx.settings.doveadm)
    this.password ??= doveadmPassword(settings, this.ctx.env)
    return new HttpDoveadm({
      name,
      host: server.address,
      port: httpPortOf(settings, name),
      https: settings.https,
      password: this.password,
      timeoutMs: settings.timeoutMs,
      retries: settings.retries,
      perServer: this.options.perServer ?? settings.perServer,
    })
  }

  /**
   * One doveadm call on a server. A server that cannot be reached (or refuses mailring) is marked unusable
   * for the rest of the run, and the call fails with CopyProblem(serverUnusable).
   */
  async run(server: string, command: DoveadmCommand): Promise<DoveadmReply> {
    const known = this.problemOf(server)
    if (known !== undefined) throw new CopyProblem(server, known, true)
    try {
      return await (await this.transport(server)).run(command)
    } catch (error) {
      if (!isMailringError(error)) throw error
      this.markUnusable(server, error.message)
      throw new CopyProblem(server, this.problemOf(server) ?? error.message, true)
    }
  }

  /**
   * One doveadm call on a server's command line over the run's SSH connection, whatever the transport (for
   * what the HTTP API cannot say, e.g. settings overridden). Failures as run().
   */
  async runCommandLine(server: string, command: DoveadmCommand): Promise<DoveadmReply> {
    const known = this.problemOf(server)
    if (known !== undefined) throw new CopyProblem(server, known, true)
    try {
      return await new SshDoveadm(await this.ssh(server), this.ctx.settings.doveadm).run(command, {
        timeoutMs: this.ctx.doveadm.timeoutMs,
      })
    } catch (error) {
      if (!isMailringError(error)) throw error
      this.markUnusable(server, error.message)
      throw new CopyProblem(server, this.problemOf(server) ?? error.message, true)
    }
  }

  /**
   * Several doveadm calls on one server, in ONE request where the transport can (the HTTP API: one
   * doveadm-server process for all of them, run in order), else one after another. Failures as run().
   */
  async runAll(server: string, commands: readonly DoveadmCommand[]): Promise<DoveadmReply[]> {
    const known = this.problemOf(server)
    if (known !== undefined) throw new CopyProblem(server, known, true)
    try {
      const transport = await this.transport(server)
      if (transport instanceof HttpDoveadm) return await transport.runBatch(commands)
      const replies: DoveadmReply[] = []
      for (const command of commands) replies.push(await transport.run(command))
      return replies
    } catch (error) {
      if (!isMailringError(error)) throw error
      this.markUnusable(server, error.message)
      throw new CopyProblem(server, this.problemOf(server) ?? error.message, true)
    }
  }

  /** A user's mailboxes on one copy with the given status fields; throws CopyProblem. */
  async mailboxStatus(server: string, user: string, fields: readonly string[]): Promise<Row[]> {
    return this.statusRows(server, user, await this.run(server, mailboxStatusCommand(user, fields)))
  }

  /**
   * The rows of a `mailbox status` reply (run alone, or in a batch: runAll); throws CopyProblem, naming a
   * user the server does not know.
   */
  async statusRows(server: string, user: string, reply: DoveadmReply): Promise<Row[]> {
    if (reply.outcome === 'ok') return reply.rows as Row[]
    // Through the HTTP API an unknown user is a temporary failure (75, seen on 2.3.19): ask the userdb.
    const unknown =
      reply.outcome === 'no-such-user' ||
      (reply.outcome === 'temporary' &&
        (await this.run(server, userLookupCommand(user))).outcome === 'no-such-user')
    throw new CopyProblem(
      server,
      unknown
        ? `${server} does not know ${user}: push its configuration (mailring config push --server ${server}); if its userdb could not read the store just then (a database restart), run again`
        : `doveadm mailbox status failed: ${reply.message || `exit ${reply.exitCode}`}`,
      false,
    )
  }

  async close(): Promise<void> {
    await Promise.all(
      [...this.connections.values()].map(async (c) => {
        try {
          await (await c).close()
        } catch {
          // it never opened
        }
      }),
    )
  }
}

/** Runs `work` with a fleet over the context's servers, and closes its connections whatever happens. */
export async function withFleet<T>(
  ctx: DovecotContext,
  options: FleetOptions,
  work: (fleet: DoveadmFleet) => Promise<T>,
): Promise<T> {
  const fleet = new DoveadmFleet(ctx, options)
  try {
    return await work(fleet)
  } finally {
    await fleet.close()
  }
}
