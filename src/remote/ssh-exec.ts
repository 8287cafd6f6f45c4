/**
 * One command on an open channel: its stdout and stderr collected (both read to the end, or the window
 * fills and the channel never closes), its stdin written or answered (respond), its timeout, and its exit
 * status. SshConnection.exec (ssh.ts) opens the channel and calls runOnChannel.
 *
 * The exit status also travels as the last line of stderr (withExitLine): OpenSSH (9.2 seen, in CI and
 * here on a busy machine) now and then closes the channel of a command that ended at once without sending
 * its exit status, and a step that succeeded must not then count as failed (a config push rolled back). The
 * line is taken out of stderr and stands in for the status the channel did not bring; every caller gets
 * this, none needs its own.
 */
import {randomBytes} from 'node:crypto'

import type {ClientChannel} from 'ssh2'

import {MailringError} from '../core/errors.js'
import {shellQuote} from '../dovecot/scripts/shell.js'
import {channelError, seconds} from './ssh-errors.js'
import {killRemote} from './ssh2-patches.js'

export const DEFAULT_COMMAND_TIMEOUT_MS = 120_000
const DEFAULT_MAX_OUTPUT_BYTES = 64 * 1024 * 1024

export interface ExecOptions {
  /** Written to the command's standard input, which is then closed. Without it, stdin is closed at once. */
  stdin?: string | Buffer
  /**
   * A conversation instead of `stdin`: stdin stays open, and each time the command's stdout grows this is
   * called with all of it so far, until it returns what to write to stdin (which is then closed); undefined:
   * wait for more. E.g. a command prints a file, and what it is sent next depends on it, without a second
   * command (and its round trips). If it throws, stdin is closed at once and exec rejects with its error.
   * Ignored when `stdin` is given.
   */
  respond?: (stdout: Buffer) => string | Buffer | undefined
  /**
   * After this the channel is closed and the command killed; default 120 s. See `remoteKill` for how the
   * command is killed on the server.
   */
  timeoutMs?: number
  /**
   * Make sure a timed-out command dies on the server (default true): the command runs as
   * `timeout -s KILL <timeout + 1 s> "$SHELL" -c '<command>'` (coreutils or busybox `timeout`; without it,
   * as is), since OpenSSH refuses the SSH "signal" request for root logins (root sessions run without
   * privilege separation) and closing the channel does not end a command that produces no output. The
   * command still runs in the login shell, with the same stdin, stdout, stderr and exit status.
   * false: the command string is sent as it is (after the line that prints its exit status, see
   * withExitLine), and a timeout only sends the signal request and closes.
   */
  remoteKill?: boolean
  /**
   * The command ends by itself and must not be killed (it finishes a change or undoes it on its own): no
   * `timeout` wrapper and no signal request; a timeout only closes the channel, and the command goes on.
   */
  leaveRunning?: boolean
  /** Names the command in error messages instead of its first word. */
  label?: string
  /** Environment variables (sshd accepts only the names its AcceptEnv lists). */
  env?: Record<string, string>
  /** Output kept per stream; the rest is read and dropped (`truncated` says so). Default 64 MiB. */
  maxOutputBytes?: number
}

export interface ExecResult {
  stdout: string
  stderr: string
  /**
   * The exit status (the channel's, else the one the shell printed: see withExitLine); null when the
   * command was ended by a signal, or neither came (the shell itself was killed).
   */
  exitCode: number | null
  /** The signal that ended the command, e.g. `SIGTERM`. */
  signal?: string
  /** Some output was dropped (maxOutputBytes). */
  truncated?: boolean
}

/** The command wrapped so that the server kills it (its whole process group) a second after our timeout. */
function withRemoteTimeout(command: string, timeoutMs: number): string {
  const secs = Math.ceil(timeoutMs / 1000) + 1
  const quoted = shellQuote(command)
  return `if command -v timeout >/dev/null 2>&1; then exec timeout -s KILL ${secs} "$SHELL" -c ${quoted}; else exec "$SHELL" -c ${quoted}; fi`
}

/** A marker for the exit line of one command: new for each, so that no output can forge it. */
export function newExitMarker(): string {
  return `mailring-exit-${randomBytes(6).toString('hex')}`
}

/**
 * The command preceded by an EXIT trap that prints `\n<marker> <status>\n` on stderr as the shell exits,
 * whether the command ends or calls `exit`: the last thing the shell writes. A shell killed by a signal
 * prints nothing (the channel's signal says it), nor does a command that sets its own EXIT trap or `exec`s
 * at the end (the channel's status is then all there is, as without the line).
 */
export function withExitLine(command: string, marker: string): string {
  return `trap 'printf "\\n%s %d\\n" ${marker} "$?" >&2' EXIT\n${command}`
}

/** The longest exit line: newline, marker, space, status (at most 3 digits), newline. */
const EXIT_LINE_MAX = 1 + newExitMarker().length + 1 + 3 + 1

