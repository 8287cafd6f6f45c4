/**
 * Installing each server's Dovecot SQL configuration over SSH, the way a careful operator would
 * (`mailring config push` and `config diff`). Per server, over ONE SSH connection:
 *
 *   1. read the installed file; unchanged: nothing is written and Dovecot is not reloaded;
 *   2. keep the installed file as FILE.mailring-backup (same owner and mode);
 *   3. write the new file atomically: temporary file (SFTP: content, mode, fsync), then in ONE remote shell
 *      command (installScript): owner from the config (default root:dovecot 0640, names resolved on the
 *      server), rename over the old one, and the first part of step 4;
 *   4. validate: `doveconf -n` must parse the configuration; `doveadm reload`; then `doveadm user` of a user
 *      this server holds must answer through the new file, with the mail_replica the store implies
 *      (Dovecot 2.3's auth process reads the SQL file only when it starts, so this lookup can only run once
 *      the reload has started new auth processes); a proxy host (role proxy) instead answers `doveadm auth
 *      lookup` of a user of the store with proxy=Y and a host that is one of the user's copies;
 *   5. when a step of 4 fails: put the backup back (or remove the new file if there was none), reload
 *      again, and report the server as rolled back.
 *
 * Servers are worked on `parallel` at a time; the first failure stops new servers from starting unless
 * continueOnError. Every server gets one result; a problem with one server never stops the others'
 * reporting.
 */
import {errorText, firstLine, MailringError} from '../core/errors.js'
import type {DovecotRole, DovecotVersion} from '../dovecot/render.js'
import {maskSecrets} from '../dovecot/render.js'
import {unifiedDiff} from '../dovecot/unified-diff.js'
import {runPerServer, type ServerResult} from '../remote/pool.js'
import {
  authLookupCommand,
  authLookupFields,
  reloadCommand,
  userFieldsOf,
  userLookupCommand,
  type DoveadmCommand,
} from '../dovecot/doveadm.js'
import {type DoveadmReply, doveadmCommandLine, replyOfProcess, SshDoveadm} from '../remote/doveadm.js'
import {type ExecResult, shellQuote, SshConnection, type SshConnectOptions} from '../remote/ssh.js'
import {
  findHost,
  findServer,
  renderFor,
  renderForHost,
  sampleUsers,
  type DovecotContext,
  type SampleUser,
  type ServerRendering,
} from './config-render.js'

export type PushStatus = 'updated' | 'unchanged' | 'would-update' | 'failed' | 'rolled-back' | 'skipped'

export interface ServerPushResult {
  server: string
  address: string
  path: string
  status: PushStatus
  /** One line: what happened, or what went wrong and what was done about it. */
  message: string
  /** The change (secrets masked): with dryRun, and for updated servers. */
  diff?: string
  /** The user looked up through the new configuration. */
  checkedUser?: string
  ms: number
}

export interface RemoteOptions {
  /** Server names (role proxy: proxy host names); default every server (proxy host) in the store. */
  servers?: string[]
  version?: DovecotVersion
  /** backend (default): the mail servers, each its own file; proxy: the proxy hosts, the proxy passdb. */
  role?: DovecotRole
  parallel?: number
  continueOnError?: boolean
  /** Behave like StrictHostKeyChecking=accept-new. */
  acceptNew?: boolean
  /** Use ssh-agent (default true). */
  agent?: boolean
  /** Show secrets in diffs (default: masked). */
  showSecrets?: boolean
  onResult?: (result: ServerPushResult) => void
  onNote?: (message: string) => void
}

export interface PushOptions extends RemoteOptions {
  dryRun?: boolean
}

export const BACKUP_SUFFIX = '.mailring-backup'
/** How long `doveadm user` may keep failing after a reload before the new file counts as broken. */
const LOOKUP_DEADLINE_MS = 5_000
const LOOKUP_SETTLE_MS = 300

interface Target {
  name: string
  rendering?: ServerRendering
  /** Why this server cannot be worked on at all (unknown, no address, render error). */
  problem?: string
}

