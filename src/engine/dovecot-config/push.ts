/**
 * Installing each server's Dovecot SQL configuration over SSH, the way a careful operator would
 * (`mailring config push`; `config diff` reads the same files, diff.ts). Per server, over ONE SSH
 * connection, and for steps 1 to 4 in ONE remote shell command (pushScript) that prints the file and is
 * then sent the new one on its stdin:
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

import {errorText, firstLine, isMailringError, MailringError} from '../../core/errors.js'
import {unifiedDiff} from '../../dovecot/unified-diff.js'
import {authLookupCommand, reloadCommand} from '../../dovecot/doveadm.js'
import {replyOfProcess, SshDoveadm} from '../../remote/doveadm.js'
import {
  BACKUP_SUFFIX,
  EXIT_BACKUP,
  EXIT_CHOWN,
  EXIT_DOVECONF,
  EXIT_LOOKUP,
  EXIT_RELOAD,
  EXIT_RENAME,
  EXIT_WRITE,
  pushScript,
  pushScriptBudgetSeconds,
  restoreScript,
  ROLLBACK_MARKER,
} from '../../dovecot/scripts/config-push.js'
import {shellQuote} from '../../dovecot/scripts/shell.js'
import {type ExecResult, SshConnection, SshRunCache} from '../../remote/ssh.js'
import {sampleUsers, type SampleUser, type ServerRendering} from './render.js'
import {connectOptions, type DovecotContext} from '../context.js'
import {
  failed,
  masked,
  runOnTargets,
  type RemoteOptions,
  type PushStatus,
  type ServerPushResult,
} from './targets.js'
import {parseInstalled, readFailed, readMarker, tempPath, type InstalledFile} from './installed.js'
import {
  LOOKUP_SETTLE_MS,
  lookupExitCode,
  proxySampleUser,
  verifyLookup,
  verifyProxyLookup,
  type ProxySample,
} from './lookup-check.js'

export interface PushOptions extends RemoteOptions {
  dryRun?: boolean
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

/** What the script's own rollback did (ROLLBACK_MARKER), in the words of the report. */
function rollbackOutcome(stdout: string, backup: string): string {
  const said = new RegExp(`${ROLLBACK_MARKER}(.*)`).exec(stdout)?.[1]?.trim() ?? ''
  if (said === 'restored reloaded') return 'the previous file was restored and Dovecot reloaded'
  if (said === 'removed reloaded')
    return 'the new file was removed (there was none before) and Dovecot reloaded'
  if (said === 'restored reload-failed') return 'the previous file was restored, but doveadm reload failed'
  if (said === 'removed reload-failed') return 'the new file was removed, but doveadm reload failed'
  if (said.startsWith('failed '))
    return `rolling back failed too: ${said.slice('failed '.length)}; the previous file is in ${backup}`
  return `the server did not say whether it rolled back: see \`mailring config diff\`; the previous file is in ${backup}`
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
        // Once it has the new file the script finishes by itself, checks or rollback, within its own
        // limits: it is never killed halfway (that left a broken file installed, issue 23).
        timeoutMs: (pushScriptBudgetSeconds() + 15) * 1000,
        leaveRunning: true,
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
    // The outcome is unknown (connection lost, time-out), but not half done: what runs on the server
    // removes its temporary files before the rename and finishes the checks, or rolls back, after it.
    if (decision === 'install')
      throw new MailringError(
        `${errorText(error)} The install on ${r.server} ends there by itself, rolled back if a check fails: see \`mailring config diff --server ${r.server}\`.`,
        {code: isMailringError(error) ? error.code : 'push_unknown'},
      )
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

  // A check on the server failed: the script rolled back there by itself (pushScript).
  const rolledBack = (reason: string): never => {
    throw failed(result('rolled-back', `${reason}; ${rollbackOutcome(stdout, backup)}`, {diff}))
  }
  if (install.exitCode === EXIT_DOVECONF) return rolledBack(`doveconf rejected the configuration: ${why}`)
  if (install.exitCode === EXIT_RELOAD) return rolledBack(`doveadm reload failed: ${why}`)
  if (install.exitCode === EXIT_LOOKUP && lookup) {
    const code = lookupExitCode(stdout)
    const command = proxying ? 'doveadm auth lookup' : 'doveadm user'
    const said = firstLine(install.stderr) || `exit ${code}`
    return rolledBack(
      `the ${proxying ? 'proxy ' : ''}lookup of ${lookup.user} through the new file failed: ${command} exited ${code}: ${said}`,
    )
  }
  if (install.exitCode !== 0) {
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
      exitCode: 0,
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
      exitCode: 0,
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
