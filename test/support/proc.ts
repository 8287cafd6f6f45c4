/**
 * Process plumbing shared by the test-bed helpers (mariadb.ts, dovecot.ts, sshd.ts): running a command to
 * completion, starting a daemon in its own process group, killing that group, temporary folders, and a
 * registry that kills what a test process started when it exits or when a later run finds it orphaned.
 */
import {spawn} from 'node:child_process'
import {randomBytes} from 'node:crypto'
import * as fs from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'

import {refuseInUnitTier} from './tier.js'

export interface CommandResult {
  stdout: string
  stderr: string
  /** The exit code; -1 when the process was ended by a signal (see `signal`) or could not be started. */
  exitCode: number
  signal: NodeJS.Signals | null
}

export interface RunOptions {
  /** Written to the command's standard input, which is then closed. Without it stdin is empty. */
  input?: string | Buffer
  /** Added to (and overriding) the current environment. */
  env?: Record<string, string | undefined>
  cwd?: string
  /** The command is killed (SIGKILL) after this long; default 60 s. */
  timeoutMs?: number
}

/** Runs a command to completion and captures its output. Never throws for a non-zero exit. */
export function run(
  command: string,
  args: readonly string[],
  options: RunOptions = {},
): Promise<CommandResult> {
  return new Promise((resolve) => {
    const child = spawn(command, args, {
      cwd: options.cwd,
      env: {...process.env, ...options.env},
      stdio: ['pipe', 'pipe', 'pipe'],
    })
    const out: Buffer[] = []
    const err: Buffer[] = []
    let spawnError: Error | undefined
    child.stdout.on('data', (b: Buffer) => out.push(b))
    child.stderr.on('data', (b: Buffer) => err.push(b))
    child.stdin.on('error', () => {}) // EPIPE when the command does not read its input
    const timer = setTimeout(() => child.kill('SIGKILL'), options.timeoutMs ?? 60_000)
    child.on('error', (e) => {
      spawnError = e
    })
    child.on('close', (code, signal) => {
      clearTimeout(timer)
      let stderr = Buffer.concat(err).toString('utf8')
      if (spawnError) stderr += `${stderr ? '\n' : ''}could not run ${command}: ${spawnError.message}`
      resolve({stdout: Buffer.concat(out).toString('utf8'), stderr, exitCode: code ?? -1, signal})
    })
    child.stdin.end(options.input ?? '')
  })
}

/** Like run(), but throws (with the command's output) unless it exits 0. Returns stdout. */
export async function runOk(
  command: string,
  args: readonly string[],
  options: RunOptions = {},
): Promise<string> {
  const r = await run(command, args, options)
  if (r.exitCode !== 0) {
    throw new Error(
      `${command} ${args.join(' ')} failed (exit ${r.exitCode}${r.signal ? `, ${r.signal}` : ''}):\n${r.stderr}${r.stdout}`,
    )
  }
  return r.stdout
}

const SEARCH_PATH = ['/usr/sbin', '/usr/bin', '/sbin', '/bin', '/usr/local/sbin', '/usr/local/bin']

/** Absolute path of an executable found on PATH or in the usual system folders, or undefined. */
export function findExecutable(name: string): string | undefined {
  if (name.includes('/')) return isExecutable(name) ? name : undefined
  const dirs = [...(process.env.PATH ?? '').split(':').filter(Boolean), ...SEARCH_PATH]
  for (const dir of dirs) {
    const candidate = path.join(dir, name)
    if (isExecutable(candidate)) return candidate
  }
  return undefined
}

function isExecutable(file: string): boolean {
  try {
    fs.accessSync(file, fs.constants.X_OK)
    return fs.statSync(file).isFile()
  } catch {
    return false
  }
}

/**
 * Absolute path of a required executable. Throws, saying which Debian package to install, when it is
 * missing: test-bed tests fail loudly rather than skip.
 */
export function requireExecutable(name: string, installHint: string): string {
  const found = findExecutable(name)
  if (!found) {
    throw new Error(`${name} is not installed on this machine; install it with \`${installHint}\` (as root).`)
  }
  return found
}

export function isRoot(): boolean {
  return typeof process.getuid === 'function' && process.getuid() === 0
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms))
}

