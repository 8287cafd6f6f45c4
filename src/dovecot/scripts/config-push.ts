/**
 * The shell side of `mailring config push` (src/engine/dovecot-config/push.ts): pure builders of the
 * POSIX shell scripts it runs on a server, and the exit codes and output lines by which they say what
 * happened, shared with the code that reads them.
 */
import {doveadmCommandLine, reloadCommand, userLookupCommand, type DoveadmCommand} from '../doveadm.js'
import {shellQuote} from './shell.js'

/** The name of the installed file's backup: the file's path and this. */
export const BACKUP_SUFFIX = '.mailring-backup'

/**
 * Exit codes of pushScript's steps (and restoreScript's); the lookup's own exit code is printed after
 * LOOKUP_EXIT_MARKER.
 */
export const EXIT_READ = 78
export const EXIT_CHOWN = 81
export const EXIT_RENAME = 82
export const EXIT_DOVECONF = 83
export const EXIT_RELOAD = 84
export const EXIT_LOOKUP = 85
export const EXIT_WRITE = 86
export const EXIT_BACKUP = 87
export const LOOKUP_EXIT_MARKER = 'mailring-lookup-exit='
/**
 * Printed by pushScript on stdout when a check after the rename failed and it rolled back by itself:
 * `restored reloaded`, `removed reloaded` (there was no file before), `... reload-failed`, or `failed WHY`.
 */
export const ROLLBACK_MARKER = 'mailring-rollback='

/** How long each step of pushScript may take on the server, in seconds (coreutils `timeout`). */
export interface PushLimits {
  /** doveconf -n, each doveadm reload. */
  stepSeconds: number
  /** One lookup attempt (a database that hangs makes it hang). */
  lookupSeconds: number
  /** How long failing lookups are retried (every 0.25 s) while the new auth processes start. */
  lookupDeadlineSeconds: number
}

export const DEFAULT_PUSH_LIMITS: PushLimits = {stepSeconds: 30, lookupSeconds: 10, lookupDeadlineSeconds: 5}

/** The longest pushScript can run once it has the new file: every step at its limit, and the rollback. */
export function pushScriptBudgetSeconds(limits: PushLimits = DEFAULT_PUSH_LIMITS): number {
  const kill = 5
  return 3 * (limits.stepSeconds + kill) + limits.lookupDeadlineSeconds + limits.lookupSeconds + kill + 10
}

/**
 * ONE POSIX shell command for a server's whole push, in two halves around one answer from mailring:
 *
 *   1. read: the installed file (`path`, following a symlink) through one open descriptor: its content,
 *      then a line `MARKER MODE UID GID` (raw mode in hex, from `stat` of that descriptor), or only
 *      `MARKER missing`; a file that cannot be read exits EXIT_READ (its error on stderr);
 *   2. wait for one line on stdin: anything but `install BYTES` (or the end of stdin) ends the command
 *      there, having changed nothing;
 *   3. install (with `install BYTES`): the rest of stdin, exactly BYTES, goes to the new temporary file
 *      `temp` (created, never reused, mode 0600 until it is complete; EXIT_WRITE); the file read in 1
 *      (the same descriptor: what mailring saw) is copied to `backupTemp` with its owner, mode and times
 *      (`cp -p`; EXIT_BACKUP); the temporary file gets the configured owner (by name, resolved on the
 *      server) and mode (EXIT_CHOWN); both are fsynced (`sync FILE...`, else a full `sync`) before the
 *      backup is renamed to PATH.mailring-backup (EXIT_BACKUP) and the new file over `path` (refused if
 *      `path` is a directory; EXIT_RENAME). Until the rename the installed file is untouched and no
 *      temporary file stays;
 *   4. check, from the rename on deaf to hang-ups and signals (a dropped connection, mailring's own
 *      time-out): `doveconf -n` (EXIT_DOVECONF), `doveadm reload` (EXIT_RELOAD), and optionally, after the
 *      settle time, the lookup of the sample user, retried while it fails for `lookupDeadlineSeconds`
 *      (EXIT_LOOKUP, its exit code printed after LOOKUP_EXIT_MARKER; its answer printed when it succeeds).
 *      Each step runs under `timeout` (`limits`): a database that hangs makes the lookup hang, and a
 *      time-out of the whole command used to kill the rollback with it (issue 23). A check that fails or
 *      times out rolls back right there: the backup goes back in place (or the new file goes, when there
 *      was none), Dovecot is reloaded, and the outcome is printed after ROLLBACK_MARKER. So what runs on
 *      the server never leaves the new file installed after a failed check, whatever happens to mailring.
 *   A step that fails prints its output to stderr.
 */