/**
 * What to work on: with role backend, the named servers (default every server in the store), each with its
 * own file; with role proxy, the named proxy and director hosts (default every one in the store), each with
 * the proxy passdb in its Dovecot version.
 */
async function targets(ctx: DovecotContext, options: RemoteOptions): Promise<Target[]> {
  const named = options.servers && options.servers.length > 0 ? options.servers : undefined
  const version = options.version ? {version: options.version} : {}
  if (options.role === 'proxy') {
    const hosts = await ctx.store.listHosts()
    const names = named ?? hosts.map((h) => h.name).sort()
    return [...new Set(names)].map((name) => {
      try {
        return {name, rendering: renderForHost(ctx, findHost(hosts, name), version)}
      } catch (error) {
        return {name, problem: errorText(error)}
      }
    })
  }
  const names = named ?? ctx.servers.map((s) => s.name)
  return [...new Set(names)].map((name) => {
    try {
      const server = findServer(ctx, name)
      if (server.address === '')
        return {
          name,
          problem: `server ${name} has no address: set one with \`mailring node set ${name} --address HOST\``,
        }
      return {
        name,
        rendering: renderFor(ctx, name, {...version, ...(options.role ? {role: options.role} : {})}),
      }
    } catch (error) {
      return {name, problem: errorText(error)}
    }
  })
}

export function connectOptions(
  ctx: DovecotContext,
  address: string,
  options: RemoteOptions,
): SshConnectOptions {
  const ssh = ctx.ssh
  return {
    host: address,
    ...(ssh.user ? {user: ssh.user} : {}),
    ...(ssh.identityFiles ? {identityFiles: ssh.identityFiles} : {}),
    ...(ssh.knownHostsFiles ? {knownHostsFiles: ssh.knownHostsFiles} : {}),
    ...(ssh.connectTimeoutMs ? {readyTimeoutMs: ssh.connectTimeoutMs} : {}),
    ...(options.acceptNew ? {hostKeyPolicy: 'accept-new' as const} : {}),
    agent: options.agent ?? true,
    connectAttempts: 1,
    resolve: {
      ...(ssh.configFile !== undefined ? {configPath: ssh.configFile} : {}),
      env: ctx.env,
    },
    ...(options.onNote ? {onNote: options.onNote} : {}),
  }
}

function masked(ctx: DovecotContext, rendering: ServerRendering, text: string, show: boolean): string {
  return show ? text : maskSecrets(text, rendering.rendered.secrets)
}

async function runOnTargets(
  ctx: DovecotContext,
  options: RemoteOptions,
  work: (target: Target & {rendering: ServerRendering}, started: number) => Promise<ServerPushResult>,
): Promise<ServerPushResult[]> {
  const list = await targets(ctx, options)
  const results = await runPerServer(
    list,
    async (target) => {
      const started = Date.now()
      if (target.problem !== undefined || !target.rendering)
        throw new MailringError(target.problem ?? 'cannot render')
      return work(target as Target & {rendering: ServerRendering}, started)
    },
    {
      parallel: options.parallel ?? 1,
      continueOnError: options.continueOnError ?? false,
      onResult: (r) => options.onResult?.(toResult(r)),
    },
  )
  return results.map(toResult)

  function toResult(r: ServerResult<Target, ServerPushResult>): ServerPushResult {
    const base = {
      server: r.server.name,
      address: r.server.rendering?.address ?? '',
      path: r.server.rendering?.path ?? '',
      ms: 0,
    }
    if (r.status === 'ok') return r.value
    if (r.status === 'skipped')
      return {
        ...base,
        status: 'skipped',
        message: 'not started: an earlier server failed (see --continue-on-error)',
      }
    const error = r.error as Error & {pushResult?: ServerPushResult}
    if (error.pushResult) return error.pushResult
    return {...base, status: 'failed', message: firstLine(errorText(error))}
  }
}