export function randomSecret(bytes = 12): string {
  return randomBytes(bytes).toString('hex')
}

export const TMP_BASE = os.tmpdir().length > 40 ? '/tmp' : os.tmpdir()

/** Folder shared by all test processes on this machine for caches and the daemon registry. */
export const TESTBED_STATE_DIR = path.join(TMP_BASE, 'mailring-testbed')

/**
 * A fresh folder under the system temp dir (short, since Unix socket paths inside it must stay under 108
 * bytes). Mode 0755 so that daemons' unprivileged processes (dovenull, vmail, mysql) can traverse it.
 */
export function makeTempDir(prefix: string): string {
  const dir = fs.mkdtempSync(path.join(TMP_BASE, `${prefix}-`))
  fs.chmodSync(dir, 0o755)
  return dir
}

export function removeDir(dir: string): void {
  try {
    fs.rmSync(dir, {recursive: true, force: true, maxRetries: 3})
  } catch {
    // best effort: a daemon being killed may still be writing into it
  }
}

/** Last `maxBytes` of a file, or '' if it can't be read. For error messages. */
export function tailFile(file: string, maxBytes = 4000): string {
  try {
    const buf = fs.readFileSync(file)
    return buf.subarray(Math.max(0, buf.length - maxBytes)).toString('utf8')
  } catch {
    return ''
  }
}

export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM'
  }
}

/** Pids of the processes whose process group is `pgid` (read from /proc). */
export function groupMembers(pgid: number): number[] {
  const pids: number[] = []
  let entries: string[]
  try {
    entries = fs.readdirSync('/proc')
  } catch {
    return pids
  }
  for (const entry of entries) {
    if (!/^\d+$/.test(entry)) continue
    try {
      const stat = fs.readFileSync(`/proc/${entry}/stat`, 'utf8')
      // pid (comm) state ppid pgrp ... — comm may contain spaces and parentheses, so split after the last ')'
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
      if (Number(fields[2]) === pgid && fields[0] !== 'Z') pids.push(Number(entry))
    } catch {
      // process went away
    }
  }
  return pids
}

/** Pids of the processes whose command line contains `text` (read from /proc; no procps needed). */
export function processesMatching(text: string): number[] {
  let entries: string[]
  try {
    entries = fs.readdirSync('/proc')
  } catch {
    return []
  }
  return entries.filter((e) => /^\d+$/.test(e) && cmdline(Number(e)).includes(text)).map(Number)
}

function cmdline(pid: number): string {
  try {
    return fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').replace(/\0/g, ' ')
  } catch {
    return ''
  }
}

export function killGroup(pgid: number, signal: NodeJS.Signals = 'SIGKILL'): void {
  try {
    process.kill(-pgid, signal)
  } catch {
    // already gone
  }
}

export interface Daemon {
  pid: number
  /** Resolves when the process has exited (never rejects). */
  exited: Promise<{code: number | null; signal: NodeJS.Signals | null}>
  /** True until the process has exited. */
  running(): boolean
}

export interface DaemonOptions {
  /** stdout and stderr are appended to this file. */
  logPath: string
  env?: Record<string, string | undefined>
  cwd?: string
}

/**
 * Starts a long-running process in a new session and process group (so that killGroup(pid) reaches every
 * process it forks), with output to a log file. The process does not keep the test process alive.
 */
export function startDaemon(command: string, args: readonly string[], options: DaemonOptions): Daemon {
  refuseInUnitTier(`starting ${path.basename(command)}`)
  const fd = fs.openSync(options.logPath, 'a')
  const child = spawn(command, args, {
    cwd: options.cwd,
    env: {...process.env, ...options.env},
    stdio: ['ignore', fd, fd],
    detached: true,
  })
  fs.closeSync(fd)
  let done = false
  const exited = new Promise<{code: number | null; signal: NodeJS.Signals | null}>((resolve) => {
    child.on('exit', (code, signal) => {
      done = true
      resolve({code, signal})
    })
    child.on('error', (e) => {
      done = true
      fs.appendFileSync(options.logPath, `\ncould not start ${command}: ${e.message}\n`)
      resolve({code: -1, signal: null})
    })
  })
  child.unref()
  if (child.pid === undefined) {
    return {pid: -1, exited, running: () => false}
  }
  return {pid: child.pid, exited, running: () => !done}
}

