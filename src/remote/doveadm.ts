/**
 * How a doveadm command travels to a server. The command itself (its words, parameters and the parsing of
 * its answer) is src/dovecot/doveadm.ts; a transport only carries it and reports the exit code and rows.
 * Today: the doveadm binary over an SSH connection. The doveadm HTTP API plugs in beside it as another
 * DoveadmTransport.
 */
import {
  type DoveadmCommand,
  doveadmCommandLine,
  type DoveadmOutcome,
  outcomeOfExit,
  parseTabRows,
  type Row,
} from '../dovecot/doveadm.js'
import {firstLine} from '../core/errors.js'
import type {SshConnection} from './ssh.js'

export interface DoveadmReply {
  outcome: DoveadmOutcome
  /** doveadm's exit code (a signal or a lost exit status counts as 1: failed). */
  exitCode: number
  /** Table answers as rows; the HTTP API's object answers (e.g. `user`) as one object. */
  rows: Row[] | Record<string, unknown>
  /** What doveadm said on failure, one line; '' on success. */
  message: string
}

export interface DoveadmCallOptions {
  timeoutMs?: number
  /** Further attempts after a temporary failure (default: the transport's own). */
  retries?: number
}

export interface DoveadmTransport {
  /** Where the commands go, for messages (a server name or address). */
  readonly label: string
  run(command: DoveadmCommand, options?: DoveadmCallOptions): Promise<DoveadmReply>
}

/** The reply of a finished command-line doveadm, from its exit code and output. */
export function replyOfProcess(result: {
  exitCode: number | null
  stdout: string
  stderr: string
}): DoveadmReply {
  const exitCode = result.exitCode ?? 1
  const outcome = outcomeOfExit(exitCode)
  return {
    outcome,
    exitCode,
    rows: outcome === 'ok' || outcome === 'not-fully-synced' ? parseTabRows(result.stdout) : [],
    message: outcome === 'ok' ? '' : firstLine(result.stderr || result.stdout),
  }
}

/** doveadm run as a command over one SSH connection (the connection's channel limit bounds concurrency). */
export class SshDoveadm implements DoveadmTransport {
  constructor(
    private readonly conn: SshConnection,
    private readonly binary: string,
  ) {}

  get label(): string {
    return this.conn.label
  }

  async run(command: DoveadmCommand, options: DoveadmCallOptions = {}): Promise<DoveadmReply> {
    const result = await this.conn.exec(doveadmCommandLine(this.binary, command), {
      label: `doveadm ${command.words.join(' ')}`,
      timeoutMs: options.timeoutMs ?? 60_000,
    })
    return replyOfProcess(result)
  }
}