/** A failure that carries its result (rolled back, or failed after connecting). */
function failed(result: ServerPushResult): Error {
  const error = new Error(result.message) as Error & {pushResult: ServerPushResult}
  error.pushResult = result
  return error
}

export async function pushConfig(
  ctx: DovecotContext,
  options: PushOptions = {},
): Promise<ServerPushResult[]> {
  const names = (
    options.servers && options.servers.length > 0 ? options.servers : ctx.servers.map((s) => s.name)
  ).filter((n) => ctx.servers.some((s) => s.name === n))
  const samples =
    ctx.settings.verifyLookup && options.role !== 'proxy'
      ? await sampleUsers(ctx, names)
      : new Map<string, SampleUser>()
  const proxySample =
    ctx.settings.verifyLookup && options.role === 'proxy' ? await proxySampleUser(ctx) : undefined
  return runOnTargets(ctx, options, async (target, started) => {
    const r = target.rendering
    const result = (
      status: PushStatus,
      message: string,
      extra: Partial<ServerPushResult> = {},
    ): ServerPushResult => ({
      server: target.name,
      address: r.address,
      path: r.path,
      status,
      message,
      ...extra,
      ms: Date.now() - started,
    })
    const conn = await SshConnection.connect(connectOptions(ctx, r.address, options))
    try {
      return await pushOne(ctx, conn, r, samples.get(target.name) ?? proxySample, options, result)
    } finally {
      await conn.close()
    }
  })
}

