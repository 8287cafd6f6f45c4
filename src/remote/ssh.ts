/**
 * One SSH connection to one server, built on ssh2's Client: host key verification against known_hosts,
 * public key authentication (ssh-agent and key files), and commands with timeouts. Every step mailring
 * takes on a server is a command (exec); SFTP only reads a file, when a command could not run, to name the
 * file's problem. A caller opens one SshConnection per server and runs every step over it.
 *
 * Secrets are never put into messages: not key material, not passphrases, not stdin, and of a command only
 * its `label` (default: its first word), since command lines can carry credentials.
 */
import type {ClientChannel, SFTPWrapper} from 'ssh2'

import {MailringError} from '../core/errors.js'
import {Semaphore} from './pool.js'
import {connectClient, type ConnectedClient, type SshConnectOptions} from './ssh-connect.js'
import type {ResolvedHost} from './ssh-config.js'
import {channelError, errorCode, SFTP_NO_SUCH_FILE, sftpError} from './ssh-errors.js'
import {type ExecOptions, type ExecResult, newExitMarker, remoteCommand, runOnChannel} from './ssh-exec.js'

export {SshRunCache, type SshConnectOptions} from './ssh-connect.js'
export type {ExecOptions, ExecResult} from './ssh-exec.js'

/** After a timeout: how long a channel the server has not closed yet still counts toward maxChannels. */
const CHANNEL_RELEASE_GRACE_MS = 5_000

export class SshConnection {
  /** `alias (hostName)` or the host name, plus `:port` when not 22: how messages name the server. */
  readonly label: string
  /** The host key the server presented, verified. */
  readonly hostKey: {type: string; fingerprint: string}

  private readonly channels: Semaphore
  private sftpSession: Promise<SFTPWrapper> | undefined
  private closed = false
  private closeError: Error | undefined
  private readonly pending = new Set<(error: Error) => void>()

  private constructor(
    private readonly client: ConnectedClient['client'],
    readonly target: ResolvedHost,
    label: string,
    hostKey: {type: string; fingerprint: string},
    maxChannels: number,
  ) {
    this.label = label
    this.hostKey = hostKey
    this.channels = new Semaphore(maxChannels)
    client.on('error', (error: Error) => {
      this.closeError ??= error
    })
    client.on('close', () => {
      this.closed = true
      this.sftpSession = undefined
      const error = new MailringError(
        `The SSH connection to ${this.label} was lost${this.closeError ? ` (${this.closeError.message})` : ''}.`,
        {code: 'ssh_connection_lost', cause: this.closeError},
      )
      for (const reject of [...this.pending]) reject(error)
      this.pending.clear()
    })
  }

  /** Opens and authenticates a connection; throws a one-line MailringError when it cannot. */
  static connect(options: SshConnectOptions): Promise<SshConnection> {
    return connectClient(
      options,
      (c) => new SshConnection(c.client, c.target, c.label, c.hostKey, c.maxChannels),
    )
  }

  // -------------------------------------------------------------------------------------------------------
  // Commands

  /**
   * Runs a command, collecting stdout and stderr; a non-zero exit is a result, not an error. At most
   * `maxChannels` commands run at once on this connection; the others wait for a free channel (the wait does
   * not count toward the timeout). On timeout the promise rejects at once; the channel stays counted until
   * the server has closed it (or 5 s have passed).
   */
  async exec(command: string, options: ExecOptions = {}): Promise<ExecResult> {
    const label = options.label ?? command.trim().split(/\s+/)[0] ?? command
    const exitMarker = newExitMarker()
    this.assertOpen()
    const release = await this.channels.acquire()
    let channelGone: Promise<void> | undefined
    try {
      this.assertOpen()
      const stream = await this.tracked<ClientChannel>((resolve, reject) => {
        this.client.exec(
          remoteCommand(command, options, exitMarker),
          options.env ? {env: options.env} : {},
          (error, channel) => {
            if (error) reject(channelError(error, `run \`${label}\``, this.label))
            else resolve(channel)
          },
        )
      })
      // The channel permit is returned when the server has closed the channel, not when we stop waiting.
      channelGone = new Promise<void>((resolve) => {
        const grace = () => setTimeout(resolve, CHANNEL_RELEASE_GRACE_MS).unref()
        // (ssh2 also closes every channel when the connection ends.)
        stream.once('close', () => resolve())
        stream.once('mailring-abandoned', grace)
      })
      return await this.tracked<ExecResult>((resolve, reject) =>
        runOnChannel(stream, options, {label, server: this.label, exitMarker}, resolve, reject),
      )
    } finally {
      if (channelGone) void channelGone.then(release)
      else release()
    }
  }

