/**
 * Exit codes are part of mailring's interface (README, "Exit codes"); scripts depend on them.
 */
export const ExitCode = {
  ok: 0,
  /** Bad input, usage errors, failed validation; also any unexpected failure. */
  error: 1,
  /** Only with --detailed-exitcode: the plan has changes pending. */
  changesPending: 2,
  /** Another mailring process holds the cluster lock. */
  locked: 3,
  /** The store (database) cannot be opened, read or written. */
  store: 4,
} as const

/**
 * An error meant for the operator: one line that names the problem and, where there is one, the fix.
 * Commands print `message` as it is, never a stack trace.
 */
export class MailringError extends Error {
  readonly exitCode: number
  readonly code: string

  constructor(message: string, options: {code?: string; exitCode?: number; cause?: unknown} = {}) {
    super(message, options.cause === undefined ? undefined : {cause: options.cause})
    this.name = 'MailringError'
    this.code = options.code ?? 'invalid_input'
    this.exitCode = options.exitCode ?? ExitCode.error
  }
}

export function isMailringError(value: unknown): value is MailringError {
  return value instanceof MailringError
}

/** The message of anything thrown. */
export function errorText(error: unknown): string {
  return error instanceof Error ? error.message : String(error)
}

/** The first non-blank line of a program's output, trimmed: what one-line error messages quote. */
export function firstLine(text: string): string {
  return (
    text
      .split('\n')
      .map((l) => l.trim())
      .find((l) => l !== '') ?? ''
  )
}