export function pushScript(o: {
  path: string
  marker: string
  temp: string
  backupTemp: string
  owner: string
  mode: number
  doveconf: string
  doveadm: string
  lookupUser?: string
  /** The lookup to run (default `doveadm user lookupUser`; a proxy: `doveadm auth lookup`). */
  lookupCommand?: DoveadmCommand
  settleMs?: number
  limits?: PushLimits
}): string {
  const limits = o.limits ?? DEFAULT_PUSH_LIMITS
  const step = (seconds: number, command: string) => `timeout -k 5 ${seconds} ${command}`
  const reload = step(limits.stepSeconds, doveadmCommandLine(o.doveadm, reloadCommand()))
  const lines = [
    `t=${shellQuote(o.temp)}; bt=${shellQuote(o.backupTemp)}`,
    ...readFileLines(o.path, o.marker),
    `IFS= read -r go || exit 0`,
    `case $go in 'install '*) n=\${go#install } ;; *) exit 0 ;; esac`,
    `fail() { rm -f "$t" "$bt"; printf '%s\\n' "$out" >&2; exit "$1"; }`,
    `trap 'rm -f "$t" "$bt"; exit 1' HUP INT TERM PIPE`,
    ...tempFileLines(o.owner, o.mode),
    `if [ -n "$had" ] && ! out=$(cp -p /dev/fd/3 "$bt" 2>&1); then fail ${EXIT_BACKUP}; fi`,
    `if [ -n "$had" ]; then sync -- "$t" "$bt" 2>/dev/null || sync; else sync -- "$t" 2>/dev/null || sync; fi`,
    `if [ -n "$had" ] && ! out=$(mv -f "$bt" ${shellQuote(o.path + BACKUP_SUFFIX)} 2>&1); then fail ${EXIT_BACKUP}; fi`,
    `if [ -d "$f" ]; then out=${shellQuote(`${o.path} is a directory`)}; fail ${EXIT_RENAME}; fi`,
    `if ! out=$(mv -f "$t" "$f" 2>&1); then fail ${EXIT_RENAME}; fi`,
    `exec 3<&-`,
    // The new file is in place: from here on, this finishes on its own (checks, or the rollback).
    `trap '' HUP INT TERM PIPE`,
    `b=${shellQuote(o.path + BACKUP_SUFFIX)}; u="$t.undo"`,
    `undo() {`,
    `  if [ -n "$had" ]; then`,
    `    e=$(cp -p "$b" "$u" 2>&1 && { sync -- "$u" 2>/dev/null || sync; } && mv -f "$u" "$f" 2>&1) && what=restored || { what=; rm -f "$u"; }`,
    `  else e=$(rm -f "$f" 2>&1) && what=removed || what=; fi`,
    `  if [ -z "$what" ]; then printf '%s\\n' "${ROLLBACK_MARKER}failed $(printf '%s' "$e" | tr '\\n' ' ')"; return; fi`,
    `  if ${reload} >/dev/null 2>&1; then echo "${ROLLBACK_MARKER}$what reloaded"; else echo "${ROLLBACK_MARKER}$what reload-failed"; fi`,
    `}`,
    `checkfail() { printf '%s\\n' "$out" >&2; undo; exit "$1"; }`,
    `if ! out=$(${step(limits.stepSeconds, o.doveconf)} -n 2>&1 >/dev/null); then checkfail ${EXIT_DOVECONF}; fi`,
    `if ! out=$(${reload} 2>&1); then checkfail ${EXIT_RELOAD}; fi`,
  ]
  if (o.lookupUser !== undefined) {
    const settle = ((o.settleMs ?? 0) / 1000).toFixed(3)
    const lookup = step(
      limits.lookupSeconds,
      doveadmCommandLine(o.doveadm, o.lookupCommand ?? userLookupCommand(o.lookupUser)),
    )
    lines.push(
      // Retried every 0.25 s while it fails, until the deadline (whole seconds: at least twice when there
      // is one); one that hangs is not retried.
      `sleep ${settle}; le="$t.lookup"; d=${limits.lookupDeadlineSeconds}; end=$(( $(date +%s) + d )); tries=0`,
      `while :; do`,
      `  out=$(${lookup} 2>"$le"); rc=$?; tries=$((tries + 1))`,
      `  if [ $rc -eq 0 ] || [ $rc -eq 124 ] || [ $rc -eq 137 ] || [ $d -eq 0 ]; then break; fi`,
      `  if [ "$(date +%s)" -ge "$end" ] && [ $tries -ge 2 ]; then break; fi`,
      `  sleep 0.25`,
      `done`,
      `if [ $rc -ne 0 ]; then`,
      `  [ $rc -eq 124 ] || [ $rc -eq 137 ] && echo "the lookup did not answer within ${limits.lookupSeconds} s" >>"$le"`,
      `  echo "${LOOKUP_EXIT_MARKER}$rc"; cat "$le" >&2; rm -f "$le"; undo; exit ${EXIT_LOOKUP}`,
      `fi`,
      `printf '%s\\n' "$out"; cat "$le" >&2; rm -f "$le"`,
    )
  }
  lines.push('exit 0')
  return lines.join('\n')
}

