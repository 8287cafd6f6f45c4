/**
 * `mailring verify`: whether each user's copies agree, and how they differ. Per user and copy, in one
 * doveadm request (sync.ts readCopyContents): `doveadm mailbox status` (mailbox list; per mailbox messages,
 * UIDVALIDITY, UIDNEXT, GUID) and `doveadm fetch` of every message's UID, GUID and flags, so that the
 * report says which messages are
 * missing where and which flags differ (core/copy-compare.ts): two copies that each took another message
 * before a sync show the same summary. A move's check (`everyMessage: false`) fetches GUIDs only where the
 * summaries differ, as it compares a copy just synced. A copy on a server that cannot be reached makes the
 * user "unchecked", never "agree".
 */
import {errorText} from '../../core/errors.js'
import {
  COMPARED_FIELDS,
  describeDifferences,
  mailboxesToDeepCheck,
  messagesByMailbox,
  type CopyStatus,
  type MessageRow,
} from '../../core/copy-compare.js'
import {fetchCommand, type Row} from '../../dovecot/doveadm.js'
import {CopyProblem, type DoveadmFleet} from './fleet.js'
import {readCopyContents} from './sync.js'
import {forEachUser, type UserCopies} from './selection.js'

export type UserVerifyStatus = 'agree' | 'differ' | 'unchecked'

export interface UserVerifyResult {
  user: string
  status: UserVerifyStatus
  copies: string[]
  /** One line per difference, e.g. "INBOX: 2 messages on mx01 missing on mx03". */
  differences: string[]
  /** Copies that could not be read, with why. */
  unchecked: {server: string; reason: string}[]
  /** Messages on the first copy read (every mailbox). */
  messages: number
  /** Their size (Dovecot's vsize) on the first copy read; only when asked for (`measureBytes`). */
  bytes?: number
  ms: number
}

export interface VerifySummary {
  users: number
  agree: number
  differ: number
  unchecked: number
  ms: number
  unusable: {server: string; reason: string}[]
}

export interface VerifyOptions {
  parallel?: number
  onUser?: (result: UserVerifyResult) => void
}

export async function verifyUsers(
  fleet: DoveadmFleet,
  users: readonly UserCopies[],
  options: VerifyOptions = {},
): Promise<{results: UserVerifyResult[]; summary: VerifySummary}> {
  const started = Date.now()
  const servers = new Set(users.flatMap((u) => u.copies))
  await fleet.checkBeforeWork(servers)
  const results = await forEachUser(users, options.parallel ?? 8, (entry) => verifyOneUser(fleet, entry), {
    ...(options.onUser ? {onResult: options.onUser} : {}),
  })
  const count = (status: UserVerifyStatus) => results.filter((r) => r.status === status).length
  return {
    results,
    summary: {
      users: results.length,
      agree: count('agree'),
      differ: count('differ'),
      unchecked: count('unchecked'),
      ms: Date.now() - started,
      unusable: fleet.unusableServers(),
    },
  }
}

export async function verifyOneUser(
  fleet: DoveadmFleet,
  entry: UserCopies,
  options: {measureBytes?: boolean; everyMessage?: boolean} = {},
): Promise<UserVerifyResult> {
  const everyMessage = options.everyMessage ?? true
  const started = Date.now()
  const result: UserVerifyResult = {
    user: entry.user,
    status: 'agree',
    copies: [...entry.copies],
    differences: [],
    unchecked: [],
    messages: 0,
    ms: 0,
  }
  // vsize is kept in the index (Maildir: in the file names), so asking for it costs no message reads.
  const fields = options.measureBytes ? [...COMPARED_FIELDS, 'vsize'] : COMPARED_FIELDS
  const done = (status: UserVerifyStatus) => {
    result.status = status
    result.ms = Date.now() - started
    return result
  }
  // Every message: status and fetch in one request per copy (readCopyContents); a move's check: the status,
  // then GUIDs only where the summaries differ.
  const read = async (copy: string): Promise<CopyStatus & {messages?: Map<string, MessageRow[]>}> =>
    everyMessage
      ? readCopyContents(fleet, entry.user, copy, fields)
      : {copy, mailboxes: await fleet.mailboxStatus(copy, entry.user, fields)}
  const statuses: (CopyStatus & {messages?: Map<string, MessageRow[]>})[] = []
  await Promise.all(
    entry.copies.map(async (copy) => {
      try {
        statuses.push(await read(copy))
      } catch (error) {
        result.unchecked.push({
          server: copy,
          reason: error instanceof CopyProblem ? error.message : errorText(error),
        })
      }
    }),
  )
  // Compare in the user's copy order, whatever order the answers came in.
  statuses.sort((a, b) => entry.copies.indexOf(a.copy) - entry.copies.indexOf(b.copy))
  const total = (field: string) =>
    (statuses[0]?.mailboxes ?? []).reduce((n, m) => n + (Number(m[field]) || 0), 0)
  result.messages = total('messages')
  if (options.measureBytes) result.bytes = total('vsize')
  if (result.unchecked.length > 0) {
    // What can be compared still is, but the user is not known to agree.
    if (statuses.length > 1) result.differences = describeDifferences(statuses)
    return done('unchecked')
  }
  const messages = new Map<string, Map<string, MessageRow[]>>()
  for (const s of statuses) if (s.messages) messages.set(s.copy, s.messages)
  const deep = everyMessage ? [] : mailboxesToDeepCheck(statuses)
  if (deep.length > 0) {
    try {
      await Promise.all(
        statuses.map(async ({copy}) => {
          const reply = await fleet.run(copy, fetchCommand(entry.user, ['mailbox', 'guid']))
          if (reply.outcome !== 'ok')
            throw new CopyProblem(copy, `doveadm fetch failed: ${reply.message}`, false)
          messages.set(copy, messagesByMailbox(reply.rows as Row[], deep))
        }),
      )
    } catch (error) {
      const problem = error instanceof CopyProblem ? error : new CopyProblem('?', errorText(error), false)
      result.unchecked.push({server: problem.server, reason: problem.message})
    }
  }
  result.differences = describeDifferences(statuses, messages)
  if (result.unchecked.length > 0) return done('unchecked')
  return done(result.differences.length > 0 ? 'differ' : 'agree')
}
