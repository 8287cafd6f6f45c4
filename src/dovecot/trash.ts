/**
 * Where a rebalance puts the old copy of a mailbox it has moved: aside, on the server it left, never
 * deleted at once (`mailring rebalance cleanup` deletes it later). The trash folder sits in the mail root,
 * the part of the home template that is the same for every user, so that moving a home there is a rename
 * on one file system: /var/vmail/%d/%n -> /var/vmail/.mailring-trash/2026-12-03/alice@example.com.41
 */
import {MailringError} from '../core/errors.js'

export const TRASH_FOLDER = '.mailring-trash'

/**
 * The mail root of a user's home: the home without the trailing path segments its template fills in per
 * user (`home` /var/vmail/example.com/alice with template /var/vmail/%d/%n gives /var/vmail).
 */
export function mailRootOf(home: string, template: string): string {
  const segments = template.split('/').filter((s) => s !== '')
  const firstVariable = segments.findIndex((s) => s.includes('%'))
  const perUser = firstVariable < 0 ? 0 : segments.length - firstVariable
  const homeSegments = home.split('/').filter((s) => s !== '')
  const rootSegments = homeSegments.slice(0, homeSegments.length - perUser)
  if (!home.startsWith('/') || perUser === 0 || rootSegments.length === 0)
    throw new MailringError(
      `Cannot find the mail root of home ${home} with the home template ${template}: the template needs a fixed folder before its per-user part, e.g. /var/vmail/%d/%n (dovecot.home).`,
      {code: 'no_mail_root'},
    )
  return `/${rootSegments.join('/')}`
}

/** The name a retired copy gets in the trash: the user, and the move that retired it (unique, findable). */
export function trashNameOf(user: string, moveId: number): string {
  return `${user.replaceAll('/', '_')}.${moveId}`
}

/** The trash folder for one day (UTC) under a mail root. */
export function trashDayOf(root: string, when: Date): string {
  return `${root}/${TRASH_FOLDER}/${when.toISOString().slice(0, 10)}`
}

/** Whether a path is a retired copy in a mailring trash folder (the only thing cleanup ever deletes). */
export function isTrashPath(path: string): boolean {
  const parts = path.split('/')
  return path.startsWith('/') && parts.length >= 4 && parts.at(-3) === TRASH_FOLDER && !parts.includes('..')
}
