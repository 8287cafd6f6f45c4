/**
 * The shell side of retiring a moved user's old copy and of `rebalance cleanup`
 * (src/engine/rebalance/retire.ts, which says why in this order): pure builders of the POSIX shell
 * scripts run on the server the user left, and the lines by which they answer. Each script exits 0 when
 * it did its work and non-zero (its reason on stderr) when not.
 */
import {shellQuote} from './shell.js'

/** The first line of the file left where a retired home was: what makes a late delivery there fail. */
export const FENCE_MARK = 'mailring-retired'

/** What clearFenceScript prints when it took a fence away (else `none`). */
export const FENCE_CLEARED = 'cleared'

/**
 * Moves the home `home` aside to the trash folder `dest` (`trash/<day>/<name>`; an earlier attempt's
 * folder of any day is reused) and puts a fence (a file starting with FENCE_MARK and `name`) where it was;
 * a home that comes back meanwhile goes to `dest.late<N>`. With no home, the fence goes up all the same
 * where its folder exists, with an empty `dest` naming it. Safe to run again: it does what is left. Prints
 * `copy FOLDER` for each folder to catch up from and `empty FOLDER` for one with nothing in it
 * (parseMovedAside).
 */
export function moveAsideScript(o: {home: string; dest: string; trash: string; name: string}): string {
  const vars = `home=${shellQuote(o.home)} dest=${shellQuote(o.dest)} trash=${shellQuote(o.trash)} name=${shellQuote(o.name)}`
  const fence = `printf '%s %s\\n' ${FENCE_MARK} "$name" > "$home.mailring-fence" && mv -T "$home.mailring-fence" "$home"`
  return [
    vars,
    // An earlier attempt's folder, whatever the day.
    'for d in "$trash"/*/"$name"; do if [ -d "$d" ]; then dest=$d; fi; done',
    'n=0',
    'while [ -d "$home" ]; do',
    '  n=$((n+1)); if [ $n -gt 5 ]; then echo "$home keeps coming back" >&2; exit 1; fi',
    '  to=$dest',
    '  if [ -e "$to" ]; then i=1; while [ -e "$dest.late$i" ]; do i=$((i+1)); done; to=$dest.late$i; fi',
    '  mkdir -p "${dest%/*}" && mv "$home" "$to" || exit 1',
    `  printf '%s\\n' "$home" > "$to/.mailring-retired-from" || exit 1`,
    `  ${fence} 2>/dev/null || rm -f "$home.mailring-fence"`,
    'done',
    // Nothing was there: fenced all the same where its folder exists (never made here: root would own it),
    // with an empty folder in the trash that names the home, so that cleanup takes the fence away too.
    'if [ ! -e "$home" ] && [ ! -L "$home" ] && [ -d "${home%/*}" ]; then',
    `  if [ ! -d "$dest" ]; then mkdir -p "$dest" && printf '%s\\n' "$home" > "$dest/.mailring-retired-from" || exit 1; fi`,
    `  ${fence} || exit 1`,
    'fi',
    `if [ -d "\${home%/*}" ] && [ ! -f "$home" ]; then echo "cannot put a fence at $home" >&2; exit 1; fi`,
    // What to catch up from: each folder with more than the note of where it came from.
    'for d in "$dest" "$dest".late*; do',
    '  if [ ! -d "$d" ]; then continue; fi',
    '  if ls -A "$d" | grep -qvx .mailring-retired-from; then echo "copy $d"; else echo "empty $d"; fi',
    'done',
  ].join('\n')
}

/** moveAsideScript's answer: the folders to catch up from, and the first folder (what the journal keeps). */
export function parseMovedAside(stdout: string): {copies: string[]; first: string | undefined} {
  const lines = stdout.trim().split('\n')
  const folder = (line: string) => line.slice(line.indexOf(' ') + 1)
  return {
    copies: lines.filter((l) => l.startsWith('copy /')).map(folder),
    first: lines.filter((l) => /^(copy|empty) \//.test(l)).map(folder)[0],
  }
}

/** Takes away the fence at `home` if it is one (prints FENCE_CLEARED, else `none`). */
export function clearFenceScript(home: string): string {
  return `home=${shellQuote(home)}\nif [ -f "$home" ] && head -n 1 "$home" | grep -q '^${FENCE_MARK} '; then rm -f -- "$home" && echo ${FENCE_CLEARED}; else echo none; fi`
}

/**
 * Deletes the retired copy at `trash` with its late parts, the fence at the home it was retired from
 * (only the one naming this copy), and its day folder when that is empty then.
 */
export function cleanupScript(trash: string): string {
  return [
    `trash=${shellQuote(trash)}`,
    // The home it was retired from, to take away its fence too (only this move's, by its name).
    'home=$(head -n 1 "$trash/.mailring-retired-from" 2>/dev/null)',
    'rm -rf -- "$trash" "$trash".late* && {',
    `  if [ -n "$home" ] && [ -f "$home" ] && [ "$(head -n 1 "$home")" = "${FENCE_MARK} \${trash##*/}" ]; then rm -f -- "$home"; fi`,
    '  rmdir -- "${trash%/*}" 2>/dev/null || true; }',
  ].join('\n')
}
