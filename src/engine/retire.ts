/**
 * The last step of a move and what comes after it: the old copy is moved aside to a dated trash folder on
 * the server it left (doveadm cannot rename a user's mail folder, so this is one shell command over the
 * run's SSH connection to that server), and `rebalance cleanup` deletes trash older than a given age.
 * Nothing else in mailring ever deletes mail.
 */
import {errorText, firstLine} from '../core/errors.js'
import {kickCommand, kicked, userFieldsOf, userLookupCommand} from '../dovecot/doveadm.js'
import {isTrashPath, mailRootOf, trashDayOf, trashNameOf, TRASH_FOLDER} from '../dovecot/trash.js'
import {type ExecResult, shellQuote} from '../remote/ssh.js'
import type {MoveRecord, Store} from '../store/store.js'
import {CopyProblem, type DoveadmFleet} from './doveadm-fleet.js'

/**
 * Moves the old copy of a caught-up move to `<mail root>/.mailring-trash/<day>/<user>.<move id>` on the
 * server it left, right after `catchUp` (the last sync from it); returns where it went, or null when that
 * server held nothing for the user. Safe to run again after a crash: with `resumed`, a copy already in the
 * trash (any day) under this move's name counts as moved, and is not caught up again (a sync would
 * recreate the home it left and fill it from the new copy).
 */
export async function retireOldCopy(
  fleet: DoveadmFleet,
  move: MoveRecord & {from: string},
  options: {catchUp: () => Promise<void>; resumed: boolean; now?: Date},
): Promise<string | null> {
  // The leaving server still knows the user while the move is caught-up (its rendered userdb reads the
  // journal), and its answer is the home that server really uses. At the same time (one HTTP request), the
  // user's IMAP and POP3 sessions still open on X are closed: one left open would go on writing into the
  // home after it moved to the trash; what such a session changed before is on the new copy after the
  // catch-up below. Logins since the switch go to the new copy (the proxy reads the placement).
  const [reply, kick] = await Promise.all([
    fleet.run(move.from, userLookupCommand(move.user)),
    fleet.run(move.from, kickCommand(move.user)),
  ])
  if (!kicked(kick))
    throw new CopyProblem(
      move.from,
      `cannot close ${move.user}'s sessions on ${move.from} (doveadm kick: ${kick.message || `exit ${kick.exitCode}`})`,
      false,
    )
  if (reply.outcome !== 'ok')
    throw new CopyProblem(
      move.from,
      `cannot find ${move.user}'s home on ${move.from} (doveadm user: ${reply.message || `exit ${reply.exitCode}`}): push its configuration (mailring config push --server ${move.from})`,
      false,
    )
  const home = userFieldsOf(reply.rows, move.user).get('home')
  if (!home) throw new CopyProblem(move.from, `${move.from}'s userdb gives ${move.user} no home`, false)
  const root = mailRootOf(home, fleet.ctx.settings.home)
  const name = trashNameOf(move.user, move.id)
  const dest = `${trashDayOf(root, options.now ?? new Date())}/${name}`
  const vars = `home=${shellQuote(home)} dest=${shellQuote(dest)} trash=${shellQuote(`${root}/${TRASH_FOLDER}`)} name=${shellQuote(name)}`
  const findInTrash = 'for d in "$trash"/*/"$name"; do if [ -e "$d" ]; then echo "moved $d"; exit 0; fi; done'
  const run = async (lines: string[]) => {
    const result = await (
      await fleet.ssh(move.from)
    ).exec([vars, ...lines].join('\n'), {
      label: 'retire',
      timeoutMs: 300_000,
    })
    const answer = result.stdout.trim()
    // The script's last line says what it did; it prints one only when it succeeded. (OpenSSH 9.2 now and
    // then closes the channel of a command that ends at once without its exit status: the line decides.)
    if (!succeeded(result) || !/^(moved \/|absent$|none$)/.test(answer))
      throw new CopyProblem(
        move.from,
        `moving ${home} aside on ${move.from} failed: ${firstLine(result.stderr || result.stdout) || `exit ${String(result.exitCode)}`}`,
        false,
      )
    return answer
  }
  if (options.resumed) {
    const earlier = await run([findInTrash, 'echo none'])
    if (earlier.startsWith('moved ')) return earlier.slice('moved '.length)
  }
  await options.catchUp()
  const answer = await run([
    'if [ -e "$home" ]; then',
    '  if [ -e "$dest" ]; then echo "$dest is in the way" >&2; exit 1; fi',
    '  mkdir -p "${dest%/*}" && mv "$home" "$dest" && echo "moved $dest"',
    'else',
    `  ${findInTrash}`,
    '  echo absent',
    'fi',
  ])
  return answer === 'absent' ? null : answer.slice('moved '.length)
}

/** Exit 0, or no exit status at all (see above): the caller checks the output it asked for. */
function succeeded(result: ExecResult): boolean {
  return result.exitCode === 0 || (result.exitCode === null && result.signal === undefined)
}

export interface CleanupOutcome {
  move: number
  user: string
  server: string
  trash: string
  /** Deleted (or, with dryRun, would be); else why not. */
  deleted: boolean
  error?: string
}

/** Retired copies waiting in a trash folder, retired before `before`, on `servers` (all when absent). */
export async function retiredCopies(
  store: Store,
  before: Date,
  servers?: ReadonlySet<string>,
): Promise<MoveRecord[]> {
  return (await store.retiredMoves(before.toISOString())).filter(
    (m) => m.from !== null && (servers === undefined || servers.has(m.from)),
  )
}

/**
 * Deletes retired copies (from retiredCopies) server by server over SSH, and records each as cleaned. A
 * server that cannot be reached keeps its trash for the next run.
 */
export async function cleanupRetired(
  fleet: DoveadmFleet,
  store: Store,
  moves: readonly MoveRecord[],
  options: {dryRun?: boolean; onOutcome?: (o: CleanupOutcome) => void} = {},
): Promise<CleanupOutcome[]> {
  const outcomes: CleanupOutcome[] = []
  for (const move of moves) {
    const trash = move.trash!
    // A copy in the trash left a server (only a move with a `from` retires one).
    const server = move.from!
    const outcome: CleanupOutcome = {move: move.id, user: move.user, server, trash, deleted: false}
    try {
      // The journal is the only list of what to delete, and only paths inside a trash folder qualify.
      if (!isTrashPath(trash)) throw new Error(`${trash} is not in a ${TRASH_FOLDER} folder: left alone`)
      const problem = fleet.problemOf(server)
      if (problem !== undefined) throw new Error(problem)
      if (!options.dryRun) {
        const result = await (
          await fleet.ssh(server)
        ).exec(
          `rm -rf -- ${shellQuote(trash)} && { rmdir -- ${shellQuote(trash.slice(0, trash.lastIndexOf('/')))} 2>/dev/null; echo deleted; }`,
          {label: 'cleanup', timeoutMs: 600_000},
        )
        if (!succeeded(result) || result.stdout.trim() !== 'deleted')
          throw new Error(firstLine(result.stderr || result.stdout) || `exit ${String(result.exitCode)}`)
        await store.setMoveState(move.id, 'retired', 'cleaned')
      }
      outcome.deleted = true
    } catch (error) {
      outcome.error = errorText(error)
    }
    outcomes.push(outcome)
    options.onOutcome?.(outcome)
  }
  return outcomes
}
