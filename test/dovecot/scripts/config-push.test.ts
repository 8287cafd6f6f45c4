/**
 * The config push's install and restore scripts (src/dovecot/scripts/config-push.ts) under /bin/sh on a
 * temporary folder, every exit branch: doveconf and doveadm are stubs on PATH that log their arguments and
 * exit as a test says.
 */
import * as fs from 'node:fs'
import * as path from 'node:path'

import {afterEach, beforeEach, describe, expect, it} from 'vitest'

import {
  BACKUP_SUFFIX,
  EXIT_BACKUP,
  EXIT_CHOWN,
  EXIT_DOVECONF,
  EXIT_LOOKUP,
  EXIT_READ,
  EXIT_RELOAD,
  EXIT_RENAME,
  EXIT_WRITE,
  LOOKUP_EXIT_MARKER,
  pushScript,
  restoreScript,
  ROLLBACK_MARKER,
} from '../../../src/dovecot/scripts/config-push.js'
import {makeTempDir, removeDir} from '../../support/proc.js'
import {runSh, stub} from './sh.js'

const MARKER = 'mailring-read-end-test'
const OLD = 'old configuration\n'
const NEW = 'new configuration\nwith two lines\n'
const OWNER = `${process.getuid!()}:${process.getgid!()}`
const LIMITS = {stepSeconds: 5, lookupSeconds: 5, lookupDeadlineSeconds: 0}

let dir: string
let conf: string
let bin: string

/** The stubs' exit codes, by the step they stand for (doveadm is called as `doveadm -f tab WORDS ARGS`). */
function stubs(exits: {doveconf?: number; reload?: number; lookup?: number} = {}): void {
  stub(
    bin,
    'doveconf',
    `[ ${exits.doveconf ?? 0} = 0 ] || { echo 'doveconf: Fatal: bad line 3' >&2; exit ${exits.doveconf}; }`,
  )
  stub(
    bin,
    'doveadm',
    [
      `echo "$*" >> ${path.join(dir, 'doveadm.log')}`,
      `case $3 in reload) [ ${exits.reload ?? 0} = 0 ] || { echo 'reload: not running' >&2; exit ${exits.reload}; } ;;`,
      `  user) echo "userdb: $4"; exit ${exits.lookup ?? 0} ;; esac`,
    ].join('\n'),
  )
}

function script(overrides: Partial<Parameters<typeof pushScript>[0]> = {}): string {
  return pushScript({
    path: conf,
    marker: MARKER,
    temp: path.join(dir, 'etc', '.conf.mailring-1.tmp'),
    backupTemp: path.join(dir, 'etc', '.conf.mailring-backup.mailring-2.tmp'),
    owner: OWNER,
    mode: 0o640,
    doveconf: path.join(bin, 'doveconf'),
    doveadm: path.join(bin, 'doveadm'),
    lookupUser: 'alice@example.com',
    settleMs: 0,
    limits: LIMITS,
    ...overrides,
  })
}

/** Runs the push: answers `install` with the new file once the installed one is printed. */
function push(text = script(), answer: (stdout: string) => string = () => `install ${NEW.length}\n${NEW}`) {
  return runSh(text, {
    respond: (stdout) => (new RegExp(`\n${MARKER} .*\n$`).test(stdout) ? answer(stdout) : undefined),
    pathFirst: bin,
  })
}

function temporaryFiles(): string[] {
  return fs.readdirSync(path.join(dir, 'etc')).filter((n) => n.endsWith('.tmp'))
}

function doveadmCalls(): string[] {
  const log = path.join(dir, 'doveadm.log')
  return fs.existsSync(log) ? fs.readFileSync(log, 'utf8').trim().split('\n') : []
}

beforeEach(() => {
  dir = makeTempDir('mr-push-script')
  bin = path.join(dir, 'bin')
  fs.mkdirSync(path.join(dir, 'etc'))
  conf = path.join(dir, 'etc', 'dovecot-sql.conf.ext')
  fs.writeFileSync(conf, OLD, {mode: 0o644})
  fs.chmodSync(conf, 0o644)
  stubs()
})

afterEach(() => removeDir(dir))

