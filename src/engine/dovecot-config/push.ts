/**
 * Installing each server's Dovecot SQL configuration over SSH, the way a careful operator would
 * (`mailring config push` and `config diff`). Per server, over ONE SSH connection, and for steps 1 to 4
 * in ONE remote shell command (pushScript) that prints the file and is then sent the new one on its stdin:
 *
 *   1. read the installed file; unchanged: nothing is written and Dovecot is not reloaded;
 *   2. keep the installed file as FILE.mailring-backup (same owner and mode: `cp -p` of the file read);
 *   3. write the new file atomically: temporary file, owner from the config (default root:dovecot 0640,
 *      names resolved on the server) and mode, fsync, rename over the old one;
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
import {randomBytes} from 'node:crypto'
import {posix} from 'node:path'

import {errorText, firstLine, MailringError} from '../../core/errors.js'
import type {DovecotRole, DovecotVersion} from '../../dovecot/render.js'
import {maskSecrets} from '../../dovecot/render.js'
import {unifiedDiff} from '../../dovecot/unified-diff.js'
import {runPerServer, type ServerResult} from '../../remote/pool.js'
import {
  authLookupCommand,
  authLookupFields,
  doveadmCommandLine,
  reloadCommand,
  userFieldsOf,
  userLookupCommand,
} from '../../dovecot/doveadm.js'
import {type DoveadmReply, replyOfProcess, SshDoveadm} from '../../remote/doveadm.js'
import {
  BACKUP_SUFFIX,
  EXIT_BACKUP,
  EXIT_CHOWN,
  EXIT_DOVECONF,
  EXIT_LOOKUP,
  EXIT_READ,
  EXIT_RELOAD,
  EXIT_RENAME,
  EXIT_WRITE,
  LOOKUP_EXIT_MARKER,
  pushScript,
  readFileLines,
  restoreScript,
} from '../../dovecot/scripts/config-push.js'
import {shellQuote} from '../../dovecot/scripts/shell.js'
import {type ExecResult, SshConnection, SshRunCache} from '../../remote/ssh.js'
import {
  findHost,
  findServer,
  renderFor,
  renderForHost,
  sampleUsers,
  type SampleUser,
  type ServerRendering,
} from './render.js'
import {connectOptions, type DovecotContext, type SshUse} from '../context.js'

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

export interface RemoteOptions extends SshUse {
  /** Server names (role proxy: proxy host names); default every server (proxy host) in the store. */
  servers?: string[]
  version?: DovecotVersion
  /** backend (default): the mail servers, each its own file; proxy: the proxy hosts, the proxy passdb. */
  role?: DovecotRole
  parallel?: number
  continueOnError?: boolean
  /** Show secrets in diffs (default: masked). */
  showSecrets?: boolean
  onResult?: (result: ServerPushResult) => void
}

