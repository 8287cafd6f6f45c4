/**
 * A copy's mailbox state as doveadm reports it, and what two states say about each other. Pure: the rows
 * come from `doveadm mailbox status` and `doveadm fetch` through whatever transport.
 */

/** The fields of `doveadm mailbox status` that describe a copy's state. */
export const STATE_FIELDS = ['messages', 'uidvalidity', 'uidnext', 'highestmodseq', 'guid'] as const

/**
 * One text per copy that changes whenever the copy changes: a new or expunged message changes messages or
 * uidnext, a flag change raises highestmodseq (seen on Dovecot 2.3.19: a sync that finds nothing to do
 * leaves it as it was). Equal texts before and after a sync mean the sync changed nothing there.
 */
export function stateFingerprint(rows: readonly Record<string, string>[]): string {
  return rows
    .map((row) => STATE_FIELDS.map((f) => row[f] ?? '').join('/') + ':' + (row.mailbox ?? ''))
    .sort()
    .join('\n')
}

export interface IdentityRepair {
  /** The copy whose empty mailbox takes the identity. */
  copy: string
  mailbox: string
  guid: string
  uidvalidity: string
}

/**
 * Same-named mailboxes with different GUIDs on a user's copies, created on each copy on its own (a first
 * login on one copy while mail arrived on another). dsync never reconciles such a pair: it answers "not fully
 * synced" forever ("Remote lost mailbox GUID") and swaps the two identities on each try (seen on 2.3.19).
 * Giving each EMPTY one the identity (GUID and UIDVALIDITY) of a copy that holds messages, before any sync,
 * lets dsync take them as one mailbox, and loses nothing. `copies` are in order of preference (primary
 * first); mailboxes that hold messages on two copies under different GUIDs are left to dsync.
 */
export function identityRepairs(
  copies: readonly {copy: string; rows: readonly Record<string, string>[]}[],
): IdentityRepair[] {
  const byName = new Map<string, {copy: string; row: Record<string, string>}[]>()
  for (const {copy, rows} of copies)
    for (const row of rows) {
      const list = byName.get(row.mailbox ?? '') ?? []
      list.push({copy, row})
      byName.set(row.mailbox ?? '', list)
    }
  const repairs: IdentityRepair[] = []
  for (const [mailbox, list] of byName) {
    if (new Set(list.map((e) => e.row.guid)).size < 2) continue
    const source = list.find((e) => e.row.messages !== '0') ?? list[0]!
    const {guid = '', uidvalidity = ''} = source.row
    for (const e of list)
      if (e.row.guid !== guid && e.row.messages === '0')
        repairs.push({copy: e.copy, mailbox, guid, uidvalidity})
  }
  return repairs
}
