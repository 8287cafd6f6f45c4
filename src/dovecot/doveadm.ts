/**
 * The doveadm vocabulary: each command mailring sends, built once, and the answers parsed once, whatever
 * carries them (src/remote: the doveadm binary over SSH or as a local process, or the doveadm HTTP API).
 *
 * A command has two spellings that say the same thing: the command line (`doveadm -f tab mailbox status
 * -u alice@example.com 'messages guid' '*'`) and the HTTP API's JSON (`["mailboxStatus", {"user":
 * "alice@example.com", "field": ["messages", "guid"], "mailboxMask": ["*"]}, tag]`). Both are built here
 * from one description so that they cannot drift apart. Facts about real Dovecot are in
 * docs/dovecot-facts.md.
 */
import {shellQuote} from './scripts/shell.js'

/** A parameter of the HTTP API, by its name there. */
export type DoveadmValue = string | number | boolean | string[]

export interface DoveadmCommand {
  /** The HTTP API's name for the command, e.g. `mailboxStatus`. */
  method: string
  /** The command line's words, e.g. `['mailbox', 'status']`. */
  words: string[]
  /** The parameters as the HTTP API names them. */
  params: Record<string, DoveadmValue>
  /** The command line after the words: options, then positional arguments. */
  args: string[]
  /**
   * Settings overridden for this call (`doveadm -o KEY=VALUE`), e.g. `mail_home` to reach a copy moved
   * aside. The command line only: the HTTP API has no such parameter.
   */
  overrides?: Record<string, string>
}

/** What a doveadm exit code means to mailring. */
export type DoveadmOutcome = 'ok' | 'not-fully-synced' | 'no-such-user' | 'temporary' | 'failed'

/** doveadm's exit codes (sysexits.h, and sync's own 2). */
export const DOVEADM_EXIT = {
  ok: 0,
  notFullySynced: 2,
  usage: 64,
  dataError: 65,
  noSuchUser: 67,
  notFound: 68,
  temporary: 75,
  permission: 77,
  config: 78,
} as const

export function outcomeOfExit(exitCode: number): DoveadmOutcome {
  switch (exitCode) {
    case DOVEADM_EXIT.ok:
      return 'ok'
    case DOVEADM_EXIT.notFullySynced:
      return 'not-fully-synced'
    case DOVEADM_EXIT.noSuchUser:
      return 'no-such-user'
    case DOVEADM_EXIT.temporary:
      return 'temporary'
    default:
      return 'failed'
  }
}

/** `doveadm reload`: the master re-reads the configuration and restarts its services' processes. */
export function reloadCommand(): DoveadmCommand {
  return {method: 'reload', words: ['reload'], params: {}, args: []}
}

/** `doveadm user USER`: the user's userdb fields, looked up as Dovecot's own services would. */
export function userLookupCommand(user: string): DoveadmCommand {
  return {method: 'user', words: ['user'], params: {userMask: [user]}, args: [user]}
}

/**
 * `doveadm auth lookup USER`: the passdb's answer for a login, as a proxy's auth process gives it (proxy,
 * host...). Printed as `  key : value` lines whatever -f says (seen on 2.3); exit code 67: no such user.
 */
export function authLookupCommand(user: string): DoveadmCommand {
  return {method: 'authLookup', words: ['auth', 'lookup'], params: {user: [user]}, args: [user]}
}

/** The fields of `doveadm auth lookup` output (`  host      : 192.0.2.1`). */
export function authLookupFields(stdout: string): Map<string, string> {
  const fields = new Map<string, string>()
  for (const line of stdout.split('\n')) {
    const m = /^\s+([A-Za-z0-9_.-]+)\s*:\s?(.*)$/.exec(line)
    if (m && !fields.has(m[1]!)) fields.set(m[1]!, m[2]!.trim())
  }
  return fields
}

/**
 * `doveadm kick USER`: closes the user's IMAP and POP3 sessions on that server (it asks the server's anvil
 * who is logged in). Exit 68 (not found) when nobody was: see kicked().
 */
export function kickCommand(user: string): DoveadmCommand {
  return {method: 'kick', words: ['kick'], params: {mask: [user]}, args: [user]}
}

