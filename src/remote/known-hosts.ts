/**
 * OpenSSH known_hosts files: parsing, host key verification, and appending a new key (accept-new).
 *
 * Supported, as sshd(8) "SSH_KNOWN_HOSTS FILE FORMAT" describes it:
 * - host fields with one name or a comma-separated list of names, `[host]:port` for ports other than 22,
 *   `*` and `?` wildcards and `!` negation (a line whose negated pattern matches does not apply to the host);
 * - hashed names `|1|base64(salt)|base64(HMAC-SHA1(salt, name))` as `ssh-keygen -H` writes them;
 * - the `@revoked` marker: a key on such a line is refused for every host, even if another line trusts it
 *   (stricter than OpenSSH, which applies the line only to the hosts it names: a revoked key is compromised);
 * - the `@cert-authority` marker: parsed and kept, but never trusted as a host key. Host certificates are not
 *   verified by mailring (ssh2 does not negotiate certificate host key algorithms); such lines only make the
 *   error for an unknown key say so;
 * - comments (`#`), blank lines, and a trailing comment after the key.
 * Lines that cannot be parsed are skipped and reported in `problems`, as OpenSSH skips them.
 *
 * Host names are compared case-insensitively (OpenSSH lowercases them before matching and hashing).
 */
import {createHash, createHmac, randomBytes, timingSafeEqual} from 'node:crypto'
import * as fs from 'node:fs/promises'
import * as os from 'node:os'
import * as path from 'node:path'

import {MailringError} from '../core/errors.js'

export type HostPattern =
  {kind: 'plain'; pattern: string; negated: boolean} | {kind: 'hashed'; salt: Buffer; hash: Buffer}

export interface KnownHostEntry {
  /** File the line came from (as given to loadKnownHosts, or the label given to parseKnownHosts). */
  file: string
  /** 1-based line number. */
  line: number
  marker?: 'revoked' | 'cert-authority'
  /** The host field as written. */
  hosts: string
  patterns: HostPattern[]
  /** Key type as written on the line, e.g. `ssh-ed25519`. Equals the type inside `key`. */
  keyType: string
  /** The public key blob (SSH wire format, base64-decoded). */
  key: Buffer
  comment?: string
}

export interface KnownHostsProblem {
  file: string
  line: number
  reason: string
}

export interface KnownHosts {
  /** The files that were read (missing files are left out). */
  files: string[]
  entries: KnownHostEntry[]
  problems: KnownHostsProblem[]
}

export type HostKeyStatus = 'trusted' | 'unknown' | 'changed' | 'revoked'

export interface HostKeyVerification {
  status: HostKeyStatus
  /** Type of the presented key, read from its blob (`ssh-ed25519`, `ssh-rsa`, `ecdsa-sha2-nistp256`, ...). */
  keyType: string
  /** Fingerprint of the presented key as `ssh-keygen -l` shows it: `SHA256:` + unpadded base64. */
  fingerprint: string
  /**
   * trusted: the line that trusts the key; changed: the first line with a different key of the same type;
   * revoked: the @revoked line.
   */
  matchedLine?: KnownHostEntry
  /** unknown: keys of other types known for this host (a server no longer offering its known key type). */
  otherKeys: KnownHostEntry[]
  /** @cert-authority lines that apply to this host (not verified: see the module comment). */
  certAuthorities: KnownHostEntry[]
}

/** The default known_hosts files, in OpenSSH's order: user files first, then the global ones. */
export function defaultKnownHostsFiles(home = os.homedir()): {user: string[]; global: string[]} {
  return {
    user: [path.join(home, '.ssh', 'known_hosts'), path.join(home, '.ssh', 'known_hosts2')],
    global: ['/etc/ssh/ssh_known_hosts', '/etc/ssh/ssh_known_hosts2'],
  }
}

// ---------------------------------------------------------------------------------------------------------
// Key blobs

/** Reads the key type, the first SSH string of a public key blob; undefined if the blob is malformed. */
export function keyTypeOfBlob(blob: Buffer): string | undefined {
  if (blob.length < 4) return undefined
  const length = blob.readUInt32BE(0)
  if (length === 0 || length > 64 || 4 + length > blob.length) return undefined
  const type = blob.toString('latin1', 4, 4 + length)
  return /^[\x21-\x7e]+$/.test(type) ? type : undefined
}