/** The exit line at the very end of `stderrTail` (the last bytes of stderr): its status and its length. */
export function exitLineOf(stderrTail: Buffer, marker: string): {status: number; bytes: number} | undefined {
  const match = new RegExp(`\n${marker} (\\d{1,3})\n$`).exec(stderrTail.toString('latin1'))
  return match ? {status: Number(match[1]), bytes: match[0].length} : undefined
}

/** The remote command line for `command`: see ExecOptions.remoteKill and withExitLine. */
export function remoteCommand(command: string, options: ExecOptions, exitMarker: string): string {
  const reported = withExitLine(command, exitMarker)
  return options.remoteKill === false || options.leaveRunning === true
    ? reported
    : withRemoteTimeout(reported, options.timeoutMs ?? DEFAULT_COMMAND_TIMEOUT_MS)
}

/**
 * Runs the command of an opened channel to its end (see SshConnection.exec): calls `resolve` with its
 * result when the channel closes, or `reject` on timeout (the command killed), a channel error, or an error
 * from `respond`. `label` names the command and `server` the server in messages; `exitMarker` is the one
 * remoteCommand was given.
 */
export function runOnChannel(
  stream: ClientChannel,
  options: ExecOptions,
  {label, server, exitMarker}: {label: string; server: string; exitMarker: string},
  resolve: (result: ExecResult) => void,
  reject: (error: unknown) => void,
): void {
  const timeoutMs = options.timeoutMs ?? DEFAULT_COMMAND_TIMEOUT_MS
  const limit = options.maxOutputBytes ?? DEFAULT_MAX_OUTPUT_BYTES
  const out: Buffer[] = []
  const err: Buffer[] = []
  let outBytes = 0
  let errBytes = 0
  /** The last bytes of stderr, kept whatever the limit: where the exit line is. */
  let errTail = Buffer.alloc(0)
  let exitCode: number | null = null
  let signal: string | undefined
  let done = false

  const collect = (chunks: Buffer[], size: number, chunk: Buffer): number => {
    if (size + chunk.length <= limit) chunks.push(chunk)
    else if (size < limit) chunks.push(chunk.subarray(0, limit - size))
    return size + chunk.length
  }
  // Both streams must be read, or the window fills and the channel never closes.
  stream.on('data', (chunk: Buffer) => {
    outBytes = collect(out, outBytes, chunk)
  })
  stream.stderr.on('data', (chunk: Buffer) => {
    errBytes = collect(err, errBytes, chunk)
    errTail = Buffer.concat([errTail, chunk])
    if (errTail.length > EXIT_LINE_MAX) errTail = errTail.subarray(errTail.length - EXIT_LINE_MAX)
  })
  stream.on('exit', (code: number | null, sig?: string) => {
    exitCode = code
    if (sig) signal = sig
  })
  const timer = setTimeout(() => {
    if (done) return
    done = true
    if (options.leaveRunning !== true) killRemote(stream)
    stream.close()
    stream.emit('mailring-abandoned')
    reject(
      new MailringError(
        options.leaveRunning === true
          ? `Command \`${label}\` on ${server} did not end within ${seconds(timeoutMs)}; it goes on there by itself.`
          : `Command \`${label}\` on ${server} timed out after ${seconds(timeoutMs)} and was killed.`,
        {code: 'ssh_command_timeout'},
      ),
    )
  }, timeoutMs)
  stream.on('close', () => {
    if (done) return
    done = true
    clearTimeout(timer)
    const exitLine = exitLineOf(errTail, exitMarker)
    // The command's own stderr ends where the exit line starts.
    const commandErrBytes = errBytes - (exitLine?.bytes ?? 0)
    const result: ExecResult = {
      stdout: Buffer.concat(out).toString('utf8'),
      stderr: Buffer.concat(err).subarray(0, commandErrBytes).toString('utf8'),
      exitCode: exitCode === null && signal === undefined && exitLine ? exitLine.status : exitCode,
    }
    if (signal) result.signal = signal
    if (outBytes > limit || commandErrBytes > limit) result.truncated = true
    resolve(result)
  })
  stream.on('error', (error: Error) => {
    if (done) return
    done = true
    clearTimeout(timer)
    stream.close()
    stream.emit('mailring-abandoned')
    reject(channelError(error, `run \`${label}\``, server))
  })
  stream.stdin.on('error', () => {}) // EPIPE-like: the command did not read its input
  if (options.stdin !== undefined && options.stdin.length > 0) stream.end(options.stdin)
  else if (options.respond) {
    const respond = options.respond
    let answered = false
    stream.on('data', () => {
      if (answered || done) return
      let reply: string | Buffer | undefined
      try {
        reply = respond(Buffer.concat(out))
      } catch (error) {
        answered = true
        done = true
        clearTimeout(timer)
        stream.end()
        reject(error)
        return
      }
      if (reply === undefined) return
      answered = true
      if (reply.length > 0) stream.end(reply)
      else stream.end()
    })
  } else stream.end()
}