async function pushOne(
  ctx: DovecotContext,
  conn: SshConnection,
  r: ServerRendering,
  /** Role proxy: the user whose login the new passdb must send to one of `hosts`. */
  sample: SampleUser | ProxySample | undefined,
  options: PushOptions,
  result: (status: PushStatus, message: string, extra?: Partial<ServerPushResult>) => ServerPushResult,
): Promise<ServerPushResult> {
  const s = ctx.settings
  const path = r.path
  const wanted = r.rendered.text
  // Content and owner/mode of the installed file in one read (open, fstat, read, close).
  const installed = await conn.readFileWithStat(path)
  const currentBuffer = installed?.data
  const current = currentBuffer?.toString('utf8')
  if (current === wanted) return result('unchanged', 'unchanged: nothing written, no reload')
  const diff = masked(
    ctx,
    r,
    unifiedDiff(current ?? '', wanted, {fromLabel: `${r.server}:${path}`, toLabel: `${path} (rendered)`}),
    options.showSecrets ?? false,
  )
  if (options.dryRun) {
    return result('would-update', current === undefined ? `would create ${path}` : `would update ${path}`, {
      diff,
    })
  }

  const backup = path + BACKUP_SUFFIX
  const previous = installed?.stat

  // The new file goes to a temporary file (SFTP: content, mode, fsync); then ONE remote command gives it
  // its owner (by name, as configured), renames it over the old one, validates with doveconf, reloads
  // Dovecot and (after the settle time) makes the first lookup through the new file. Each step runs only
  // when the one before succeeded, and the command says which one failed (see installScript).
  // The backup and the temporary file are written at the same time over the one SFTP session (their
  // requests interleave: over a network, the round trips of one write instead of two); both are complete
  // before the command runs. When the backup fails, the temporary file is removed.
  const proxying = options.role === 'proxy'
  const lookup = s.verifyLookup ? sample : undefined
  const [kept, uploaded] = await Promise.allSettled([
    currentBuffer && previous
      ? conn.writeFileAtomic(backup, currentBuffer, {
          mode: previous.mode,
          uid: previous.uid,
          gid: previous.gid,
        })
      : Promise.resolve(),
    // The installed file's owner from the read (no stat of it again); installScript sets the configured one.
    conn.writeTempFile(
      path,
      wanted,
      previous ? {mode: s.mode, uid: previous.uid, gid: previous.gid} : {mode: s.mode},
    ),
  ])
  if (kept.status === 'rejected') {
    if (uploaded.status === 'fulfilled') await conn.unlink(uploaded.value).catch(() => undefined)
    throw kept.reason
  }
  if (uploaded.status === 'rejected') throw uploaded.reason
  const temp = uploaded.value
  let install: ExecResult
  try {
    install = await conn.exec(
      installScript({
        temp,
        path,
        owner: `${s.owner}:${s.group}`,
        doveconf: s.doveconf,
        doveadm: s.doveadm,
        ...(lookup
          ? {
              lookupUser: lookup.user,
              settleMs: LOOKUP_SETTLE_MS,
              ...(proxying ? {lookupCommand: authLookupCommand(lookup.user)} : {}),
            }
          : {}),
      }),
      {label: 'install', timeoutMs: 60_000},
    )
  } catch (error) {
    // The command's outcome is unknown (connection lost, timeout): make sure no temporary file stays.
    await conn.unlink(temp).catch(() => undefined)
    throw error
  }
  const why = firstLine(install.stderr || install.stdout)
  if (install.exitCode === EXIT_CHOWN)
    throw new MailringError(`Cannot give ${path} on ${r.server} to ${s.owner}:${s.group}: ${why}`, {
      code: 'push_chown',
    })
  if (install.exitCode === EXIT_RENAME)
    throw new MailringError(`Cannot replace ${path} on ${r.server}: ${why}`, {code: 'push_rename'})

  const rollback = async (reason: string): Promise<never> => {
    let undo: string
    try {
      if (currentBuffer && previous) {
        await conn.writeFileAtomic(path, currentBuffer, {
          mode: previous.mode,
          uid: previous.uid,
          gid: previous.gid,
        })
        undo = 'the previous file was restored'
      } else {
        await conn.unlink(path)
        undo = 'the new file was removed (there was none before)'
      }
      const reload = await new SshDoveadm(conn, s.doveadm).run(reloadCommand())
      undo +=
        reload.outcome === 'ok' ? ' and Dovecot reloaded' : `, but doveadm reload failed: ${reload.message}`
    } catch (error) {
      undo = `rolling back failed too: ${errorText(error)}; the previous file is in ${backup}`
    }
    throw failed(result('rolled-back', `${reason}; ${undo}`, {diff}))
  }

  if (install.exitCode === EXIT_DOVECONF) return rollback(`doveconf rejected the configuration: ${why}`)
  if (install.exitCode === EXIT_RELOAD) return rollback(`doveadm reload failed: ${why}`)
  if (install.exitCode !== 0 && install.exitCode !== EXIT_LOOKUP) {
    return rollback(
      `installing the new file failed (exit ${install.exitCode ?? install.signal ?? '?'}): ${why}`,
    )
  }

  if (s.verifyLookup && proxying) {
    if (!sample || !('hosts' in sample)) {
      return result('updated', 'updated and reloaded (the store holds no user yet: nothing to look up)', {
        diff,
      })
    }
    const problem = await verifyProxyLookup(conn, s.doveadm, sample, {
      exitCode: install.exitCode === EXIT_LOOKUP ? lookupExitCode(install.stdout) : 0,
      stdout: install.stdout,
      stderr: install.stderr,
    })
    if (problem) return rollback(`the proxy lookup of ${sample.user} through the new file failed: ${problem}`)
    return result('updated', `updated and reloaded; ${sample.user} proxied through the new file`, {
      diff,
      checkedUser: sample.user,
    })
  }
  if (s.verifyLookup && !proxying && !(sample && 'hosts' in sample)) {
    if (!sample) {
      return result('updated', `updated and reloaded (${r.server} holds no user yet: nothing to look up)`, {
        diff,
      })
    }
    const first = replyOfProcess({
      stdout: install.stdout,
      stderr: install.stderr,
      exitCode: install.exitCode === EXIT_LOOKUP ? lookupExitCode(install.stdout) : 0,
    })
    const problem = await verifyLookup(new SshDoveadm(conn, s.doveadm), sample, r.version, first)
    if (problem) return rollback(`the lookup of ${sample.user} through the new file failed: ${problem}`)
    return result('updated', `updated and reloaded; ${sample.user} found through the new file`, {
      diff,
      checkedUser: sample.user,
    })
  }
  return result('updated', 'updated and reloaded', {diff})
}

