/** `mailring sync user|domain` for people: a line per user that needs attention, and a summary. */
import type {SyncSummary, UserSyncResult} from '../engine/sync/sync.js'

/** One line for a user that failed or could not be synced on every copy; undefined for the others. */
export function userSyncLine(r: UserSyncResult): string | undefined {
  if (r.status === 'failed') return `${r.user}: failed: ${r.message ?? 'unknown error'}`
  if (r.status === 'partial') return `${r.user}: ${r.message ?? 'not fully replicated'}`
  return undefined
}

export function syncSummaryLine(s: SyncSummary): string {
  const parts = [`${s.synced} synced`, `${s.inSync} already in sync`]
  if (s.partial > 0) parts.push(`${s.partial} not fully replicated`)
  parts.push(`${s.failed} failed`)
  return `${s.users} users: ${parts.join(', ')} in ${(s.ms / 1000).toFixed(1)} s.`
}

export function unusableServerLines(s: SyncSummary): string[] {
  return s.unusable.map((u) => `${u.server} was skipped: ${u.reason}`)
}