export interface PushOptions extends RemoteOptions {
  dryRun?: boolean
}

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
  // The ssh config, known_hosts and key files are read once for all the servers.
  const cache = new SshRunCache()
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
    const conn = await SshConnection.connect(connectOptions(ctx, r.address, options, cache))
    try {
      return await pushOne(ctx, conn, r, samples.get(target.name) ?? proxySample, options, result)
    } finally {
      // Every result is in: the connection's end need not be waited for.
      conn.end()
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
  const backup = path + BACKUP_SUFFIX
  const proxying = options.role === 'proxy'
  const lookup = s.verifyLookup ? sample : undefined
  const temp = tempPath(path)
  const backupTemp = tempPath(backup)

  // ONE remote command does it all (pushScript): it prints the installed file and its owner and mode, then
  // waits for mailring's answer on its stdin: nothing to do (unchanged, --dry-run), or the new file, which
  // it installs (backup, temporary file, owner and mode, fsync, rename) and validates (doveconf, reload, the
  // first lookup), each step only when the one before succeeded, saying which one failed by its exit code.
  let installed: InstalledFile | undefined
  let decision: 'unchanged' | 'dry-run' | 'install' | undefined
  let diff = ''
  let readChars = 0
  const newContent = Buffer.from(wanted, 'utf8')
  let install: ExecResult
  try {
    install = await conn.exec(
      pushScript({
        path,
        marker: readMarker(temp),
        temp,
        backupTemp,
        owner: `${s.owner}:${s.group}`,
        mode: s.mode,
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
      {
        label: 'install',
        timeoutMs: 60_000,
        respond: (stdout) => {
          const read = parseInstalled(stdout, readMarker(temp))
          if (read === 'incomplete') return undefined
          installed = read
          // Everything printed so far is the file; what the command prints from here on is its own.
          readChars = stdout.toString('utf8').length
          const current = read?.data.toString('utf8')
          if (current === wanted) {
            decision = 'unchanged'
            return 'skip\n'
          }
          diff = masked(
            ctx,
            r,
            unifiedDiff(current ?? '', wanted, {
              fromLabel: `${r.server}:${path}`,
              toLabel: `${path} (rendered)`,
            }),
            options.showSecrets ?? false,
          )
          decision = options.dryRun ? 'dry-run' : 'install'
          if (options.dryRun) return 'skip\n'
          return Buffer.concat([Buffer.from(`install ${newContent.length}\n`), newContent])
        },
      },
    )
  } catch (error) {
    // The command's outcome is unknown (connection lost, timeout): make sure no temporary file stays.
    if (decision === 'install' && conn.isOpen) {
      await conn
        .exec(`rm -f ${shellQuote(temp)} ${shellQuote(backupTemp)}`, {label: 'cleanup', timeoutMs: 10_000})
        .catch(() => undefined)
    }
    throw error
  }
  // The install steps' own output (after the file).
  const stdout = install.stdout.slice(readChars)
  const why = firstLine(install.stderr || stdout)
  if (decision === undefined) return readFailed(conn, path, {...install, stdout}, 'install')
  if (decision === 'unchanged') return result('unchanged', 'unchanged: nothing written, no reload')
  if (decision === 'dry-run') {
    return result('would-update', installed === undefined ? `would create ${path}` : `would update ${path}`, {
      diff,
    })
  }
  if (install.exitCode === EXIT_WRITE)
    throw new MailringError(`Cannot write the new ${path} on ${r.server}: ${why}`, {code: 'push_write'})
  if (install.exitCode === EXIT_BACKUP)
    throw new MailringError(`Cannot keep ${path} on ${r.server} as ${backup}: ${why}`, {code: 'push_backup'})
  if (install.exitCode === EXIT_CHOWN)
    throw new MailringError(`Cannot give ${path} on ${r.server} to ${s.owner}:${s.group}: ${why}`, {
      code: 'push_chown',
    })
  if (install.exitCode === EXIT_RENAME)
    throw new MailringError(`Cannot replace ${path} on ${r.server}: ${why}`, {code: 'push_rename'})

  const rollback = async (reason: string): Promise<never> => {
    let undo: string
    try {
      // Over exec as the push itself (no SFTP): the file read goes back, with its owner and mode.
      const undone = installed
        ? await conn.exec(
            restoreScript({
              path,
              temp: tempPath(path),
              bytes: installed.data.length,
              owner: `${installed.uid}:${installed.gid}`,
              mode: installed.mode,
            }),
            {label: 'restore', stdin: installed.data, timeoutMs: 60_000},
          )
        : await conn.exec(`rm -f ${shellQuote(path)}`, {label: 'remove', timeoutMs: 60_000})
      if (undone.exitCode !== 0)
        throw new Error(firstLine(undone.stderr || `exit ${undone.exitCode ?? undone.signal ?? '?'}`))
      undo = installed ? 'the previous file was restored' : 'the new file was removed (there was none before)'
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
      exitCode: install.exitCode === EXIT_LOOKUP ? lookupExitCode(stdout) : 0,
      stdout,
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
      stdout,
      stderr: install.stderr,
      exitCode: install.exitCode === EXIT_LOOKUP ? lookupExitCode(stdout) : 0,
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

function lastLine(text: string): string {
  return text.trim().split('\n').pop()?.trim() ?? ''
}

/** The installed file as pushScript printed it: content, and owner and mode (of the file a symlink names). */
interface InstalledFile {
  data: Buffer
  mode: number
  uid: number
  gid: number
}

/** A new name in the folder of `path`, for a temporary file. */
function tempPath(path: string): string {
  return posix.join(
    posix.dirname(path),
    `.${posix.basename(path)}.mailring-${randomBytes(6).toString('hex')}.tmp`,
  )
}

/** The line that ends the installed file in pushScript's output: unlikely in a file, and new each push. */
function readMarker(temp: string): string {
  return `mailring-read-end${/-([0-9a-f]+)\.tmp$/.exec(temp)?.[1] ?? ''}`
}

/**
 * The installed file from pushScript's output so far: 'incomplete' until its end line came, undefined when
 * there is none. The output is `CONTENT \n MARKER MODE(hex) UID GID \n` or `\n MARKER missing \n`.
 */
function parseInstalled(stdout: Buffer, marker: string): InstalledFile | undefined | 'incomplete' {
  if (stdout.length === 0 || stdout[stdout.length - 1] !== 0x0a) return 'incomplete'
  const at = stdout.lastIndexOf(`\n${marker} `)
  if (at < 0) return 'incomplete'
  const fields = stdout
    .subarray(at + marker.length + 2, stdout.length - 1)
    .toString('utf8')
    .split(' ')
  if (fields[0] === 'missing') return undefined
  const [rawMode, uid, gid] = fields.map((f, i) => (i === 0 ? parseInt(f, 16) : Number(f)))
  if (fields.length !== 3 || !Number.isInteger(rawMode) || !Number.isInteger(uid) || !Number.isInteger(gid))
    throw new MailringError(`Unexpected stat output from the server: ${fields.join(' ')}`, {
      code: 'push_read',
    })
  return {data: stdout.subarray(0, at), mode: rawMode! & 0o7777, uid: uid!, gid: gid!}
}

/**
 * The installed file at `path` and its owner and mode (undefined: there is none), read by one command
 * (readLines) as a push reads it; for `config diff`.
 */
async function readInstalled(conn: SshConnection, path: string): Promise<InstalledFile | undefined> {
  const marker = readMarker(tempPath(path))
  const read = await conn.exec(readFileLines(path, marker).join('\n'), {label: 'read', timeoutMs: 60_000})
  const out = Buffer.from(read.stdout, 'utf8')
  const installed = read.exitCode === 0 ? parseInstalled(out, marker) : 'incomplete'
  if (installed === 'incomplete') return readFailed(conn, path, read, 'read')
  return installed
}

/**
 * The error of a command that ended before it printed the file (readLines): it could not read it
 * (EXIT_READ), or it did not run at all (e.g. a login without a shell, nologin): then SFTP names the file's
 * problem, if it has one.
 */
async function readFailed(conn: SshConnection, path: string, run: ExecResult, what: string): Promise<never> {
  const who = `${conn.target.user}@${conn.label}`
  const last = lastLine(run.stderr || run.stdout)
  if (run.exitCode === EXIT_READ && /permission denied/i.test(run.stderr))
    throw new MailringError(`Permission denied: cannot read ${path} on ${who}.`, {
      code: 'ssh_permission_denied',
    })
  if (run.exitCode !== EXIT_READ) await conn.readFile(path)
  throw new MailringError(
    `Cannot ${run.exitCode === EXIT_READ ? 'read' : `run the ${what} command for`} ${path} on ${who}: ${last || `exit ${run.exitCode ?? run.signal ?? '?'}`}`,
    {code: 'push_read'},
  )
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
  const cache = new SshRunCache()
  const results = await runOnTargets(ctx, {...options, continueOnError: true}, async (target, started) => {
    const r = target.rendering
    const conn = await SshConnection.connect(connectOptions(ctx, r.address, options, cache))
    try {
      const current = (await readInstalled(conn, r.path))?.data.toString('utf8')
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
