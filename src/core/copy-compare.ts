/**
 * How a user's copies differ, in words an operator reads ("INBOX: 2 messages on mx01 missing on mx03").
 * Pure: the rows come from `doveadm mailbox status` and, where the mailboxes differ, `doveadm fetch`.
 * Compared: the mailbox list; per mailbox its GUID, UIDVALIDITY, UIDNEXT and message count; and where those
 * differ, the message GUID sets. Flags are not compared: that would fetch every message of every user, and
 * highestmodseq may differ between copies that agree (seen on 2.3.19), so it cannot stand in for them.
 */

/** The fields of `doveadm mailbox status` that copies in agreement share exactly. */
export const COMPARED_FIELDS = ['messages', 'uidvalidity', 'uidnext', 'guid'] as const

export type Row = Record<string, string>

export interface CopyStatus {
  copy: string
  mailboxes: readonly Row[]
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

function plural(n: number, word: string): string {
  return `${n} ${word}${n === 1 ? '' : 's'}`
}

/**
 * The differences between copies, one line each, in a stable order. `messages` holds, per copy, the message
 * GUIDs by mailbox for the mailboxes of mailboxesToDeepCheck (absent: not fetched).
 */
export function describeDifferences(
  copies: readonly CopyStatus[],
  messages: ReadonlyMap<string, ReadonlyMap<string, readonly string[]>> = new Map(),
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
          const there = new Set(byCopy.get(b.copy))
          const lacking = byCopy.get(a.copy)!.filter((guid) => !there.has(guid)).length
          if (lacking > 0)
            lines.push(`${name}: ${plural(lacking, 'message')} on ${a.copy} missing on ${b.copy}`)
        }
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
