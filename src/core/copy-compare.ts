/**
 * How a user's copies differ, in words an operator reads ("INBOX: 2 messages on mx01 missing on mx03").
 * Pure: the rows come from `doveadm mailbox status` and `doveadm fetch`. Compared: the mailbox list; per
 * mailbox its GUID, UIDVALIDITY, UIDNEXT and message count; and, for the mailboxes whose messages were
 * fetched, the message GUIDs and each message's flags and keywords. Summaries alone are not enough: two
 * copies that each took a different message before they synced show the same count, UIDNEXT and
 * HIGHESTMODSEQ (highestmodseq may even differ between copies that agree, seen on 2.3.19).
 */

/** The fields of `doveadm mailbox status` that copies in agreement share exactly. */
export const COMPARED_FIELDS = ['messages', 'uidvalidity', 'uidnext', 'guid'] as const

export type Row = Record<string, string>

export interface CopyStatus {
  copy: string
  mailboxes: readonly Row[]
}

/** One message of a mailbox as `doveadm fetch` tells it; flags undefined when they were not fetched. */
export interface MessageRow {
  guid: string
  uid?: string
  flags?: string
}

/** The fields verify fetches of every message to compare copies in full. */
export const MESSAGE_FIELDS = ['mailbox', 'uid', 'guid', 'flags'] as const

/**
 * `doveadm fetch` rows (MESSAGE_FIELDS, or mailbox and guid only) as messages by mailbox; with `only`, the
 * rows of other mailboxes are left out and each of `only` is there, empty if no row named it.
 */
export function messagesByMailbox(rows: readonly Row[], only?: readonly string[]): Map<string, MessageRow[]> {
  const wanted = only === undefined ? undefined : new Set(only)
  const byMailbox = new Map<string, MessageRow[]>()
  for (const name of only ?? []) byMailbox.set(name, [])
  for (const row of rows) {
    const mailbox = row.mailbox ?? ''
    if (wanted !== undefined && !wanted.has(mailbox)) continue
    const list = byMailbox.get(mailbox) ?? []
    list.push({
      guid: row.guid ?? '',
      ...(row.uid === undefined ? {} : {uid: row.uid}),
      ...(row.flags === undefined ? {} : {flags: row.flags}),
    })
    byMailbox.set(mailbox, list)
  }
  return byMailbox
}

/** Flags and keywords as a set, in a stable order; \Recent is left out (it belongs to one session). */
export function normalizedFlags(flags: string): string {
  return flags
    .split(/\s+/)
    .filter((flag) => flag !== '' && flag.toLowerCase() !== '\\recent')
    .sort()
    .join(' ')
}

/** Mailboxes whose status differs between copies: their message GUIDs are worth fetching. */
export function mailboxesToDeepCheck(copies: readonly CopyStatus[]): string[] {
  const names = new Set(copies.flatMap((c) => c.mailboxes.map((m) => m.mailbox ?? '')))
  const differing: string[] = []
  for (const name of [...names].sort()) {
    const rows = copies.map((c) => c.mailboxes.find((m) => m.mailbox === name))
    if (rows.some((r) => r === undefined)) continue
    const key = (r: Row) => `${r.messages}/${r.uidnext}/${r.guid}`
    if (new Set(rows.map((r) => key(r!))).size > 1) differing.push(name)
  }
  return differing
}

/**
 * One line for the messages of a mailbox that every copy holds but with other flags or keywords, naming
 * the first one (by its UID on the first copy); undefined when they agree or flags were not fetched.
 */
function flagDifferences(
  mailbox: string,
  copies: readonly {copy: string; messages: readonly MessageRow[]}[],
): string | undefined {
  if (copies.some((c) => c.messages.some((m) => m.flags === undefined))) return undefined
  const flagsByCopy = copies.map((c) => new Map(c.messages.map((m) => [m.guid, normalizedFlags(m.flags!)])))
  const differing = copies[0]!.messages.filter((m) => {
    const seen = flagsByCopy.map((flags) => flags.get(m.guid))
    return seen.every((f) => f !== undefined) && new Set(seen).size > 1
  })
  if (differing.length === 0) return undefined
  const first = differing[0]!
  const each = copies.map((c, i) => `${flagsByCopy[i]!.get(first.guid) || '(none)'} on ${c.copy}`).join(', ')
  return `${mailbox}: flags differ on ${plural(differing.length, 'message')} (UID ${first.uid ?? '?'}: ${each})`
}