/**
 * Whether a kick did its job: exit 0 (sessions closed; the HTTP API answers `[{"result": USER}]`) or 68
 * (nobody was logged in: "no users kicked"), on the command line and the HTTP API alike (2.3.19).
 */
export function kicked(reply: {exitCode: number}): boolean {
  return reply.exitCode === DOVEADM_EXIT.ok || reply.exitCode === DOVEADM_EXIT.notFound
}

export interface SyncOptions {
  user: string
  /** The other copy, e.g. `tcp:mx02.example.net:12345`. */
  destination: string
  /** `-f`: a full sync, not only what the transaction logs say changed. */
  full?: boolean
  /** `-l SECS`: lock the user for the sync, so that two syncs of one user never race. */
  lockSeconds?: number
  /**
   * `-o mail_home=HOME`: sync the copy in HOME instead of the user's home (a retired copy moved aside to a
   * trash folder; the mail lives in the home). The command line only.
   */
  home?: string
  /**
   * `-s STATE`: sync only what changed since this saved state, and print the next one (`syncStateOf`); ''
   * for none (the sync is then as without -s, and still prints a state). A state belongs to an ordered pair
   * of copies and is used on the copy where the change happened: run on a copy unchanged since the state,
   * dsync skips the mailbox ("with unchanged state") and misses the other copy's changes (seen on 2.3 and
   * 2.4). A state dsync cannot use makes it fall back to a full sync, which succeeds.
   */
  state?: string
}

/** `doveadm sync -u USER DEST`: a two-way sync of one user with the doveadm server at DEST. */
export function syncCommand(o: SyncOptions): DoveadmCommand {
  const params: Record<string, DoveadmValue> = {user: o.user, destination: [o.destination]}
  const args = ['-u', o.user]
  if (o.full) {
    params.fullSync = true
    args.push('-f')
  }
  if (o.lockSeconds !== undefined) {
    params.lockTimeout = o.lockSeconds
    args.push('-l', String(o.lockSeconds))
  }
  if (o.state !== undefined) {
    params.state = o.state
    args.push('-s', o.state)
  }
  args.push(o.destination)
  return {
    method: 'sync',
    words: ['sync'],
    params,
    args,
    ...(o.home === undefined ? {} : {overrides: {mail_home: o.home}}),
  }
}

/**
 * The state a sync with `state` printed: one row `{state}`, on the command line (`-f tab`: a `state`
 * header, then the state) and the HTTP API alike (2.3.19, 2.4.1). Undefined when there is none.
 */
export function syncStateOf(rows: Row[] | Record<string, unknown>): string | undefined {
  const state = Array.isArray(rows) ? rows[0]?.state : undefined
  return state === undefined || state === '' ? undefined : state
}

/** `doveadm mailbox status -u USER 'FIELDS' MASK...`: one row per mailbox. */
export function mailboxStatusCommand(user: string, fields: readonly string[], masks = ['*']): DoveadmCommand {
  return {
    method: 'mailboxStatus',
    words: ['mailbox', 'status'],
    params: {user, field: [...fields], mailboxMask: [...masks]},
    args: ['-u', user, fields.join(' '), ...masks],
  }
}

/**
 * `doveadm mailbox update -u USER --mailbox-guid GUID --uid-validity N MAILBOX`: gives a mailbox another
 * identity. mailring uses it only on an empty mailbox, to make it the twin of the same-named mailbox of
 * another copy (both the GUID and the UIDVALIDITY must match for dsync to take them as one mailbox).
 */
export function mailboxIdentityCommand(
  user: string,
  mailbox: string,
  identity: {guid: string; uidvalidity: string},
): DoveadmCommand {
  return {
    method: 'mailboxUpdate',
    words: ['mailbox', 'update'],
    params: {user, mailboxGuid: identity.guid, uidValidity: identity.uidvalidity, mailbox},
    args: ['-u', user, '--mailbox-guid', identity.guid, '--uid-validity', identity.uidvalidity, mailbox],
  }
}

/** `doveadm fetch -u USER 'FIELDS' QUERY...`: one row per message. */
export function fetchCommand(user: string, fields: readonly string[], query = ['all']): DoveadmCommand {
  return {
    method: 'fetch',
    words: ['fetch'],
    params: {user, field: [...fields], query: [...query]},
    args: ['-u', user, fields.join(' '), ...query],
  }
}