/** `SHA256:...` exactly as `ssh-keygen -l -E sha256` prints it (base64 without `=` padding). */
export function fingerprintSha256(blob: Buffer): string {
  return 'SHA256:' + createHash('sha256').update(blob).digest('base64').replace(/=+$/, '')
}

// ---------------------------------------------------------------------------------------------------------
// Parsing

const BASE64 = /^[A-Za-z0-9+/]+={0,2}$/

function decodeBase64(text: string): Buffer | undefined {
  if (!BASE64.test(text)) return undefined
  const buf = Buffer.from(text, 'base64')
  return buf.length > 0 ? buf : undefined
}

function parsePatterns(field: string): HostPattern[] | string {
  const patterns: HostPattern[] = []
  for (const item of field.split(',')) {
    if (item === '') return 'empty name in the host list'
    if (item.startsWith('|')) {
      // |1|salt|hash — the only hash format OpenSSH has ever written.
      const parts = item.split('|')
      if (parts.length !== 4 || parts[1] !== '1') return `unsupported hashed host name ${item.slice(0, 8)}...`
      const salt = decodeBase64(parts[2] ?? '')
      const hash = decodeBase64(parts[3] ?? '')
      if (!salt || !hash || hash.length !== 20) return 'malformed hashed host name'
      patterns.push({kind: 'hashed', salt, hash})
    } else {
      const negated = item.startsWith('!')
      const pattern = (negated ? item.slice(1) : item).toLowerCase()
      if (pattern === '') return 'empty negated name in the host list'
      patterns.push({kind: 'plain', pattern, negated})
    }
  }
  return patterns
}

/** Parses the text of one known_hosts file. `file` labels the entries and problems. */
export function parseKnownHosts(
  text: string,
  file: string,
): {entries: KnownHostEntry[]; problems: KnownHostsProblem[]} {
  const entries: KnownHostEntry[] = []
  const problems: KnownHostsProblem[] = []
  const lines = text.split('\n')
  for (let i = 0; i < lines.length; i++) {
    const raw = (lines[i] ?? '').replace(/\r$/, '').trim()
    if (raw === '' || raw.startsWith('#')) continue
    const line = i + 1
    const fields = raw.split(/[ \t]+/)
    let marker: KnownHostEntry['marker']
    if (fields[0]?.startsWith('@')) {
      const m = fields.shift()
      if (m === '@revoked') marker = 'revoked'
      else if (m === '@cert-authority') marker = 'cert-authority'
      else {
        problems.push({file, line, reason: `unknown marker ${m}`})
        continue
      }
    }
    const [hosts, keyType, keyText, ...rest] = fields
    if (hosts === undefined || keyType === undefined || keyText === undefined) {
      problems.push({file, line, reason: 'expected: [marker] hosts key-type base64-key [comment]'})
      continue
    }
    const patterns = parsePatterns(hosts)
    if (typeof patterns === 'string') {
      problems.push({file, line, reason: patterns})
      continue
    }
    const key = decodeBase64(keyText)
    if (!key) {
      problems.push({file, line, reason: 'the key is not valid base64'})
      continue
    }
    const blobType = keyTypeOfBlob(key)
    if (blobType !== keyType) {
      problems.push({
        file,
        line,
        reason: `the key type ${keyType} does not match the key (${blobType ?? 'malformed'})`,
      })
      continue
    }
    const entry: KnownHostEntry = {file, line, hosts, patterns, keyType, key}
    if (marker) entry.marker = marker
    if (rest.length > 0) entry.comment = rest.join(' ')
    entries.push(entry)
  }
  return {entries, problems}
}

/**
 * Reads and parses known_hosts files in order. Missing files are skipped; a file that exists but cannot be
 * read is an error (silently ignoring it could turn a trusted host into an unknown one, or hide a revocation).
 */
export async function loadKnownHosts(paths: readonly string[]): Promise<KnownHosts> {
  const result: KnownHosts = {files: [], entries: [], problems: []}
  for (const file of paths) {
    let text: string
    try {
      text = await fs.readFile(file, 'utf8')
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code
      if (code === 'ENOENT' || code === 'ENOTDIR') continue
      throw new MailringError(`Cannot read known_hosts file ${file}: ${(error as Error).message}.`, {
        code: 'known_hosts_unreadable',
        cause: error,
      })
    }
    const parsed = parseKnownHosts(text, file)
    result.files.push(file)
    result.entries.push(...parsed.entries)
    result.problems.push(...parsed.problems)
  }
  return result
}

