/**
 * The events Dovecot's event exporter posts to `mailring replicator` (the snippet of ./notify.ts), turned
 * into replication requests (pure: no I/O). Dovecot posts one JSON object per request:
 *
 *   {"event": "mail_delivery_finished", "hostname": "mx01", "start_time": "...", "end_time": "...",
 *    "categories": [...], "fields": {"user": "alice@example.com", ...}}
 *
 * (docs/dovecot-facts.md). An array of such objects is taken too. Each event becomes at most one request:
 *   mail_delivery_finished without `error`                   -> priority mail
 *   imap_command_finished, tagged_reply_state OK:
 *     APPEND, COPY, MOVE (and UID forms)                     -> priority mail
 *     STORE, EXPUNGE, CLOSE, CREATE, RENAME, DELETE, ...,
 *     FETCH (only exported when it sets \Seen)               -> priority change
 *   mail_expunged (POP3)                                     -> priority change
 * Anything else is ignored and counted by reason.
 */
import {checkUserAddress} from '../core/address.js'
import {IMAP_CHANGE_COMMANDS, IMAP_MAIL_COMMANDS} from './notify.js'

export type NotifyPriority = 'mail' | 'change'

/** Structurally a `ReplicationRequest` of the store (src/store/store.ts) with priority mail or change. */
export interface NotifyRequest {
  user: string
  priority: NotifyPriority
  /** The server whose copy changed, when the event's hostname or the peer address names one. */
  source?: string
}

/** Why an event gave no request. */
export const IGNORED_REASONS = [
  'not_an_event',
  'unknown_event',
  'unknown_command',
  'failed',
  'no_user',
  'bad_user',
] as const
export type IgnoredReason = (typeof IGNORED_REASONS)[number]

/** Finds the server an event came from; undefined when neither hint names one. */
export type SourceLookup = (hint: {hostname?: string; peerAddress?: string}) => string | undefined

export interface ParsedNotifications {
  requests: NotifyRequest[]
  /** Events that gave no request, by reason. */
  ignored: Partial<Record<IgnoredReason, number>>
  /** Events whose source server was not found (their requests carry no source). */
  unknownSource: number
}

const FETCH_COMMANDS = ['FETCH', 'UID FETCH']
const MAIL = new Set(IMAP_MAIL_COMMANDS)
const CHANGE = new Set([...IMAP_CHANGE_COMMANDS, ...FETCH_COMMANDS])

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v)
}

/** The priority an event asks for, or why it asks for none. */
export function classifyEvent(event: unknown): NotifyPriority | IgnoredReason {
  if (!isObject(event) || typeof event.event !== 'string') return 'not_an_event'
  const fields = isObject(event.fields) ? event.fields : {}
  switch (event.event) {
    case 'mail_delivery_finished':
      return fields.error !== undefined ? 'failed' : 'mail'
    case 'imap_command_finished': {
      if (fields.tagged_reply_state !== 'OK') return 'failed'
      const command = typeof fields.cmd_name === 'string' ? fields.cmd_name.toUpperCase() : ''
      if (MAIL.has(command)) return 'mail'
      if (CHANGE.has(command)) return 'change'
      return 'unknown_command'
    }
    case 'mail_expunged':
      return 'change'
    default:
      return 'unknown_event'
  }
}

/**
 * The requests of one POST body (already parsed JSON: an event object or an array of them). Requests for
 * the same user are not merged here (the store's queue merges them).
 */
export function parseNotifications(
  body: unknown,
  lookup: SourceLookup,
  peerAddress?: string,
): ParsedNotifications {
  const out: ParsedNotifications = {requests: [], ignored: {}, unknownSource: 0}
  const ignore = (reason: IgnoredReason) => (out.ignored[reason] = (out.ignored[reason] ?? 0) + 1)
  for (const event of Array.isArray(body) ? (body as unknown[]) : [body]) {
    const kind = classifyEvent(event)
    if (kind !== 'mail' && kind !== 'change') {
      ignore(kind)
      continue
    }
    const e = event as Record<string, unknown>
    const user = (e.fields as Record<string, unknown> | undefined)?.user
    if (typeof user !== 'string' || user === '') {
      ignore('no_user')
      continue
    }
    const checked = checkUserAddress(user)
    if (!checked.ok) {
      ignore('bad_user')
      continue
    }
    const hostname = typeof e.hostname === 'string' && e.hostname !== '' ? e.hostname : undefined
    const source = lookup({
      ...(hostname === undefined ? {} : {hostname}),
      ...(peerAddress === undefined ? {} : {peerAddress}),
    })
    if (source === undefined) out.unknownSource++
    out.requests.push({user: checked.user, priority: kind, ...(source === undefined ? {} : {source})})
  }
  return out
}

/** The topology's servers as a SourceLookup: by name, then address, for the hostname; then the peer. */
export function serverLookup(servers: readonly {name: string; address: string}[]): SourceLookup {
  const byName = new Map<string, string>()
  const byAddress = new Map<string, string>()
  for (const s of servers) {
    byName.set(s.name.toLowerCase(), s.name)
    if (s.address !== '') byAddress.set(s.address.toLowerCase(), s.name)
  }
  const normalizePeer = (a: string) => a.replace(/^::ffff:/i, '').toLowerCase()
  return ({hostname, peerAddress}) => {
    if (hostname !== undefined) {
      const h = hostname.toLowerCase()
      const found = byName.get(h) ?? byAddress.get(h) ?? byName.get(h.split('.')[0]!)
      if (found !== undefined) return found
    }
    if (peerAddress !== undefined) return byAddress.get(normalizePeer(peerAddress))
    return undefined
  }
}