/** Exit codes of installScript's steps (the lookup's own exit code is printed, see lookupExitCode). */
const EXIT_CHOWN = 81
const EXIT_RENAME = 82
const EXIT_DOVECONF = 83
const EXIT_RELOAD = 84
const EXIT_LOOKUP = 85
const LOOKUP_EXIT_MARKER = 'mailring-lookup-exit='

/**
 * One POSIX shell command for the steps after the upload, each only when the one before succeeded:
 * chown the temporary file (owner and group by name, resolved on the server); rename it over the target
 * (refused if the target is a directory); `doveconf -n`; `doveadm reload`; optionally sleep the settle time
 * and look the sample user up. A failing step prints its own output to stderr and exits 81..84 (chown and
 * rename remove the temporary file: the installed file is untouched). A failing lookup exits 85 and prints
 * its exit code after LOOKUP_EXIT_MARKER on stdout.
 */
export function installScript(o: {
  temp: string
  path: string
  owner: string
  doveconf: string
  doveadm: string
  lookupUser?: string
  /** The lookup to run (default `doveadm user lookupUser`; a proxy: `doveadm auth lookup`). */
  lookupCommand?: DoveadmCommand
  settleMs?: number
}): string {
  const t = shellQuote(o.temp)
  const p = shellQuote(o.path)
  const fail = (code: number, cleanup = '') => `{ ${cleanup}printf '%s\\n' "$out" >&2; exit ${code}; }`
  const lines = [
    `if ! out=$(chown ${shellQuote(o.owner)} ${t} 2>&1); then ${fail(EXIT_CHOWN, `rm -f ${t}; `)} fi`,
    `if [ -d ${p} ]; then out=${shellQuote(`${o.path} is a directory`)}; ${fail(EXIT_RENAME, `rm -f ${t}; `)} fi`,
    `if ! out=$(mv -f ${t} ${p} 2>&1); then ${fail(EXIT_RENAME, `rm -f ${t}; `)} fi`,
    `if ! out=$(${o.doveconf} -n 2>&1 >/dev/null); then ${fail(EXIT_DOVECONF)} fi`,
    `if ! out=$(${doveadmCommandLine(o.doveadm, reloadCommand())} 2>&1); then ${fail(EXIT_RELOAD)} fi`,
  ]
  if (o.lookupUser !== undefined) {
    const settle = ((o.settleMs ?? 0) / 1000).toFixed(3)
    lines.push(
      `sleep ${settle}`,
      doveadmCommandLine(o.doveadm, o.lookupCommand ?? userLookupCommand(o.lookupUser)),
      `rc=$?`,
      `if [ $rc -ne 0 ]; then echo "${LOOKUP_EXIT_MARKER}$rc"; exit ${EXIT_LOOKUP}; fi`,
    )
  }
  lines.push('exit 0')
  return lines.join('\n')
}

function lookupExitCode(stdout: string): number {
  const m = new RegExp(`${LOOKUP_EXIT_MARKER}(\\d+)`).exec(stdout)
  return m ? Number(m[1]) : 1
}

/** undefined when `doveadm user` answers as the store says it must; otherwise what is wrong. */
async function verifyLookup(
  doveadm: SshDoveadm,
  sample: SampleUser,
  version: DovecotVersion,
  first: DoveadmReply,
): Promise<string | undefined> {
  const deadline = Date.now() + LOOKUP_DEADLINE_MS
  let problem = ''
  let reply = first
  for (;;) {
    if (reply.outcome === 'ok') {
      const replica = userFieldsOf(reply.rows, sample.user).get('mail_replica')
      if (version === '2.4' || sample.mailReplica === undefined || replica === sample.mailReplica)
        return undefined
      problem = `mail_replica is ${replica ?? 'missing'}, expected ${sample.mailReplica}`
    } else {
      problem = `doveadm user exited ${reply.exitCode}: ${reply.message}`
    }
    if (Date.now() > deadline) return problem
    await new Promise((resolve) => setTimeout(resolve, 250))
    reply = await doveadm.run(userLookupCommand(sample.user), {timeoutMs: 30_000})
  }
}

