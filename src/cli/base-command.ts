import {Command} from '@oclif/core/command'
import * as Errors from '@oclif/core/errors'

import {ExitCode, isMailringError} from '../core/errors.js'
import {paint} from '../ui/terminal.js'

/** What every `--json` output looks like; the `result` of each command has its own stable shape. */
export interface JsonSuccess<T> {
  /** The process exit code: 0, or what the command set in process.exitCode (e.g. 2 for changes pending). */
  status: number
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

  /**
   * The envelope's status is always the exit code: a command that ends with another code than 0 without an
   * error (changes pending, failed servers, copies that differ) sets process.exitCode before it returns.
   */
  protected override toSuccessJson(result: unknown): JsonSuccess<unknown> {
    return {status: currentExitCode(), result, warnings: this.collectedWarnings}
  }

  protected override toErrorJson(error: unknown): JsonFailure {
    const {code, message, exitCode} = describeError(error, this.usageContext())
    return {status: exitCode, error: {code, message}, warnings: this.collectedWarnings}
  }

  private usageContext(): UsageContext {
    const command = this.constructor as typeof BaseCommand
    return {bin: this.config.bin, id: this.id, examples: command.examples as UsageContext['examples']}
  }

  override async catch(error: Error & {exitCode?: number}): Promise<void> {
    const {message, exitCode} = describeError(error, this.usageContext())
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

function currentExitCode(): number {
  const code = Number(process.exitCode ?? ExitCode.ok)
  return Number.isInteger(code) ? code : ExitCode.error
}

/** What a usage message can point at: the command's first example, with `<%= config.bin %>` filled in. */
interface UsageContext {
  bin: string
  id?: string
  examples?: readonly (string | {command: string})[]
}

function describeError(
  error: unknown,
  usage?: UsageContext,
): {code: string; message: string; exitCode: number} {
  if (isMailringError(error))
    return {code: error.code, message: unwrapFlagParse(error.message), exitCode: error.exitCode}
  if (error instanceof Errors.CLIError) {
    // oclif's own parse errors exit 2, which mailring reserves for "changes pending".
    return {code: 'usage', message: `${usageMessage(error, usage)} (see --help)`, exitCode: ExitCode.error}
  }
  const message = error instanceof Error ? error.message : String(error)
  return {
    code: 'internal',
    message: `${message} (set MAILRING_DEBUG=1 for details)`,
    exitCode: ExitCode.error,
  }
}

/**
 * oclif wraps what a flag's parse function throws (e.g. --wait's MailringError) as "Parsing --NAME \n\t...\n
 * See more help with --help" (@oclif/core parser/parse.js): the message inside is the one to show.
 */
function unwrapFlagParse(message: string): string {
  return /^Parsing --\S+ \n\t(.*)\nSee more help with --help$/s.exec(message)?.[1] ?? message
}

/** oclif's parse errors (@oclif/core parser/errors.js, validate.js) in mailring's one-line form. */
function usageMessage(error: Errors.CLIError, usage?: UsageContext): string {
  // eslint-disable-next-line no-control-regex
  const text = error.message.replace(/\u001b\[[0-9;]*m/g, '').replace(/\s*See more help with --help$/s, '')
  const missingArgs = (error as {args?: unknown}).args
  if (/^Missing \d+ required args?/.test(text) && Array.isArray(missingArgs)) {
    const names = missingArgs.map((arg: {name?: string}) => (arg.name ?? '?').toUpperCase())
    const what = names.length === 1 ? `the argument ${names[0]}` : `the arguments ${names.join(' ')}`
    const example = firstExample(usage)
    return `Missing ${what}${example ? `: e.g. ${example}` : ''}`
  }
  let match = /^Expected --([^=\s]+)=(.*) to be one of: (.*)$/s.exec(text)
  if (match) return `--${match[1]} must be one of ${match[3]} (got "${match[2]}")`
  match = /^Expected (.*) to be one of: (.*)$/s.exec(text)
  if (match) return `The argument must be one of ${match[2]} (got "${match[1]}")`
  match = /^Nonexistent flags?: (.*)$/s.exec(text)
  if (match) return `Unknown flag ${match[1]}`
  match = /^Unexpected arguments?: (.*)$/s.exec(text)
  if (match) return `Unexpected argument ${match[1]}`
  match = /^The following errors? occurred:\s*(.*)$/s.exec(text)
  if (match) {
    const reasons = new Map<string, string>()
    for (const line of (match[1] ?? '').split('\n')) {
      if (line.trim() === '') continue
      const {key, text: reason} = flagReason(line.trim())
      if (!reasons.has(key)) reasons.set(key, reason)
    }
    return capitalise([...reasons.values()].join('; '))
  }
  return capitalise(text.replace(/\n+\s*/g, ' ').trim())
}

/** One reason of oclif's flag validation, reworded; two flags that exclude each other give one key. */
function flagReason(reason: string): {key: string; text: string} {
  const exclusive = /^--([^=\s]+)(?:=.*)? cannot also be provided when using --(\S+)$/s.exec(reason)
  if (exclusive) {
    const [, flag, other] = exclusive
    return {
      key: `exclusive ${[flag, other].sort().join(' ')}`,
      text: `--${flag} cannot be used with --${other}`,
    }
  }
  const rewordings: [RegExp, (m: RegExpExecArray) => string][] = [
    [/^Missing required flag (\S+)$/, (m) => `Missing the flag --${m[1]}`],
    [
      /^All of the following must be provided when using --(\S+): (.*)$/,
      (m) => `--${m[1]} needs ${m[2]} as well`,
    ],
    [
      /^One of the following must be provided when using --(\S+): (.*)$/,
      (m) => `--${m[1]} needs one of ${m[2]}`,
    ],
    [
      /^Only the following can be provided when using --(\S+): (.*)$/,
      (m) => `--${m[1]} can be used only with ${m[2]}`,
    ],
    [/^Exactly one of the following must be provided: (.*)$/, (m) => `Give exactly one of ${m[1]}`],
    [/^At least one of the following must be provided: (.*)$/, (m) => `Give at least one of ${m[1]}`],
  ]
  for (const [pattern, reword] of rewordings) {
    const match = pattern.exec(reason)
    if (match) return {key: reword(match), text: reword(match)}
  }
  return {key: reason, text: reason}
}

function firstExample(usage?: UsageContext): string | undefined {
  const example = usage?.examples?.[0]
  if (example === undefined) return undefined
  const text = typeof example === 'string' ? example : example.command
  return text
    .replaceAll('<%= config.bin %>', usage!.bin)
    .replaceAll('<%= command.id %>', (usage!.id ?? '').replaceAll(':', ' '))
    .split('\n')[0]
}

function capitalise(text: string): string {
  return text.charAt(0).toUpperCase() + text.slice(1)
}
