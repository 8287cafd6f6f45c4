import {Command, Errors} from '@oclif/core'

import {ExitCode, isMailringError} from '../core/errors.js'
import {paint} from '../ui/terminal.js'

/** What every `--json` output looks like; the `result` of each command has its own stable shape. */
export interface JsonSuccess<T> {
  status: 0
  result: T
  warnings: string[]
}

export interface JsonFailure {
  status: number
  error: {code: string; message: string}
  warnings: string[]
}

/**
 * The base of every mailring command: the JSON envelope, warnings, and errors as one line with a
 * documented exit code (README, "Exit codes") instead of a stack trace.
 */
export abstract class BaseCommand extends Command {
  static override enableJsonFlag = true

  private readonly collectedWarnings: string[] = []

  /** Warnings go to stderr for people and into the envelope under --json. */
  protected warnUser(message: string): void {
    this.collectedWarnings.push(message)
    if (!this.jsonEnabled()) process.stderr.write(`${paint(process.stderr).yellow('Warning:')} ${message}\n`)
  }

  protected override toSuccessJson(result: unknown): JsonSuccess<unknown> {
    return {status: 0, result, warnings: this.collectedWarnings}
  }

  protected override toErrorJson(error: unknown): JsonFailure {
    const {code, message, exitCode} = describeError(error)
    return {status: exitCode, error: {code, message}, warnings: this.collectedWarnings}
  }

  override async catch(error: Error & {exitCode?: number}): Promise<void> {
    const {message, exitCode} = describeError(error)
    process.exitCode = exitCode
    if (this.jsonEnabled()) {
      this.logJson(this.toErrorJson(error))
      return
    }
    const colour = paint(process.stderr)
    for (const line of message.split('\n')) process.stderr.write(`${colour.red('Error:')} ${line}\n`)
    if (process.env.MAILRING_DEBUG && error.stack) process.stderr.write(`${error.stack}\n`)
  }
}

function describeError(error: unknown): {code: string; message: string; exitCode: number} {
  if (isMailringError(error)) return {code: error.code, message: error.message, exitCode: error.exitCode}
  if (error instanceof Errors.CLIError) {
    // oclif's own parse errors exit 2, which mailring reserves for "changes pending".
    const message = error.message.replace(/\s*See more help with --help$/s, '').replace(/\n+/g, ' ')
    return {code: 'usage', message: `${message} (see --help)`, exitCode: ExitCode.error}
  }
  const message = error instanceof Error ? error.message : String(error)
  return {
    code: 'internal',
    message: `${message} (set MAILRING_DEBUG=1 for details)`,
    exitCode: ExitCode.error,
  }
}
