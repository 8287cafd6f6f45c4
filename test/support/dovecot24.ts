/**
 * Dovecot 2.4 beside the host's 2.3: Debian 13's packages in a root built once per machine by
 * scripts/build-dovecot24-root.sh (from install-test-deps.sh, so also by .ci/run).
 *
 * A 2.4 program runs through a small wrapper script, `<wrapper> doveadm -c CONF ARGS...`, that starts it
 * chrooted in that root inside a mount namespace of its own (`unshare --mount`), with the host's temp
 * folder, /dev and /proc bind-mounted at the same paths. So every path a test writes (configuration, mail,
 * the SQLite store) is the same inside and outside, nothing stays mounted when the program exits, and the
 * network (MariaDB on 127.0.0.1, the test's 127.0.0.N addresses) is the host's.
 *
 * Tests that need the root skip, saying why, when it is absent on a developer's machine; in CI (`CI` set)
 * they run and fail instead, since .ci/run builds it.
 */
import * as fs from 'node:fs'
import * as path from 'node:path'

import {describe} from 'vitest'

import {TMP_BASE} from './proc.js'

export type DovecotVersion = '2.3' | '2.4'

export const DOVECOT24_ROOT = process.env.MAILRING_DOVECOT24_ROOT ?? '/var/cache/mailring-testbed/trixie'
export const DOVECOT24_BUILD_HINT =
  'build it with `sudo scripts/build-dovecot24-root.sh` (a few minutes, once)'

/** Why Dovecot 2.4 cannot run here, or undefined when its root is ready. */
export function dovecot24Missing(): string | undefined {
  if (!fs.existsSync(path.join(DOVECOT24_ROOT, '.mailring-stamp')))
    return `the Dovecot 2.4 root ${DOVECOT24_ROOT} is absent; ${DOVECOT24_BUILD_HINT}`
  return undefined
}

/** Throws (naming the script to run) when the root is absent. */
export function requireDovecot24Root(): string {
  const missing = dovecot24Missing()
  if (missing) throw new Error(missing)
  return DOVECOT24_ROOT
}

/**
 * `describe` for tests that need Dovecot 2.4: skipped, with the reason in its title and on the console, when
 * the root is absent and this is not CI. Start the 2.4 instances in a beforeAll inside `fn`.
 */
export function describeDovecot24(name: string, fn: () => void): void {
  const missing = dovecot24Missing()
  if (missing && !process.env.CI) {
    console.warn(`[testbed] skipping "${name}": ${missing}`)
    describe.skip(`${name} (skipped: ${missing})`, fn)
    return
  }
  describe(name, fn)
}

/** Checks that the root's vmail account has the host's uid and gid (mail folders are shared). */
export function checkRootVmail(uid: number, gid: number): void {
  const root = requireDovecot24Root()
  const line = fs
    .readFileSync(path.join(root, 'etc/passwd'), 'utf8')
    .split('\n')
    .find((l) => l.startsWith('vmail:'))
  const fields = line?.split(':') ?? []
  if (Number(fields[2]) !== uid || Number(fields[3]) !== gid) {
    throw new Error(
      `the Dovecot 2.4 root's vmail is ${fields[2] ?? 'missing'}:${fields[3] ?? ''}, the host's ${uid}:${gid}; ` +
        `rebuild the root (its stamp records the ids): ${DOVECOT24_BUILD_HINT}`,
    )
  }
}

/** Whether Dovecot 2.4's server for a protocol is installed in the root (the root has no pop3d). */
export function rootHasProtocol(protocol: string): boolean {
  return fs.existsSync(path.join(DOVECOT24_ROOT, 'usr/lib/dovecot', protocol))
}

/**
 * Writes the wrapper script that runs a program of the root: `FILE doveadm -c CONF ...`. The host's temp
 * folder is mounted at the same path inside (so is /dev; /proc is mounted anew). The wrapper is a plain
 * command line, fit for mailring's `dovecot.doveadm` and `dovecot.doveconf` settings over SSH.
 */
export function writeRootWrapper(file: string): void {
  const root = requireDovecot24Root()
  const script = [
    '#!/bin/sh',
    '# Written by test/support/dovecot24.ts: runs a program of the Dovecot 2.4 root, e.g. `$0 doveadm -c CONF user U`.',
    `exec unshare --mount --propagation private -- /bin/sh -c '`,
    `  set -e; root=$1; shift`,
    `  mkdir -p "$root$0" && mount --rbind "$0" "$root$0"`,
    `  mount --rbind /dev "$root/dev" && mount -t proc proc "$root/proc"`,
    `  exec chroot "$root" /usr/bin/env PATH=/usr/sbin:/usr/bin:/sbin:/bin "$@"`,
    `' ${shellQuote(TMP_BASE)} ${shellQuote(root)} "$@"`,
    '',
  ].join('\n')
  fs.writeFileSync(file, script, {mode: 0o755})
}

function shellQuote(s: string): string {
  return `'${s.replace(/'/g, `'\\''`)}'`
}