describe('pushScript', () => {
  it('prints the installed file, installs the new one with a backup, reloads and looks the user up', async () => {
    const r = await push()
    expect(r.exitCode, r.stderr).toBe(0)
    expect(r.stdout).toBe(`${OLD}\n${MARKER} 81a4 ${OWNER.replace(':', ' ')}\nuserdb: alice@example.com\n`)
    expect(fs.readFileSync(conf, 'utf8')).toBe(NEW)
    expect(fs.statSync(conf).mode & 0o7777).toBe(0o640)
    expect(fs.readFileSync(conf + BACKUP_SUFFIX, 'utf8')).toBe(OLD)
    expect(fs.statSync(conf + BACKUP_SUFFIX).mode & 0o7777).toBe(0o644)
    expect(temporaryFiles()).toEqual([])
    expect(doveadmCalls()).toEqual(['-f tab reload', '-f tab user alice@example.com'])
  })

  it('with no file yet: prints that it is missing, installs one and keeps no backup', async () => {
    fs.rmSync(conf)
    const r = await push()
    expect(r.exitCode, r.stderr).toBe(0)
    expect(r.stdout.startsWith(`\n${MARKER} missing\n`)).toBe(true)
    expect(fs.readFileSync(conf, 'utf8')).toBe(NEW)
    expect(fs.existsSync(conf + BACKUP_SUFFIX)).toBe(false)
  })

  it('changes nothing when told anything but install (unchanged, --dry-run)', async () => {
    const r = await push(script(), () => 'skip\n')
    expect(r.exitCode).toBe(0)
    expect(fs.readFileSync(conf, 'utf8')).toBe(OLD)
    expect(fs.existsSync(conf + BACKUP_SUFFIX)).toBe(false)
    expect(doveadmCalls()).toEqual([])
  })

  it('EXIT_READ: a path that is a directory', async () => {
    fs.rmSync(conf)
    fs.mkdirSync(conf)
    const r = await runSh(script(), {pathFirst: bin})
    expect(r).toMatchObject({exitCode: EXIT_READ, stderr: `${conf} is a directory\n`})
  })

  // Each failure before the rename leaves the installed file as it was, no temporary file, no reload.
  for (const [name, exitCode, setup, stderr] of [
    ['EXIT_WRITE: the new content arrives incomplete', EXIT_WRITE, {}, 'the content arrived incomplete'],
    [
      'EXIT_BACKUP: the backup cannot be written',
      EXIT_BACKUP,
      {backupTemp: '/nonexistent-mailring/backup.tmp'},
      '/nonexistent-mailring/backup.tmp',
    ],
    [
      'EXIT_CHOWN: the owner does not exist',
      EXIT_CHOWN,
      {owner: 'mailring-no-such-user:root'},
      'mailring-no-such-user',
    ],
  ] as const) {
    it(name, async () => {
      const short = exitCode === EXIT_WRITE
      const r = await push(script(setup), () => `install ${NEW.length + (short ? 10 : 0)}\n${NEW}`)
      expect(r.exitCode).toBe(exitCode)
      expect(r.stderr).toContain(stderr)
      expect(fs.readFileSync(conf, 'utf8')).toBe(OLD)
      expect(temporaryFiles()).toEqual([])
      expect(doveadmCalls()).toEqual([])
    })
  }

  it('EXIT_RENAME: a directory took the path meanwhile', async () => {
    fs.rmSync(conf)
    const r = await push(script(), () => {
      fs.mkdirSync(conf)
      return `install ${NEW.length}\n${NEW}`
    })
    expect(r).toMatchObject({exitCode: EXIT_RENAME, stderr: `${conf} is a directory\n`})
    expect(temporaryFiles()).toEqual([])
    expect(doveadmCalls()).toEqual([])
  })

  it('EXIT_DOVECONF, EXIT_RELOAD: rolls back by itself (the backup in place, reloaded), with what went wrong', async () => {
    stubs({doveconf: 1})
    let r = await push()
    expect(r).toMatchObject({exitCode: EXIT_DOVECONF, stderr: 'doveconf: Fatal: bad line 3\n'})
    expect(r.stdout).toContain(`${ROLLBACK_MARKER}restored reloaded\n`)
    expect(fs.readFileSync(conf, 'utf8')).toBe(OLD)
    expect(fs.statSync(conf).mode & 0o777).toBe(0o644)
    expect(doveadmCalls()).toEqual(['-f tab reload'])
    expect(temporaryFiles()).toEqual([])

    fs.rmSync(path.join(dir, 'doveadm.log'))
    stubs({reload: 75})
    r = await push()
    expect(r).toMatchObject({exitCode: EXIT_RELOAD, stderr: 'reload: not running\n'})
    expect(r.stdout).toContain(`${ROLLBACK_MARKER}restored reload-failed\n`)
    expect(fs.readFileSync(conf, 'utf8')).toBe(OLD)
    expect(doveadmCalls()).toEqual(['-f tab reload', '-f tab reload'])
  })

  it('EXIT_LOOKUP: retried until the deadline, its exit code printed, rolled back; with no file before, the new one goes', async () => {
    stubs({lookup: 67})
    const r = await push(script({limits: {...LIMITS, lookupDeadlineSeconds: 1}}))
    expect(r.exitCode).toBe(EXIT_LOOKUP)
    expect(r.stdout).toContain(`${LOOKUP_EXIT_MARKER}67\n`)
    expect(r.stdout).toContain(`${ROLLBACK_MARKER}restored reloaded\n`)
    expect(fs.readFileSync(conf, 'utf8')).toBe(OLD)
    const lookups = doveadmCalls().filter((c) => c === '-f tab user alice@example.com')
    expect(lookups.length).toBeGreaterThan(1)
    expect(doveadmCalls().at(-1)).toBe('-f tab reload')

    fs.rmSync(conf)
    const fresh = await push(script({limits: {...LIMITS, lookupDeadlineSeconds: 0}}))
    expect(fresh.exitCode).toBe(EXIT_LOOKUP)
    expect(fresh.stdout).toContain(`${ROLLBACK_MARKER}removed reloaded\n`)
    expect(fs.existsSync(conf)).toBe(false)
  })

  it('a lookup that hangs is cut off by its time limit, and the script rolls back', async () => {
    stub(
      bin,
      'doveadm',
      [`echo "$*" >> ${path.join(dir, 'doveadm.log')}`, 'case $3 in user) sleep 30 ;; esac'].join('\n'),
    )
    const started = Date.now()
    const r = await push(script({limits: {...LIMITS, lookupSeconds: 1, lookupDeadlineSeconds: 0}}))
    expect(r.exitCode).toBe(EXIT_LOOKUP)
    expect(r.stdout).toContain(`${LOOKUP_EXIT_MARKER}124\n`)
    expect(r.stderr).toContain('the lookup did not answer within 1 s')
    expect(r.stdout).toContain(`${ROLLBACK_MARKER}restored reloaded\n`)
    expect(fs.readFileSync(conf, 'utf8')).toBe(OLD)
    expect(Date.now() - started).toBeLessThan(20_000)
  })

  it('a hang-up while it checks (the connection dropped) does not stop it: it still rolls back', async () => {
    // The lookup hangs up on every shell above it, as sshd does when the connection drops, then fails.
    stub(
      bin,
      'doveadm',
      [
        `echo "$*" >> ${path.join(dir, 'doveadm.log')}`,
        'case $3 in user)',
        '  p=$PPID',
        '  while [ "$(ps -o comm= -p "$p")" = timeout ] || [ "$(ps -o comm= -p "$p")" = sh ]; do',
        '    [ "$(ps -o comm= -p "$p")" = sh ] && kill -HUP "$p"',
        '    p=$(ps -o ppid= -p "$p" | tr -d " ")',
        '  done',
        '  exit 75 ;;',
        'esac',
      ].join('\n'),
    )
    const r = await push(script({limits: {...LIMITS, lookupDeadlineSeconds: 0}}))
    expect(r.exitCode).toBe(EXIT_LOOKUP)
    expect(fs.readFileSync(conf, 'utf8')).toBe(OLD)
    expect(doveadmCalls()).toEqual(['-f tab reload', '-f tab user alice@example.com', '-f tab reload'])
  })

  it('says so when its own rollback fails (the backup gone), and keeps the new file', async () => {
    stub(bin, 'doveconf', `rm -f '${conf}${BACKUP_SUFFIX}'; echo 'doveconf: Fatal: bad line 3' >&2; exit 1`)
    const r = await push()
    expect(r.exitCode).toBe(EXIT_DOVECONF)
    expect(r.stdout).toMatch(new RegExp(`${ROLLBACK_MARKER}failed .*No such file`))
    expect(fs.readFileSync(conf, 'utf8')).toBe(NEW)
    expect(temporaryFiles()).toEqual([])
  })

  it('prints the answer of a lookup that succeeds', async () => {
    const r = await push()
    expect(r.exitCode, r.stderr).toBe(0)
    expect(r.stdout).toContain('userdb: alice@example.com\n')
    expect(r.stdout).not.toContain(ROLLBACK_MARKER)
    expect(fs.readFileSync(conf, 'utf8')).toBe(NEW)
  })

  it('without a lookup user: installs and reloads only', async () => {
    const r = await push(script({lookupUser: undefined}))
    expect(r.exitCode, r.stderr).toBe(0)
    expect(doveadmCalls()).toEqual(['-f tab reload'])
  })
})

