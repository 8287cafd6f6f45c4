/**
 * Runs the built CLI as operators do (`node bin/run.js ...`) for end-to-end tests. `npm test` builds first;
 * run `npm run build` yourself before `npx vitest run test/e2e`.
 *
 * The child gets a small, predictable environment: PATH, HOME, TMPDIR, LANG and NO_COLOR=1 (plain tables)
 * from here, then `options.env` (a value of undefined removes a variable). Nothing else leaks in, in
 * particular no MAILRING_* variable of the machine running the tests.
 */
import {type ChildProcess, execFile} from 'node:child_process'
import {existsSync} from 'node:fs'
import {join, resolve} from 'node:path'

import {refuseInUnitTier} from './tier.js'

export const repoRoot = resolve(import.meta.dirname, '..', '..')
const runJs = join(repoRoot, 'bin', 'run.js')

export interface CliResult<T = unknown> {
  stdout: string
  stderr: string
  /** The exit code; null when the process was killed by a signal (see `signal`). */
  exitCode: number | null
  signal: NodeJS.Signals | null
  /** stdout parsed as JSON, when it is JSON (e.g. with --json). */
  json?: T
  /** Wall-clock time in milliseconds. */
  elapsedMs: number
}

export interface CliOptions {
  env?: Record<string, string | undefined>
  /** Written to the child's stdin, which is then closed (stdin is always closed). */
  input?: string
  /** Working directory; the repository root by default. */
  cwd?: string
  /** Kill the child after this many milliseconds (default 120 s). */
  timeoutMs?: number
  /** A command that runs the CLI, e.g. ['setpriv', '--reuid=nobody', ...] for another user. */
  prefix?: readonly string[]
}

export function runCli<T = unknown>(
  args: readonly string[],
  options: CliOptions = {},
): Promise<CliResult<T>> {
  return startCli<T>(args, options).result
}

/** Starts the built CLI and hands back the process (to kill it, e.g.) and its result to come. */
export function startCli<T = unknown>(
  args: readonly string[],
  options: CliOptions = {},
): {child: ChildProcess; result: Promise<CliResult<T>>} {
  refuseInUnitTier('running the built CLI')
  if (!existsSync(join(repoRoot, 'dist', 'cli', 'commands')))
    throw new Error('The CLI is not built: run `npm run build` (npm test does) before the e2e tests.')
  const env: Record<string, string> = {NO_COLOR: '1'}
  for (const name of ['PATH', 'HOME', 'TMPDIR', 'LANG', 'SYSTEMROOT']) {
    const value = process.env[name]
    if (value !== undefined) env[name] = value
  }
  for (const [name, value] of Object.entries(options.env ?? {})) {
    if (value === undefined) delete env[name]
    else env[name] = value
  }
  const started = Date.now()
  let child!: ChildProcess
  const result = new Promise<CliResult<T>>((resolvePromise) => {
    const [command, ...prefixArgs] = [...(options.prefix ?? []), process.execPath]
    child = execFile(
      command!,
      [...prefixArgs, runJs, ...args],
      {
        cwd: options.cwd ?? repoRoot,
        env,
        maxBuffer: 256 * 1024 * 1024,
        timeout: options.timeoutMs ?? 120_000,
        encoding: 'utf8',
      },
      (error, stdout, stderr) => {
        const failure = error as (NodeJS.ErrnoException & {code?: unknown; signal?: NodeJS.Signals}) | null
        const exitCode = !failure
          ? 0
          : typeof failure.code === 'number'
            ? failure.code
            : failure.signal
              ? null
              : 1
        const result: CliResult<T> = {
          stdout,
          stderr,
          exitCode,
          signal: failure?.signal ?? null,
          elapsedMs: Date.now() - started,
        }
        const text = stdout.trim()
        if (text.startsWith('{') || text.startsWith('[')) {
          try {
            result.json = JSON.parse(text) as T
          } catch {
            // Not JSON after all: leave json undefined.
          }
        }
        resolvePromise(result)
      },
    )
    child.stdin?.end(options.input ?? '')
  })
  return {child, result}
}

/** The `--json` envelope every mailring command prints (src/cli/base-command.ts). */
export interface JsonEnvelope<T> {
  status: number
  result?: T
  error?: {code: string; message: string}
  warnings: string[]
}

/** Waits until the child has printed `text` on stdout (e.g. a --json-lines event); throws after `timeoutMs`. */
export async function waitForOutput(child: ChildProcess, text: string, timeoutMs = 60_000): Promise<void> {
  let out = ''
  const take = (chunk: Buffer) => (out += chunk.toString())
  child.stdout!.on('data', take)
  try {
    const deadline = Date.now() + timeoutMs
    while (!out.includes(text)) {
      if (Date.now() > deadline) throw new Error(`"${text}" not printed within ${timeoutMs} ms:\n${out}`)
      await new Promise((resolve) => setTimeout(resolve, 50))
    }
  } finally {
    child.stdout!.off('data', take)
  }
}
