/**
 * The test bed's stand-in for "the doveadm (or doveconf) on that server": every test Dovecot runs on one
 * machine with its own configuration, and mailring runs `doveadm ...` over SSH on a server's address. The
 * script picks the Dovecot of the address the SSH session reached (SSH_CONNECTION), so that a config's
 * `dovecot.doveadm: DIR/on-server doveadm` reaches the right one.
 */
import * as fs from 'node:fs'
import * as path from 'node:path'

import type {DovecotHost} from './dovecot.js'

/** Writes the script to `dir/on-server` and returns its path. */
export function writeOnServer(dir: string, hosts: readonly DovecotHost[]): string {
  const cases = hosts.flatMap((h) =>
    (['doveadm', 'doveconf'] as const).map(
      (program) => `  ${h.ip}:${program}) exec ${h.command(program)} -c ${h.configPath} "$@" ;;`,
    ),
  )
  const script = path.join(dir, 'on-server')
  fs.writeFileSync(
    script,
    [
      '#!/bin/sh',
      'program=$1',
      'shift',
      `ip=$(printf '%s' "$SSH_CONNECTION" | cut -d' ' -f3)`,
      'case "$ip:$program" in',
      ...cases,
      '  *) echo "no test Dovecot for $program at $ip" >&2; exit 127 ;;',
      'esac',
      '',
    ].join('\n'),
    {mode: 0o755},
  )
  return script
}
