/**
 * The last step of a move and what comes after it: the old copy is moved aside to a dated trash folder on
 * the server it left (doveadm cannot rename a user's mail folder, so this is one shell command over the
 * run's SSH connection to that server), and `rebalance cleanup` deletes trash older than a given age.
 * Nothing else in mailring ever deletes mail.
 */
import {errorText, firstLine} from '../core/errors.js'
import {userFieldsOf, userLookupCommand} from '../dovecot/doveadm.js'
import {isTrashPath, mailRootOf, trashDayOf, trashNameOf, TRASH_FOLDER} from '../dovecot/trash.js'
import {shellQuote} from '../remote/ssh.js'
import type {MoveRecord, Store} from '../store/store.js'
import {CopyProblem, type DoveadmFleet} from './doveadm-fleet.js'

/**
 * Moves the old copy of a caught-up move to `<mail root>/.mailring-trash/<day>/<user>.<move id>` on the
 * server it left; returns where it went, or null when that server held nothing for the user. Safe to run
 * again after a crash: a copy already in the trash (any day) under this move's name counts as moved.
 */
export async function retireOldCopy(
  fleet: DoveadmFleet,
  move: MoveRecord,
  now = new Date(),
): Promise<string | null> {
  // The leaving server still knows the user while the move is caught-up (its rendered userdb reads the
  // journal), and its answer is the home that server really uses.
  const reply = await fleet.run(move.from, userLookupCommand(move.user))
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
  const dest = `${trashDayOf(root, now)}/${name}`
  const script = [
    `home=${shellQuote(home)} dest=${shellQuote(dest)} trash=${shellQuote(`${root}/${TRASH_FOLDER}`)} name=${shellQuote(name)}`,
    'if [ -e "$home" ]; then',
    '  if [ -e "$dest" ]; then echo "$dest is in the way" >&2; exit 1; fi',
    '  mkdir -p "${dest%/*}" && mv "$home" "$dest" && echo "moved $dest"',
    'else',
    '  for d in "$trash"/*/"$name"; do if [ -e "$d" ]; then echo "moved $d"; exit 0; fi; done',
    '  echo absent',
    'fi',
  ].join('\n')
  const result = await (await fleet.ssh(move.from)).exec(script, {label: 'retire', timeoutMs: 300_000})
  const answer = result.stdout.trim()
  if (result.exitCode !== 0 || !(answer === 'absent' || answer.startsWith('moved ')))
    throw new CopyProblem(
      move.from,
      `moving ${home} aside on ${move.from} failed: ${firstLine(result.stderr || result.stdout) || `exit ${String(result.exitCode)}`}`,
      false,
    )
  return answer === 'absent' ? null : answer.slice('moved '.length)
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

/**
 * Deletes the retired copies that went to the trash before `before`, server by server over SSH, and
 * records each as cleaned. A server that cannot be reached keeps its trash for the next run.
 */
export async function cleanupRetired(
  fleet: DoveadmFleet,
  store: Store,
  before: Date,
  options: {dryRun?: boolean; servers?: ReadonlySet<string>; onOutcome?: (o: CleanupOutcome) => void} = {},
): Promise<CleanupOutcome[]> {
  const moves = (await store.retiredMoves(before.toISOString())).filter(
    (m) => options.servers === undefined || options.servers.has(m.from),
  )
  const outcomes: CleanupOutcome[] = []
  for (const move of moves) {
    const trash = move.trash!
    const outcome: CleanupOutcome = {move: move.id, user: move.user, server: move.from, trash, deleted: false}
    try {
      // The journal is the only list of what to delete, and only paths inside a trash folder qualify.
      if (!isTrashPath(trash)) throw new Error(`${trash} is not in a ${TRASH_FOLDER} folder: left alone`)
      const problem = fleet.problemOf(move.from)
      if (problem !== undefined) throw new Error(problem)
      if (!options.dryRun) {
        const result = await (
          await fleet.ssh(move.from)
        ).exec(
          `rm -rf -- ${shellQuote(trash)} && { rmdir -- ${shellQuote(trash.slice(0, trash.lastIndexOf('/')))} 2>/dev/null; true; }`,
          {label: 'cleanup', timeoutMs: 600_000},
        )
        if (result.exitCode !== 0)
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