describe('restoreScript', () => {
  const restore = (overrides: Partial<Parameters<typeof restoreScript>[0]> = {}, stdin = OLD) =>
    runSh(
      restoreScript({
        path: conf,
        temp: path.join(dir, 'etc', '.conf.mailring-3.tmp'),
        bytes: OLD.length,
        owner: OWNER,
        mode: 0o604,
        ...overrides,
      }),
      {stdin},
    )

  it('puts its stdin back in place with the owner and mode given', async () => {
    fs.writeFileSync(conf, NEW)
    const r = await restore()
    expect(r.exitCode, r.stderr).toBe(0)
    expect(fs.readFileSync(conf, 'utf8')).toBe(OLD)
    expect(fs.statSync(conf).mode & 0o7777).toBe(0o604)
    expect(temporaryFiles()).toEqual([])
  })

  it('EXIT_WRITE and EXIT_CHOWN leave the file as it is and no temporary file', async () => {
    fs.writeFileSync(conf, NEW)
    expect((await restore({}, OLD.slice(1))).exitCode).toBe(EXIT_WRITE)
    expect((await restore({owner: 'mailring-no-such-user:root'})).exitCode).toBe(EXIT_CHOWN)
    expect(fs.readFileSync(conf, 'utf8')).toBe(NEW)
    expect(temporaryFiles()).toEqual([])
  })
})