/** A user for checking a proxy's new passdb, and the addresses of its copies (one must be the answer). */
export interface ProxySample {
  user: string
  hosts: string[]
}

/** The first user of the store (any will do: every user's login goes through the one query). */
async function proxySampleUser(ctx: DovecotContext): Promise<ProxySample | undefined> {
  const [record] = await ctx.store.listUsers({limit: 1})
  if (!record) return undefined
  const addressOf = new Map(ctx.servers.map((s) => [s.name, s.address]))
  return {user: record.user, hosts: record.copies.map((c) => addressOf.get(c) ?? '')}
}

/** undefined when the proxy's `doveadm auth lookup` sends the user to one of its copies; else what is wrong. */
async function verifyProxyLookup(
  conn: SshConnection,
  doveadm: string,
  sample: ProxySample,
  first: ExecResult | {exitCode: number; stdout: string; stderr: string},
): Promise<string | undefined> {
  const deadline = Date.now() + LOOKUP_DEADLINE_MS
  let problem = ''
  let reply = first
  for (;;) {
    if (reply.exitCode === 0) {
      const fields = authLookupFields(reply.stdout)
      const host = fields.get('host')
      if (/^y/i.test(fields.get('proxy') ?? '') && host !== undefined && sample.hosts.includes(host))
        return undefined
      problem = `the answer is proxy=${fields.get('proxy') ?? 'missing'} host=${host ?? 'missing'}, expected one of ${sample.hosts.join(', ')}`
    } else {
      problem = `doveadm auth lookup exited ${reply.exitCode ?? '?'}: ${firstLine(reply.stderr || reply.stdout)}`
    }
    if (Date.now() > deadline) return problem
    await new Promise((resolve) => setTimeout(resolve, 250))
    reply = await conn.exec(doveadmCommandLine(doveadm, authLookupCommand(sample.user)), {
      label: 'doveadm auth lookup',
      timeoutMs: 30_000,
    })
  }
}

export type DiffStatus = 'same' | 'different' | 'missing' | 'failed' | 'skipped'

export interface ServerDiffResult {
  server: string
  address: string
  path: string
  status: DiffStatus
  message: string
  diff?: string
}

export async function diffConfig(
  ctx: DovecotContext,
  options: RemoteOptions = {},
): Promise<ServerDiffResult[]> {
  const results = await runOnTargets(ctx, {...options, continueOnError: true}, async (target, started) => {
    const r = target.rendering
    const conn = await SshConnection.connect(connectOptions(ctx, r.address, options))
    try {
      const current = (await conn.readFile(r.path))?.toString('utf8')
      const same = current === r.rendered.text
      const diff = same
        ? ''
        : masked(
            ctx,
            r,
            unifiedDiff(current ?? '', r.rendered.text, {
              fromLabel: `${r.server}:${r.path}`,
              toLabel: `${r.path} (rendered)`,
            }),
            options.showSecrets ?? false,
          )
      const status: PushStatus = same ? 'unchanged' : current === undefined ? 'would-update' : 'would-update'
      return {
        server: target.name,
        address: r.address,
        path: r.path,
        status,
        message: same ? 'same' : current === undefined ? `${r.path} does not exist` : 'differs',
        ...(same ? {} : {diff}),
        ms: Date.now() - started,
      }
    } finally {
      await conn.close()
    }
  })
  return results.map((r) => ({
    server: r.server,
    address: r.address,
    path: r.path,
    status:
      r.status === 'unchanged'
        ? 'same'
        : r.status === 'would-update'
          ? r.message === 'differs'
            ? 'different'
            : 'missing'
          : r.status === 'skipped'
            ? 'skipped'
            : 'failed',
    message: r.message,
    ...(r.diff ? {diff: r.diff} : {}),
  }))
}
