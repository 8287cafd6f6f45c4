/**
 * The last step of a move and what comes after it: the old copy is moved aside to a dated trash folder on
 * the server it left and its home fenced (doveadm cannot rename a user's mail folder, so this is one shell
 * command over the run's SSH connection to that server), and `rebalance cleanup` deletes trash older than
 * a given age, with its fence. Nothing else in mailring ever deletes mail.
 */
import {errorText, firstLine} from '../../core/errors.js'
import {
  fetchCommand,
  kickCommand,
  kicked,
  type Row,
  userFieldsOf,
  userLookupCommand,
} from '../../dovecot/doveadm.js'
import {isTrashPath, mailRootOf, trashDayOf, trashNameOf, TRASH_FOLDER} from '../../dovecot/trash.js'
import type {DoveadmReply} from '../../remote/doveadm.js'
import {
  cleanupScript,
  clearFenceScript,
  FENCE_CLEARED,
  moveAsideScript,
  parseMovedAside,
} from '../../dovecot/scripts/retire.js'
import type {SshConnection} from '../../remote/ssh.js'
import type {MoveRecord, Store} from '../../store/store.js'
import {CopyProblem, type DoveadmFleet} from '../sync/fleet.js'

export {FENCE_MARK} from '../../dovecot/scripts/retire.js'

/**
 * What retiring a copy asks of the run's fleet (a DoveadmFleet is one): doveadm calls, the home template,
 * and a shell on the server the copy leaves.
 */
export interface RetireFleet extends Pick<DoveadmFleet, 'run' | 'runCommandLine'> {
  readonly ctx: {readonly settings: {readonly home: string}}
  ssh(server: string): Promise<Pick<SshConnection, 'exec'>>
}

/**
 * Moves the old copy of a caught-up move to `<mail root>/.mailring-trash/<day>/<user>.<move id>` on the
 * server it left, fences the home it left, and catches up from the copy in the trash; returns where it went
 * (an empty folder naming the home when the server held nothing but could be fenced), or null when there
 * was neither a home nor a folder to fence it in.
 *
 * Why in this order: a delivery whose recipient X accepted before the switch can end at any time, and X
 * then writes where its lookup said, the home. Whatever the last catch-up read, mail landing after it was
 * lost: in the trash, or in a home Dovecot made anew. So the home is moved aside and a file put in its place
 * first (the fence: Dovecot cannot make a home where a file is, and a delivery ending later fails with a
 * temporary error, so the sender tries again and is routed to the new copy); then `catchUp` syncs the
 * copy in the trash (doveadm with mail_home overridden) into the copies that stay. A home that came back
 * in between (a delivery just then) goes to the trash too, as `<name>.late<N>`, and is caught up as well.
 * Safe to run again after a crash: the script finds its trash folder (any day) and does only what is left.
 * The fence stays until `rebalance cleanup` deletes the copy, or a move brings the user back (clearFence).
 */