/**
 * `doveadm flags replace|remove -u USER 'FLAGS' mailbox MAILBOX uid UID`: sets (replace) or takes away
 * (remove) a message's flags and keywords. Replace with no flag is refused: take them away with remove.
 */
export function flagsCommand(
  user: string,
  verb: 'replace' | 'remove',
  flags: readonly string[],
  mailbox: string,
  uid: string,
): DoveadmCommand {
  const query = ['mailbox', mailbox, 'uid', uid]
  return {
    method: verb === 'replace' ? 'flagsReplace' : 'flagsRemove',
    words: ['flags', verb],
    params: {user, flag: [...flags], query},
    args: ['-u', user, flags.join(' '), ...query],
  }
}

/**
 * `doveadm log errors -s SINCE`: the errors the log process keeps in memory (the last 1000), logged at or
 * after SINCE (Unix seconds); rows of timestamp, prefix, type, text.
 */
export function logErrorsCommand(since: number): DoveadmCommand {
  return {method: 'logErrors', words: ['log', 'errors'], params: {since}, args: ['-s', String(since)]}
}

/**
 * What Dovecot said about one user: the text of the errors whose prefix names the user (a mail process's
 * prefix is `doveadm(USER)<pid><session>`, or `doveadm(IP,USER)`), oldest first, each once.
 */
export function userErrors(rows: readonly Row[], user: string): string[] {
  const named = (prefix: string) => {
    const open = prefix.indexOf('(')
    const close = prefix.indexOf(')', open)
    if (open < 0 || close < 0) return false
    return prefix
      .slice(open + 1, close)
      .split(',')
      .some((part) => part.toLowerCase() === user.toLowerCase())
  }
  const texts = rows.filter((r) => named(r.prefix ?? '')).map((r) => r.text ?? '')
  return [...new Set(texts.filter((t) => t !== ''))]
}

/** The command line after the binary, with tab-separated output (one header row, then one row each). */
export function doveadmArgv(command: DoveadmCommand): string[] {
  const overrides = Object.entries(command.overrides ?? {}).flatMap(([key, value]) => [
    '-o',
    `${key}=${value}`,
  ])
  return [...overrides, '-f', 'tab', ...command.words, ...command.args]
}

/**
 * A shell command line for the doveadm binary. `binary` is the configured command prefix, used as written
 * (it may carry options, e.g. `doveadm -c /etc/dovecot/dovecot.conf`); every argument is quoted.
 */
export function doveadmCommandLine(binary: string, command: DoveadmCommand): string {
  return [binary, ...doveadmArgv(command).map(shellQuote)].join(' ')
}

/** The HTTP API's form of one command in a batch. */
export function httpRequestEntry(
  command: DoveadmCommand,
  tag: string,
): [string, Record<string, DoveadmValue>, string] {
  // Dropping them would run the command on other mail than the caller meant.
  if (command.overrides !== undefined)
    throw new Error(
      `doveadm ${command.words.join(' ')} with settings overridden needs the command line, not the HTTP API`,
    )
  return [command.method, command.params, tag]
}

export type Row = Record<string, string>

/**
 * Rows of `doveadm -f tab` output: the first line names the columns. Values may contain no tab or newline
 * in this format (doveadm escapes them), so a plain split is exact.
 */
export function parseTabRows(stdout: string): Row[] {
  const lines = stdout.split('\n')
  if (lines.at(-1) === '') lines.pop()
  const header = lines.shift()
  if (header === undefined || header === '') return []
  const columns = header.split('\t')
  return lines
    .filter((line) => line !== '')
    .map((line) => {
      const values = line.split('\t')
      return Object.fromEntries(columns.map((column, i) => [column, values[i] ?? '']))
    })
}

/**
 * The fields of a `doveadm user` answer: from the command line's `field value` rows, or from the HTTP
 * API's `{USER: {field: value}}`.
 */
export function userFieldsOf(answer: Row[] | Record<string, unknown>, user: string): Map<string, string> {
  if (Array.isArray(answer)) return new Map(answer.map((row) => [row.field ?? '', row.value ?? '']))
  const fields = answer[user]
  if (fields === null || typeof fields !== 'object') return new Map()
  return new Map(Object.entries(fields as Record<string, unknown>).map(([k, v]) => [k, String(v)]))
}