/**
 * Shell lines that print the file at `path` (following a symlink) through one open descriptor, 3, kept
 * open: its content, then `\nMARKER MODE UID GID\n` (raw mode in hex, `stat` of the descriptor), or only
 * `\nMARKER missing\n`; "$f" is the path and "$had" is set when there was a file. A file that cannot be
 * read exits EXIT_READ, its error on stderr.
 */
export function readFileLines(path: string, marker: string): string[] {
  return [
    `f=${shellQuote(path)}; had=`,
    `if [ -d "$f" ]; then echo ${shellQuote(`${path} is a directory`)} >&2; exit ${EXIT_READ}; fi`,
    `if [ -e "$f" ]; then`,
    `  command exec 3<"$f" || exit ${EXIT_READ}`,
    `  s=$(stat -L -c '%f %u %g' /dev/fd/3) || exit ${EXIT_READ}`,
    `  cat <&3 || exit ${EXIT_READ}`,
    `  had=1; printf '\\n%s %s\\n' ${shellQuote(marker)} "$s"`,
    `else`,
    `  printf '\\n%s missing\\n' ${shellQuote(marker)}`,
    `fi`,
  ]
}

/**
 * Shell lines that put the rest of stdin, exactly "$n" bytes, into the new file "$t" (created, never reused;
 * mode 0600 until it is complete: EXIT_WRITE), then give it `owner` (user:group, names or numbers) and `mode`
 * (EXIT_CHOWN; the mode after the owner, which can clear setuid bits). They call `fail CODE`, which must
 * remove "$t" and print "$out".
 */
function tempFileLines(owner: string, mode: number): string[] {
  return [
    `umask 077`,
    `if ! out=$(set -C; cat 2>&1 >"$t"); then fail ${EXIT_WRITE}; fi`,
    `if [ "$(($(wc -c <"$t")))" != "$n" ]; then out='the content arrived incomplete'; fail ${EXIT_WRITE}; fi`,
    `if ! out=$(chown ${shellQuote(owner)} "$t" 2>&1 && chmod ${mode.toString(8).padStart(4, '0')} "$t" 2>&1); then fail ${EXIT_CHOWN}; fi`,
  ]
}

/**
 * The rollback's command: its stdin (`bytes` long: the file read before the push) replaces `path`
 * atomically as pushScript installs (temporary file `temp`, owner and mode, fsync, rename), with the owner
 * and mode it had; a failing step prints its output to stderr and exits non-zero, leaving no temporary file.
 */
export function restoreScript(o: {
  path: string
  temp: string
  bytes: number
  owner: string
  mode: number
}): string {
  return [
    `f=${shellQuote(o.path)}; t=${shellQuote(o.temp)}; n=${o.bytes}`,
    `fail() { rm -f "$t"; printf '%s\\n' "$out" >&2; exit "$1"; }`,
    `trap 'rm -f "$t"; exit 1' HUP INT TERM PIPE`,
    ...tempFileLines(o.owner, o.mode),
    `sync -- "$t" 2>/dev/null || sync`,
    `if ! out=$(mv -f "$t" "$f" 2>&1); then fail ${EXIT_RENAME}; fi`,
  ].join('\n')
}
