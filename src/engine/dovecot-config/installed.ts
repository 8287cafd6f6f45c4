/** The file installed on a server, read over SSH in one command as a push reads it. */
import {randomBytes} from 'node:crypto'
import {posix} from 'node:path'

import {MailringError} from '../../core/errors.js'
import {EXIT_READ, readFileLines} from '../../dovecot/scripts/config-push.js'
import {type ExecResult, SshConnection} from '../../remote/ssh.js'

export function lastLine(text: string): string {
  return text.trim().split('\n').pop()?.trim() ?? ''
}

/** The installed file as pushScript printed it: content, and owner and mode (of the file a symlink names). */
export interface InstalledFile {
  data: Buffer
  mode: number
  uid: number
  gid: number
}

/** A new name in the folder of `path`, for a temporary file. */
export function tempPath(path: string): string {
  return posix.join(
    posix.dirname(path),
    `.${posix.basename(path)}.mailring-${randomBytes(6).toString('hex')}.tmp`,
  )
}

/** The line that ends the installed file in pushScript's output: unlikely in a file, and new each push. */
export function readMarker(temp: string): string {
  return `mailring-read-end${/-([0-9a-f]+)\.tmp$/.exec(temp)?.[1] ?? ''}`
}

/**
 * The installed file from pushScript's output so far: 'incomplete' until its end line came, undefined when
 * there is none. The output is `CONTENT \n MARKER MODE(hex) UID GID \n` or `\n MARKER missing \n`.
 */
export function parseInstalled(stdout: Buffer, marker: string): InstalledFile | undefined | 'incomplete' {
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
export async function readInstalled(conn: SshConnection, path: string): Promise<InstalledFile | undefined> {
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
export async function readFailed(
  conn: SshConnection,
  path: string,
  run: ExecResult,
  what: string,
): Promise<never> {
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