/** Waits for a daemon to exit; false if it is still running after `timeoutMs`. */
export async function waitForExit(daemon: Daemon, timeoutMs: number): Promise<boolean> {
  if (!daemon.running()) return true
  let timer: NodeJS.Timeout | undefined
  const timeout = new Promise<false>((resolve) => {
    timer = setTimeout(() => resolve(false), timeoutMs)
  })
  const result = await Promise.race([daemon.exited.then(() => true as const), timeout])
  clearTimeout(timer)
  return result
}

/**
 * Stops a daemon's process group: `graceful` (e.g. send SIGTERM) first, then waits up to `timeoutMs` for the
 * leader to exit, then SIGKILLs whatever is left of the group.
 */
export async function stopDaemon(
  daemon: Daemon,
  graceful: () => Promise<void> | void,
  timeoutMs = 15_000,
): Promise<void> {
  if (daemon.pid > 0 && daemon.running()) {
    try {
      await graceful()
    } catch {
      // fall through to SIGKILL
    }
    if (!(await waitForExit(daemon, timeoutMs))) killGroup(daemon.pid, 'SIGKILL')
    await waitForExit(daemon, 5_000)
  }
  if (daemon.pid > 0) {
    // Children that outlived their leader (still in its process group).
    for (let i = 0; i < 50 && groupMembers(daemon.pid).length > 0; i++) {
      killGroup(daemon.pid, 'SIGKILL')
      await sleep(20)
    }
  }
}

// ---------------------------------------------------------------------------------------------------------
// Registry of what this process started: killed on exit, and swept by later runs if this process crashed.

const REGISTRY_DIR = path.join(TESTBED_STATE_DIR, 'daemons')

interface Registration {
  owner: number
  pgid: number
  dir: string
}

const live = new Map<string, Registration>()
let exitHookInstalled = false

function registrationFile(r: Registration): string {
  return path.join(REGISTRY_DIR, `${r.owner}-${r.pgid}.json`)
}

/**
 * Records a daemon (its process group and temp dir) so that it is killed and its folder removed when this
 * process exits without stopping it, or — if this process dies hard — by the next test process that starts
 * a server. Returns the function that forgets it again (call it from stop()).
 */
export function registerDaemon(pgid: number, dir: string): () => void {
  const r: Registration = {owner: process.pid, pgid, dir}
  const file = registrationFile(r)
  live.set(file, r)
  try {
    fs.mkdirSync(REGISTRY_DIR, {recursive: true})
    fs.writeFileSync(file, JSON.stringify(r))
  } catch {
    // the in-process registry still works
  }
  if (!exitHookInstalled) {
    exitHookInstalled = true
    process.on('exit', () => {
      for (const [f, reg] of live) {
        killGroup(reg.pgid, 'SIGKILL')
        removeDir(reg.dir)
        fs.rmSync(f, {force: true})
      }
    })
  }
  return () => {
    live.delete(file)
    fs.rmSync(file, {force: true})
  }
}

/**
 * Kills daemons left behind by test processes that died without cleaning up, and removes their folders. A
 * group is only killed if one of its processes still names the daemon's temp dir (guard against pid reuse).
 */
export function sweepOrphans(): void {
  let files: string[]
  try {
    files = fs.readdirSync(REGISTRY_DIR)
  } catch {
    return
  }
  for (const name of files) {
    const file = path.join(REGISTRY_DIR, name)
    if (live.has(file)) continue
    let r: Registration
    try {
      r = JSON.parse(fs.readFileSync(file, 'utf8')) as Registration
    } catch {
      continue
    }
    if (r.owner !== process.pid && isAlive(r.owner)) continue
    const marker = path.basename(r.dir)
    if (marker.length >= 8 && groupMembers(r.pgid).some((pid) => cmdline(pid).includes(marker))) {
      killGroup(r.pgid, 'SIGKILL')
    }
    if (path.dirname(r.dir) === TMP_BASE) removeDir(r.dir)
    fs.rmSync(file, {force: true})
  }
}
