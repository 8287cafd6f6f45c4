/** `mailring verify` for people: what differs per user, then a summary. */
import type {UserVerifyResult, VerifySummary} from '../engine/sync/verify.js'

/** The lines of a user whose copies differ or could not all be read; none for a user whose copies agree. */
export function userVerifyLines(r: UserVerifyResult): string[] {
  return [
    ...r.differences.map((d) => `${r.user}: ${d}`),
    ...r.unchecked.map((u) => `${r.user}: could not check the copy on ${u.server}: ${u.reason}`),
  ]
}

export function verifySummaryLine(s: VerifySummary): string {
  return `${s.users} users: ${s.agree} agree, ${s.differ} differ, ${s.unchecked} could not be checked, in ${(s.ms / 1000).toFixed(1)} s.`
}