  // -------------------------------------------------------------------------------------------------------
  // Reading a file (SFTP): only to name a file's problem when a command could not run

  /** A file's content, or undefined if it does not exist. */
  async readFile(path: string): Promise<Buffer | undefined> {
    const sftp = await this.sftp()
    try {
      return await this.tracked<Buffer>((resolve, reject) =>
        sftp.readFile(path, (error: Error | null | undefined, data: Buffer) =>
          error ? reject(error) : resolve(data),
        ),
      )
    } catch (error) {
      if (errorCode(error) === SFTP_NO_SUCH_FILE) return undefined
      throw this.sftpError(error, `read ${path}`)
    }
  }

  /** Closes the connection (waiting up to 5 s for it to end cleanly). */
  async close(): Promise<void> {
    if (this.closed) return
    await new Promise<void>((resolve) => {
      const timer = setTimeout(() => {
        this.client.destroy()
        resolve()
      }, 5_000)
      this.client.once('close', () => {
        clearTimeout(timer)
        resolve()
      })
      this.client.end()
    })
  }

  /**
   * Ends the connection without waiting for the server to close its side (one round trip less than close();
   * for when every result is in). The socket closes in the background; a lost connection is no error here.
   */
  end(): void {
    if (this.closed) return
    this.client.end()
    setTimeout(() => this.client.destroy(), 5_000).unref()
  }

  get isOpen(): boolean {
    return !this.closed
  }

  // -------------------------------------------------------------------------------------------------------

  private sftp(): Promise<SFTPWrapper> {
    this.assertOpen()
    if (!this.sftpSession) {
      const session = this.tracked<SFTPWrapper>((resolve, reject) => {
        this.client.sftp((error, sftp) => {
          if (error) {
            reject(
              new MailringError(
                `Cannot open SFTP on ${this.label}: ${error.message} (is "Subsystem sftp" enabled in its sshd_config?).`,
                {code: 'ssh_sftp', cause: error},
              ),
            )
            return
          }
          sftp.on('close', () => {
            if (this.sftpSession === session) this.sftpSession = undefined
          })
          resolve(sftp)
        })
      })
      session.catch(() => {
        if (this.sftpSession === session) this.sftpSession = undefined
      })
      this.sftpSession = session
    }
    return this.sftpSession
  }

  /** A promise that also rejects if the connection is lost meanwhile. */
  private tracked<T>(
    executor: (resolve: (value: T) => void, reject: (error: unknown) => void) => void,
  ): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      const onLost = (error: Error) => reject(error)
      this.pending.add(onLost)
      executor(
        (value) => {
          this.pending.delete(onLost)
          resolve(value)
        },
        (error) => {
          this.pending.delete(onLost)
          reject(error)
        },
      )
    })
  }

  private assertOpen(): void {
    if (this.closed) {
      throw new MailringError(`The SSH connection to ${this.label} is closed.`, {code: 'ssh_connection_lost'})
    }
  }

  private sftpError(error: unknown, action: string): MailringError {
    return sftpError(error, action, `${this.target.user}@${this.label}`)
  }
}