// ---------------------------------------------------------------------------------------------------------
// Matching

/** The name OpenSSH looks up: `host` for port 22, `[host]:port` otherwise. Lowercased. */
export function knownHostsName(host: string, port: number): string {
  const h = host.toLowerCase()
  return port === 22 ? h : `[${h}]:${port}`
}

/** Glob match with `*` (any run of characters, also none) and `?` (exactly one character). */
export function wildcardMatch(pattern: string, text: string): boolean {
  let p = 0
  let t = 0
  let starP = -1
  let starT = 0
  while (t < text.length) {
    const pc = pattern[p]
    if (pc === '*') {
      starP = p++
      starT = t
    } else if (pc !== undefined && (pc === '?' || pc === text[t])) {
      p++
      t++
    } else if (starP >= 0) {
      p = starP + 1
      t = ++starT
    } else {
      return false
    }
  }
  while (pattern[p] === '*') p++
  return p === pattern.length
}

function hashedNameMatches(pattern: {salt: Buffer; hash: Buffer}, name: string): boolean {
  const digest = createHmac('sha1', pattern.salt).update(name).digest()
  return digest.length === pattern.hash.length && timingSafeEqual(digest, pattern.hash)
}

/** Whether the line's host field applies to host:port (negations win over positive matches). */
export function entryMatchesHost(
  entry: Pick<KnownHostEntry, 'patterns'>,
  host: string,
  port: number,
): boolean {
  const names = [knownHostsName(host, port)]
  // `[host]:22` is not what OpenSSH writes for port 22, but it can only mean that.
  if (port === 22) names.push(`[${host.toLowerCase()}]:22`)
  let positive = false
  for (const p of entry.patterns) {
    const hit =
      p.kind === 'hashed'
        ? names.some((n) => hashedNameMatches(p, n))
        : names.some((n) => wildcardMatch(p.pattern, n))
    if (!hit) continue
    if (p.kind === 'plain' && p.negated) return false
    positive = true
  }
  return positive
}

// ---------------------------------------------------------------------------------------------------------
// Verification

/** Checks the key a server presented against known_hosts. `keyBlob` is the raw public key (wire format). */
export function verifyHostKey(
  knownHosts: Pick<KnownHosts, 'entries'>,
  host: string,
  port: number,
  keyBlob: Buffer,
): HostKeyVerification {
  const keyType = keyTypeOfBlob(keyBlob) ?? 'unknown-key-type'
  const fingerprint = fingerprintSha256(keyBlob)
  const result: HostKeyVerification = {
    status: 'unknown',
    keyType,
    fingerprint,
    otherKeys: [],
    certAuthorities: [],
  }

  const revoked = knownHosts.entries.find((e) => e.marker === 'revoked' && e.key.equals(keyBlob))
  if (revoked) return {...result, status: 'revoked', matchedLine: revoked}

  let changed: KnownHostEntry | undefined
  for (const entry of knownHosts.entries) {
    if (entry.marker === 'revoked' || !entryMatchesHost(entry, host, port)) continue
    if (entry.marker === 'cert-authority') {
      result.certAuthorities.push(entry)
    } else if (entry.key.equals(keyBlob)) {
      return {...result, status: 'trusted', matchedLine: entry, certAuthorities: []}
    } else if (entry.keyType === keyType) {
      changed ??= entry
    } else {
      result.otherKeys.push(entry)
    }
  }
  if (changed) return {...result, status: 'changed', matchedLine: changed}
  return result
}

/**
 * Key types (as in known_hosts lines) already trusted for host:port, in file order. Used to prefer those
 * host key algorithms in the handshake, as OpenSSH does, so that a server with several host keys presents
 * the one we know.
 */
export function knownKeyTypes(knownHosts: Pick<KnownHosts, 'entries'>, host: string, port: number): string[] {
  const types: string[] = []
  for (const entry of knownHosts.entries) {
    if (entry.marker !== undefined || types.includes(entry.keyType)) continue
    if (entryMatchesHost(entry, host, port)) types.push(entry.keyType)
  }
  return types
}