function plural(n: number, word: string): string {
  return `${n} ${word}${n === 1 ? '' : 's'}`
}

/**
 * The differences between copies, one line each, in a stable order. `messages` holds, per copy, the
 * messages by mailbox for the mailboxes that were fetched (absent: not fetched).
 */
export function describeDifferences(
  copies: readonly CopyStatus[],
  messages: ReadonlyMap<string, ReadonlyMap<string, readonly MessageRow[]>> = new Map(),
): string[] {
  const lines: string[] = []
  const names = [...new Set(copies.flatMap((c) => c.mailboxes.map((m) => m.mailbox ?? '')))].sort()
  for (const name of names) {
    const present = copies.filter((c) => c.mailboxes.some((m) => m.mailbox === name)).map((c) => c.copy)
    const missing = copies.filter((c) => !present.includes(c.copy)).map((c) => c.copy)
    if (missing.length > 0) {
      lines.push(`${name}: on ${present.join(', ')}, missing on ${missing.join(', ')}`)
      continue
    }
    const rows = copies.map((c) => ({copy: c.copy, row: c.mailboxes.find((m) => m.mailbox === name)!}))
    const distinct = (field: string) => new Set(rows.map((r) => r.row[field])).size > 1
    const each = (field: string) => rows.map((r) => `${r.row[field]} on ${r.copy}`).join(', ')
    if (distinct('guid')) lines.push(`${name}: different mailbox GUIDs (created on each copy on its own)`)
    if (distinct('uidvalidity')) lines.push(`${name}: UIDVALIDITY ${each('uidvalidity')}`)
    const byCopy = new Map(copies.map((c) => [c.copy, messages.get(c.copy)?.get(name)]))
    if ([...byCopy.values()].every((list) => list !== undefined)) {
      for (const a of copies)
        for (const b of copies) {
          if (a === b) continue
          const there = new Set(byCopy.get(b.copy)!.map((m) => m.guid))
          const lacking = byCopy.get(a.copy)!.filter((m) => !there.has(m.guid)).length
          if (lacking > 0)
            lines.push(`${name}: ${plural(lacking, 'message')} on ${a.copy} missing on ${b.copy}`)
        }
      const flagLine = flagDifferences(
        name,
        copies.map((c) => ({copy: c.copy, messages: byCopy.get(c.copy)!})),
      )
      if (flagLine !== undefined) lines.push(flagLine)
    } else if (distinct('messages')) {
      lines.push(
        `${name}: ${rows.map((r) => `${plural(Number(r.row.messages), 'message')} on ${r.copy}`).join(', ')}`,
      )
    }
    if (distinct('uidnext') && !lines.some((l) => l.startsWith(`${name}: `)))
      lines.push(`${name}: UIDNEXT ${each('uidnext')} (a message was added and expunged on one copy only)`)
  }
  return lines
}

/** Flags to give one message on one copy so that they are the hub's. */
export interface FlagRepair {
  copy: string
  mailbox: string
  /** The message's UID on that copy. */
  uid: string
  /** The hub's flags and keywords (normalized, without \Recent); [] for none. */
  flags: string[]
  /** What the copy has now, to take away when the hub has none. */
  current: string[]
}

/**
 * The messages whose flags differ from the hub's copy of them (by GUID, per mailbox), and the flags each
 * should get. For what dsync leaves different even after a full sync: a flag set on one copy and cleared
 * on another between syncs, without a state to tell which came last (seen on 2.3.19 under a concurrent
 * IMAP workload). The hub is the copy logins go to.
 */
export function flagRepairs(
  hub: {copy: string; messages: ReadonlyMap<string, readonly MessageRow[]>},
  others: readonly {copy: string; messages: ReadonlyMap<string, readonly MessageRow[]>}[],
): FlagRepair[] {
  const repairs: FlagRepair[] = []
  for (const [mailbox, hubMessages] of hub.messages) {
    const hubFlags = new Map(hubMessages.map((m) => [m.guid, normalizedFlags(m.flags ?? '')]))
    for (const other of others)
      for (const m of other.messages.get(mailbox) ?? []) {
        const wanted = hubFlags.get(m.guid)
        const current = normalizedFlags(m.flags ?? '')
        if (wanted === undefined || wanted === current || m.uid === undefined) continue
        const list = (text: string) => (text === '' ? [] : text.split(' '))
        repairs.push({copy: other.copy, mailbox, uid: m.uid, flags: list(wanted), current: list(current)})
      }
  }
  return repairs
}
