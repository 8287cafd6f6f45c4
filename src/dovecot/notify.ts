/**
 * The Dovecot configuration snippet that sends a server's change notifications to `mailring replicator`
 * (pure: no I/O). Dovecot's stats process exports the chosen events with the event exporter
 * (`http-post`, `format = json`), one event per HTTP POST, to `<replicator.url>/events`, the secret as
 * the password of HTTP basic auth in the URL's userinfo (Dovecot's HTTP client sends it as an
 * `Authorization: Basic` header; seen on 2.3.19 and 2.4.1, docs/dovecot-facts.md).
 *
 * Three metrics choose the events, disjoint so that no event is posted twice:
 *   - `mailring_notify_delivery`: `mail_delivery_finished` (LMTP and LDA; carries `error` when it failed)
 *   - `mailring_notify_imap`: `imap_command_finished` of a command that changes mail, answered OK
 *   - `mailring_notify_pop3`: `mail_expunged` in a POP3 session (DELE then QUIT)
 * Changes written by `doveadm sync` itself come from doveadm processes and match none of them, so a sync
 * never triggers another one.
 */
import {MailringError} from '../core/errors.js'
import type {DovecotVersion, RenderedConfig} from './render.js'

/** IMAP commands (cmd_name as Dovecot names them) that add mail to a mailbox: priority `mail`. */
export const IMAP_MAIL_COMMANDS: readonly string[] = ['APPEND', 'COPY', 'UID COPY', 'MOVE', 'UID MOVE']

/** IMAP commands that change flags, expunge, or change the mailbox list: priority `change`. */
export const IMAP_CHANGE_COMMANDS: readonly string[] = [
  'STORE',
  'UID STORE',
  'EXPUNGE',
  'UID EXPUNGE',
  'CLOSE',
  'CREATE',
  'DELETE',
  'RENAME',
  'SUBSCRIBE',
  'UNSUBSCRIBE',
  'SETMETADATA',
]

/**
 * FETCH commands that set \Seen implicitly: BODY[...] (not BODY.PEEK[...]) and RFC822 / RFC822.TEXT.
 * Dovecot's event filters match wildcards without regard to case.
 */
const FETCH_SEEN_ARGS = ['*BODY[*', '*RFC822', '*RFC822 *', '*RFC822)*', '*RFC822.TEXT*']

/** Where the snippet is meant to go (dovecot.conf includes conf.d/*.conf on Debian's packages). */
export const DEFAULT_NOTIFY_PATH = '/etc/dovecot/conf.d/95-mailring-replicator.conf'

/** The user name Dovecot sends in the URL's userinfo (the replicator checks only the password). */
export const NOTIFY_USER = 'mailring'

/** What a secret may hold so that it goes into a URL and a Dovecot setting unescaped. */
export const NOTIFY_SECRET = /^[A-Za-z0-9._~-]{16,256}$/

const NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/

function refuse(message: string): never {
  throw new MailringError(message, {code: 'invalid_dovecot_config'})
}

function quoteFilterValue(value: string): string {
  return /^[A-Za-z0-9_]+$/.test(value) ? value : `"${value.replace(/\\/g, '\\\\').replace(/"/g, '\\"')}"`
}

function anyOf(field: string, values: readonly string[]): string {
  return `(${values.map((v) => `${field}=${quoteFilterValue(v)}`).join(' OR ')})`
}

/** The metric filters, by metric name (the same text for 2.3 and 2.4). */
export function notifyFilters(): Record<string, string> {
  const fetch = `(${anyOf('cmd_name', ['FETCH', 'UID FETCH'])} AND ${anyOf('cmd_args', FETCH_SEEN_ARGS)})`
  const commands = anyOf('cmd_name', [...IMAP_MAIL_COMMANDS, ...IMAP_CHANGE_COMMANDS])
  return {
    mailring_notify_delivery: 'event=mail_delivery_finished',
    mailring_notify_imap: `event=imap_command_finished AND tagged_reply_state=OK AND (${commands} OR ${fetch})`,
    mailring_notify_pop3: 'event=mail_expunged AND category="service:pop3"',
  }
}

export interface NotifyInput {
  /** The server this snippet is for (named in its header only: every server gets the same text). */
  server?: string
  version: DovecotVersion
  /** How Dovecot reaches the replicator: http(s)://HOST:PORT, without a path (replicator.url). */
  url: string
  secret: string
}

/** `<url>/events` with the secret as the basic-auth password in the userinfo. */
export function notifyUrl(url: string, secret: string): string {
  let parsed: URL
  try {
    parsed = new URL(url)
  } catch {
    refuse(`replicator.url "${url}" is not a URL: write e.g. http://10.0.0.5:8425`)
  }
  if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:')
    refuse(`replicator.url "${url}" must start with http:// or https://`)
  if (parsed.username !== '' || parsed.password !== '' || parsed.search !== '' || parsed.hash !== '')
    refuse(
      `replicator.url "${url}" must hold no user, password, query or fragment: the secret is added by mailring`,
    )
  if (parsed.pathname !== '/' && parsed.pathname !== '')
    refuse(`replicator.url "${url}" must have no path: Dovecot posts to <url>/events`)
  if (!NOTIFY_SECRET.test(secret))
    refuse(
      'The replicator secret must be 16 to 256 characters among letters, digits, ".", "_", "~" and "-" (it goes into a URL and a Dovecot setting unescaped): e.g. `openssl rand -hex 32`.',
    )
  return `${parsed.protocol}//${NOTIFY_USER}:${secret}@${parsed.host}/events`
}

/** The snippet for one server: include it in dovecot.conf (2.4: anywhere after dovecot_config_version). */
export function renderNotifyConfig(input: NotifyInput): RenderedConfig {
  if (input.server !== undefined && !NAME.test(input.server))
    refuse(`"${input.server}" is not a valid server name (letters, digits, ".", "_", "-").`)
  const url = notifyUrl(input.url, input.secret)
  const filters = notifyFilters()
  const who = input.server === undefined ? 'every server' : `server ${input.server}`
  const lines = [
    `# Generated by mailring for ${who}; Dovecot ${input.version}.`,
    "# Sends the events that mean a user's mail changed to `mailring replicator` (POST <url>/events).",
    '# Every server gets the same text; the replicator tells servers apart by the "hostname" of each event:',
    "# the server's name in mailring (or its first label) or its address. Where the host name is neither,",
    "# set DOVECOT_HOSTNAME to the server's name (import_environment; %{hostname} then expands to it too).",
    '',
  ]
  if (input.version === '2.3') {
    lines.push(
      'event_exporter mailring_replicator {',
      '  format = json',
      '  format_args = time-rfc3339',
      '  transport = http-post',
      `  transport_args = ${url}`,
      '  transport_timeout = 1s',
      '}',
    )
  } else {
    lines.push(
      'event_exporter mailring_replicator {',
      '  driver = http-post',
      '  format = json',
      '  time_format = rfc3339',
      `  http_post_url = ${url}`,
      '}',
    )
  }
  for (const [name, filter] of Object.entries(filters)) {
    lines.push(
      '',
      `metric ${name} {`,
      '  exporter = mailring_replicator',
      '  exporter_include = name hostname timestamps categories fields',
      `  filter = ${filter}`,
      '}',
    )
  }
  return {text: lines.join('\n') + '\n', secrets: [input.secret], notes: []}
}