// ---------------------------------------------------------------------------------------------------------
// Writing

/** One known_hosts line for host:port; with `hash`, the name is hashed as `ssh-keygen -H` would. */
export function formatKnownHostsLine(
  host: string,
  port: number,
  keyBlob: Buffer,
  options: {hash?: boolean} = {},
): string {
  const keyType = keyTypeOfBlob(keyBlob)
  if (!keyType)
    throw new MailringError('Cannot record a malformed host key in known_hosts.', {code: 'bad_host_key'})
  let name = knownHostsName(host, port)
  if (options.hash) {
    const salt = randomBytes(20)
    name = `|1|${salt.toString('base64')}|${createHmac('sha1', salt).update(name).digest('base64')}`
  }
  return `${name} ${keyType} ${keyBlob.toString('base64')}`
}

const appendQueues = new Map<string, Promise<unknown>>()

/**
 * Appends a host key to a known_hosts file atomically: the whole file is rewritten to a temporary file in the
 * same folder, fsynced, and renamed over the original, so a crash never leaves a truncated known_hosts. The
 * folder (normally ~/.ssh) is created with mode 0700 if missing; a new file gets mode 0600, an existing one
 * keeps its mode. Appends within this process are serialised per file; concurrent appends from separate
 * processes can still lose one of the lines (the later rename wins), which only means being asked again.
 * Returns the entry as it would be parsed from the file.
 */
export function appendKnownHost(
  file: string,
  host: string,
  port: number,
  keyBlob: Buffer,
  options: {hash?: boolean} = {},
): Promise<KnownHostEntry> {
  const previous = appendQueues.get(file) ?? Promise.resolve()
  const next = previous.catch(() => undefined).then(() => appendNow(file, host, port, keyBlob, options))
  appendQueues.set(file, next)
  void next
    .finally(() => {
      if (appendQueues.get(file) === next) appendQueues.delete(file)
    })
    .catch(() => undefined)
  return next
}

async function appendNow(
  file: string,
  host: string,
  port: number,
  keyBlob: Buffer,
  options: {hash?: boolean},
): Promise<KnownHostEntry> {
  const text = formatKnownHostsLine(host, port, keyBlob, options)
  const fail = (error: unknown): never => {
    throw new MailringError(`Cannot add the host key of ${host} to ${file}: ${(error as Error).message}.`, {
      code: 'known_hosts_write',
      cause: error,
    })
  }
  // Write through a symlinked known_hosts rather than replacing the link.
  let target = file
  try {
    target = await fs.realpath(file)
  } catch {
    // does not exist yet
  }
  const dir = path.dirname(target)
  let existing = ''
  let mode = 0o600
  try {
    await fs.mkdir(dir, {recursive: true, mode: 0o700})
    try {
      existing = await fs.readFile(target, 'utf8')
      mode = (await fs.stat(target)).mode & 0o7777
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error
    }
  } catch (error) {
    fail(error)
  }
  const content = existing + (existing !== '' && !existing.endsWith('\n') ? '\n' : '') + text + '\n'
  const temp = path.join(
    dir,
    `.${path.basename(target)}.mailring-${process.pid}-${randomBytes(4).toString('hex')}`,
  )
  try {
    const handle = await fs.open(temp, 'wx', mode)
    try {
      await handle.writeFile(content)
      await handle.chmod(mode) // the umask may have narrowed the mode given to open()
      await handle.sync()
    } finally {
      await handle.close()
    }
    await fs.rename(temp, target)
  } catch (error) {
    await fs.rm(temp, {force: true}).catch(() => undefined)
    fail(error)
  }
  try {
    const dirHandle = await fs.open(dir, 'r')
    try {
      await dirHandle.sync()
    } finally {
      await dirHandle.close()
    }
  } catch {
    // fsync of a folder is not supported everywhere; the rename is done either way
  }
  const lineNumber = content.split('\n').length - 1
  const parsed = parseKnownHosts(text, file).entries[0]
  if (!parsed) throw new MailringError(`Internal error: wrote an unparsable known_hosts line to ${file}.`)
  return {...parsed, line: lineNumber}
}
