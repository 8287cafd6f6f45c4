/**
 * One command on an open channel: its stdout and stderr collected (both read to the end, or the window
 * fills and the channel never closes), its stdin written or answered (respond), its timeout, and its exit
 * status. SshConnection.exec (ssh.ts) opens the channel and calls runOnChannel.
 */
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
   * false: the command string is sent as it is, and a timeout only sends the signal request and closes.
   */
  remoteKill?: boolean
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
  /** The exit status; null when the command was ended by a signal or the server sent no status. */
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

/** The remote command line for `command`: see ExecOptions.remoteKill. */
export function remoteCommand(command: string, options: ExecOptions): string {
  return options.remoteKill === false
    ? command
    : withRemoteTimeout(command, options.timeoutMs ?? DEFAULT_COMMAND_TIMEOUT_MS)
}

/**
 * Runs the command of an opened channel to its end (see SshConnection.exec): calls `resolve` with its
 * result when the channel closes, or `reject` on timeout (the command killed), a channel error, or an error
 * from `respond`. `label` names the command and `server` the server in messages.
 */
export function runOnChannel(
  stream: ClientChannel,
  options: ExecOptions,
  {label, server}: {label: string; server: string},
  resolve: (result: ExecResult) => void,
  reject: (error: unknown) => void,
): void {
  const timeoutMs = options.timeoutMs ?? DEFAULT_COMMAND_TIMEOUT_MS
  const limit = options.maxOutputBytes ?? DEFAULT_MAX_OUTPUT_BYTES
  const out: Buffer[] = []
  const err: Buffer[] = []
  let outBytes = 0
  let errBytes = 0
  let truncated = false
  let exitCode: number | null = null
  let signal: string | undefined
  let done = false

  const collect = (chunks: Buffer[], size: number, chunk: Buffer): number => {
    if (size + chunk.length <= limit) chunks.push(chunk)
    else {
      truncated = true
      if (size < limit) chunks.push(chunk.subarray(0, limit - size))
    }
    return size + chunk.length
  }
  // Both streams must be read, or the window fills and the channel never closes.
  stream.on('data', (chunk: Buffer) => {
    outBytes = collect(out, outBytes, chunk)
  })
  stream.stderr.on('data', (chunk: Buffer) => {
    errBytes = collect(err, errBytes, chunk)
  })
  stream.on('exit', (code: number | null, sig?: string) => {
    exitCode = code
    if (sig) signal = sig
  })
  const timer = setTimeout(() => {
    if (done) return
    done = true
    killRemote(stream)
    stream.close()
    stream.emit('mailring-abandoned')
    reject(
      new MailringError(
        `Command \`${label}\` on ${server} timed out after ${seconds(timeoutMs)} and was killed.`,
        {code: 'ssh_command_timeout'},
      ),
    )
  }, timeoutMs)
  stream.on('close', () => {
    if (done) return
    done = true
    clearTimeout(timer)
    const result: ExecResult = {
      stdout: Buffer.concat(out).toString('utf8'),
      stderr: Buffer.concat(err).toString('utf8'),
      exitCode,
    }
    if (signal) result.signal = signal
    if (truncated) result.truncated = true
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