export async function retireOldCopy(
  fleet: RetireFleet,
  move: MoveRecord & {from: string},
  options: {
    /** Syncs the copy in the trash with the copy that takes its place; returns that copy's server. */
    catchUp: (trashCopy: string, full: boolean) => Promise<string>
    now?: Date
  },
): Promise<string | null> {
  // The leaving server still knows the user while the move is caught-up (its rendered userdb reads the
  // journal), and its answer is the home that server really uses. At the same time (one HTTP request), the
  // user's IMAP and POP3 sessions still open on X are closed: one left open would go on writing into the
  // home after it moved to the trash. Logins since the switch go to the new copy (the proxy reads the
  // placement).
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
  const home = homeOf(move.from, move.user, reply)
  const root = mailRootOf(home, fleet.ctx.settings.home)
  const name = trashNameOf(move.user, move.id)
  const dest = `${trashDayOf(root, options.now ?? new Date())}/${name}`
  const result = await (
    await fleet.ssh(move.from)
  ).exec(moveAsideScript({home, dest, trash: `${root}/${TRASH_FOLDER}`, name}), {
    label: 'retire',
    timeoutMs: 300_000,
  })
  if (result.exitCode !== 0)
    throw new CopyProblem(
      move.from,
      `moving ${home} aside on ${move.from} failed: ${firstLine(result.stderr || result.stdout) || `exit ${String(result.exitCode)}`}`,
      false,
    )
  const {copies, first} = parseMovedAside(result.stdout)
  for (const copy of copies) {
    // Checked, as a copy step is: a sync can end well from X's side while the other side dies (seen in the
    // fault run: a message left only in the trash when its new copy's Dovecot stopped just then). Once
    // more in full when a message is missing; the move is retried when it still is.
    let partner = await options.catchUp(copy, false)
    let missing = await missingFrom(fleet, move, copy, partner)
    if (missing > 0) {
      partner = await options.catchUp(copy, true)
      missing = await missingFrom(fleet, move, copy, partner)
    }
    if (missing > 0)
      throw new CopyProblem(
        partner,
        `${missing} message(s) of ${move.user}'s old copy (${copy} on ${move.from}) are not on ${partner} after the last catch-up; the next run tries again`,
        false,
      )
  }
  // The journal keeps the first folder (the late ones and the fence go with it at cleanup).
  return first ?? null
}

/** How many messages of the copy in `trashCopy` on the move's server are not on `partner` (by GUID). */
async function missingFrom(
  fleet: RetireFleet,
  move: MoveRecord & {from: string},
  trashCopy: string,
  partner: string,
): Promise<number> {
  const guids = async (server: string, reply: Promise<DoveadmReply>) => {
    const r = await reply
    if (r.outcome !== 'ok')
      throw new CopyProblem(
        server,
        `cannot list ${move.user}'s messages: ${r.message || `exit ${r.exitCode}`}`,
        false,
      )
    return new Set((r.rows as Row[]).map((row) => row.guid))
  }
  const command = fetchCommand(move.user, ['guid'])
  // One after the other: the new copy is read after the old one, so what it has is never older.
  const old = await guids(
    move.from,
    fleet.runCommandLine(move.from, {...command, overrides: {mail_home: trashCopy}}),
  )
  const current = await guids(partner, fleet.run(partner, command))
  return [...old].filter((guid) => !current.has(guid)).length
}

/** The home a server's userdb gives a user (doveadm user's answer); throws CopyProblem. */
function homeOf(server: string, user: string, reply: DoveadmReply): string {
  if (reply.outcome !== 'ok')
    throw new CopyProblem(
      server,
      `cannot find ${user}'s home on ${server} (doveadm user: ${reply.message || `exit ${reply.exitCode}`}): push its configuration (mailring config push --server ${server}); if its userdb could not read the store just then (a database restart), run again`,
      false,
    )
  const home = userFieldsOf(reply.rows, user).get('home')
  if (!home) throw new CopyProblem(server, `${server}'s userdb gives ${user} no home`, false)
  return home
}

/**
 * Takes away the fence an earlier move left where `user`'s home was on `server` (retireOldCopy), so that a
 * move bringing the user back can make the home there. True when there was one.
 */
export async function clearFence(fleet: DoveadmFleet, server: string, user: string): Promise<boolean> {
  const home = homeOf(server, user, await fleet.run(server, userLookupCommand(user)))
  const result = await (
    await fleet.ssh(server)
  ).exec(clearFenceScript(home), {label: 'clear fence', timeoutMs: 60_000})
  return result.exitCode === 0 && result.stdout.trim() === FENCE_CLEARED
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
 * Deletes retired copies (from retiredCopies) server by server over SSH, with their late parts and the
 * fence at the home they left (a delivery can no longer be in flight there), and records each as cleaned.
 * A server that cannot be reached keeps its trash for the next run.
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
        ).exec(cleanupScript(trash), {label: 'cleanup', timeoutMs: 600_000})
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
