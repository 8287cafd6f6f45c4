/**
 * Tiny LMTP and IMAP clients over node:net, just enough for tests to deliver mail to a real Dovecot and
 * read it back as a mail client would. Bytes are handled as latin1 strings so that IMAP literal lengths
 * count bytes; text is decoded as UTF-8 where it is returned.
 */
import * as net from 'node:net'

/** A socket read line by line (CRLF), or by byte count for IMAP literals, with a timeout per read. */
class Conversation {
  private buffer = ''
  private waiting: (() => void) | undefined
  private failure: Error | undefined
  private ended = false

  private constructor(
    private readonly socket: net.Socket,
    private readonly timeoutMs: number,
  ) {
    socket.setEncoding('latin1')
    socket.on('data', (chunk: string) => {
      this.buffer += chunk
      this.wake()
    })
    socket.on('error', (e) => {
      this.failure = e
      this.wake()
    })
    socket.on('close', () => {
      this.ended = true
      this.wake()
    })
  }

  static open(host: string, port: number, timeoutMs: number): Promise<Conversation> {
    return new Promise((resolve, reject) => {
      const socket = net.connect({host, port})
      const timer = setTimeout(() => {
        socket.destroy()
        reject(new Error(`connecting to ${host}:${port} timed out`))
      }, timeoutMs)
      socket.once('error', (e) => {
        clearTimeout(timer)
        reject(e)
      })
      socket.once('connect', () => {
        clearTimeout(timer)
        resolve(new Conversation(socket, timeoutMs))
      })
    })
  }

  private wake(): void {
    const w = this.waiting
    this.waiting = undefined
    w?.()
  }

  private async until<T>(take: () => T | undefined, what: string): Promise<T> {
    const deadline = Date.now() + this.timeoutMs
    for (;;) {
      const got = take()
      if (got !== undefined) return got
      if (this.failure) throw this.failure
      if (this.ended)
        throw new Error(`connection closed while waiting for ${what}; got ${JSON.stringify(this.buffer)}`)
      const left = deadline - Date.now()
      if (left <= 0) throw new Error(`timed out waiting for ${what}; got ${JSON.stringify(this.buffer)}`)
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left)
        this.waiting = () => {
          clearTimeout(timer)
          resolve()
        }
      })
    }
  }

  /** The next line, without its CRLF. */
  readLine(): Promise<string> {
    return this.until(() => {
      const i = this.buffer.indexOf('\r\n')
      if (i < 0) return undefined
      const line = this.buffer.slice(0, i)
      this.buffer = this.buffer.slice(i + 2)
      return line
    }, 'a line')
  }

  readBytes(n: number): Promise<string> {
    return this.until(() => {
      if (this.buffer.length < n) return undefined
      const bytes = this.buffer.slice(0, n)
      this.buffer = this.buffer.slice(n)
      return bytes
    }, `${n} bytes`)
  }

  write(text: string): void {
    this.socket.write(text, 'latin1')
  }

  close(): void {
    this.socket.destroy()
  }
}

function latin1(text: string): string {
  return Buffer.from(text, 'utf8').toString('latin1')
}

function utf8(bytes: string): string {
  return Buffer.from(bytes, 'latin1').toString('utf8')
}

// ---------------------------------------------------------------------------------------------------------
// LMTP (RFC 2033)

interface Reply {
  code: number
  text: string
}

async function readReply(c: Conversation): Promise<Reply> {
  const lines: string[] = []
  for (;;) {
    const line = await c.readLine()
    lines.push(line.slice(4))
    if (!/^\d{3}[ -]/.test(line)) throw new Error(`unexpected LMTP reply line ${JSON.stringify(line)}`)
    if (line[3] === ' ') return {code: Number(line.slice(0, 3)), text: lines.join('\n')}
  }
}

async function expectReply(c: Conversation, command: string | undefined, expected: number): Promise<Reply> {
  if (command !== undefined) c.write(`${command}\r\n`)
  const reply = await readReply(c)
  if (Math.floor(reply.code / 100) !== expected) {
    throw new Error(`LMTP ${command ?? 'greeting'} answered ${reply.code} ${reply.text}`)
  }
  return reply
}

export interface LmtpDelivery {
  from?: string
  to: string[]
  /** The RFC 822 message; bare LF line ends are turned into CRLF and dot-stuffing is done here. */
  message: string
  timeoutMs?: number
  /**
   * Called once the message is sent but before its final dot: the delivery stays in flight (its recipients
   * accepted, their userdb looked up) until this resolves, as a large message on a slow link would.
   */
  beforeEnd?: () => Promise<void>
}

/**
 * Delivers one message over LMTP. Returns the per-recipient replies; throws if the server refuses the
 * session, a recipient, or the data for any recipient.
 */
export async function lmtpDeliver(host: string, port: number, delivery: LmtpDelivery): Promise<Reply[]> {
  const c = await Conversation.open(host, port, delivery.timeoutMs ?? 20_000)
  try {
    await expectReply(c, undefined, 2)
    await expectReply(c, 'LHLO testbed.invalid', 2)
    await expectReply(c, `MAIL FROM:<${delivery.from ?? 'sender@testbed.invalid'}>`, 2)
    for (const rcpt of delivery.to) await expectReply(c, `RCPT TO:<${latin1(rcpt)}>`, 2)
    await expectReply(c, 'DATA', 3)
    const body = delivery.message
      .replace(/\r?\n/g, '\r\n')
      .replace(/\r\n$/, '')
      .split('\r\n')
      .map((l) => (l.startsWith('.') ? `.${l}` : l))
      .join('\r\n')
    if (delivery.beforeEnd) {
      c.write(`${latin1(body)}\r\n`)
      await delivery.beforeEnd()
      c.write('.\r\n')
    } else c.write(`${latin1(body)}\r\n.\r\n`)
    const replies: Reply[] = []
    for (const rcpt of delivery.to) {
      const reply = await readReply(c)
      if (Math.floor(reply.code / 100) !== 2)
        throw new Error(`LMTP delivery to ${rcpt} failed: ${reply.code} ${reply.text}`)
      replies.push(reply)
    }
    c.write('QUIT\r\n')
    return replies
  } finally {
    c.close()
  }
}

// ---------------------------------------------------------------------------------------------------------
// IMAP (RFC 3501), a few commands

/** One untagged or tagged response, with its literals taken out ("{n}" stays in the text). */
interface ImapResponse {
  text: string
  literals: string[]
}

export class ImapClient {
  private tagCounter = 0

  private constructor(private readonly c: Conversation) {}

  static async connect(host: string, port: number, timeoutMs = 20_000): Promise<ImapClient> {
    const c = await Conversation.open(host, port, timeoutMs)
    const client = new ImapClient(c)
    const greeting = await client.readResponse()
    if (!greeting.text.startsWith('* OK')) {
      c.close()
      throw new Error(`IMAP greeting was ${greeting.text}`)
    }
    return client
  }

  private async readResponse(): Promise<ImapResponse> {
    let text = ''
    const literals: string[] = []
    for (;;) {
      const line = await this.c.readLine()
      text += line
      const m = /\{(\d+)\}$/.exec(line)
      if (!m) return {text, literals}
      literals.push(await this.c.readBytes(Number(m[1])))
    }
  }

  /** Sends a command; returns the untagged responses. Throws unless the tagged answer is OK. */
  async command(command: string): Promise<ImapResponse[]> {
    const tag = `t${++this.tagCounter}`
    this.c.write(`${tag} ${command}\r\n`)
    const untagged: ImapResponse[] = []
    for (;;) {
      const r = await this.readResponse()
      if (r.text.startsWith(`${tag} `)) {
        if (!r.text.startsWith(`${tag} OK`)) {
          const shown = command.startsWith('LOGIN ') ? 'LOGIN ...' : command
          throw new Error(`IMAP ${shown} failed: ${r.text.slice(tag.length + 1)}`)
        }
        return untagged
      }
      untagged.push(r)
    }
  }

  login(user: string, password: string): Promise<ImapResponse[]> {
    return this.command(`LOGIN ${quote(user)} ${quote(password)}`)
  }

  /** SELECTs (or EXAMINEs) a mailbox; returns its EXISTS count. */
  async select(mailbox = 'INBOX', readOnly = false): Promise<number> {
    const untagged = await this.command(`${readOnly ? 'EXAMINE' : 'SELECT'} ${quote(mailbox)}`)
    for (const r of untagged) {
      const m = /^\* (\d+) EXISTS/.exec(r.text)
      if (m) return Number(m[1])
    }
    throw new Error(`no EXISTS in the answer to SELECT ${mailbox}`)
  }

  /** UID, flags, Subject and Message-ID of every message in the selected mailbox. */
  async listMessages(): Promise<ImapMessage[]> {
    const untagged = await this.command(
      'UID FETCH 1:* (UID FLAGS BODY.PEEK[HEADER.FIELDS (SUBJECT MESSAGE-ID)])',
    )
    const messages: ImapMessage[] = []
    for (const r of untagged) {
      if (!/^\* \d+ FETCH /.test(r.text)) continue
      const uid = /\bUID (\d+)/.exec(r.text)
      const flags = /\bFLAGS \(([^)]*)\)/.exec(r.text)
      const header = utf8(r.literals[0] ?? '').replace(/\r?\n[ \t]+/g, ' ')
      messages.push({
        uid: Number(uid?.[1] ?? 0),
        flags: flags?.[1] ? flags[1].split(' ').filter(Boolean) : [],
        subject: headerValue(header, 'Subject'),
        messageId: headerValue(header, 'Message-ID'),
      })
    }
    return messages.sort((a, b) => a.uid - b.uid)
  }

  /**
   * APPENDs a message with flags, as a literal sent at once (LITERAL+, which Dovecot offers); returns the
   * tagged answer's text (with APPENDUID: `[APPENDUID validity uid]`).
   */
  async append(mailbox: string, message: string, flags: readonly string[] = []): Promise<void> {
    const body = message.replace(/\r?\n/g, '\r\n')
    await this.command(
      `APPEND ${quote(mailbox)} (${flags.join(' ')}) {${Buffer.byteLength(body, 'latin1')}+}\r\n${body}`,
    )
  }

  /** The UIDs of the selected mailbox (UID SEARCH ALL). */
  async uids(): Promise<number[]> {
    const untagged = await this.command('UID SEARCH ALL')
    const line = untagged.find((r) => r.text.startsWith('* SEARCH'))?.text ?? ''
    return line.slice('* SEARCH'.length).split(' ').filter(Boolean).map(Number)
  }

  async logout(): Promise<void> {
    try {
      await this.command('LOGOUT')
    } catch {
      // the server may close first
    } finally {
      this.c.close()
    }
  }

  close(): void {
    this.c.close()
  }
}

/**
 * Resolves once the server has closed an IMAP session (a NOOP fails: closed, reset, or ended),
 * e.g. after `doveadm kick`, which signals the session's process and returns before it is gone; throws
 * when the session still answers after `timeoutMs`.
 */
export async function sessionClosed(session: ImapClient, timeoutMs = 5_000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    try {
      await session.command('NOOP')
    } catch (error) {
      // Closed, reset, or written to after the server ended it: gone. An IMAP answer (NO, BAD) is not.
      if (!String(error).includes('IMAP NOOP failed')) return
      throw error
    }
    if (Date.now() > deadline) throw new Error(`the IMAP session still answers after ${timeoutMs} ms`)
    await new Promise((resolve) => setTimeout(resolve, 50))
  }
}

export interface ImapMessage {
  uid: number
  flags: string[]
  /** Raw header value (encoded words are not decoded); undefined if the message has none. */
  subject: string | undefined
  messageId: string | undefined
}

export interface ImapMailbox {
  /** The EXISTS count given by SELECT. */
  exists: number
  messages: ImapMessage[]
}

function headerValue(header: string, name: string): string | undefined {
  for (const line of header.split(/\r?\n/)) {
    const i = line.indexOf(':')
    if (i > 0 && line.slice(0, i).trim().toLowerCase() === name.toLowerCase()) return line.slice(i + 1).trim()
  }
  return undefined
}

function quote(s: string): string {
  if (/[\r\n\0]/.test(s)) throw new Error('IMAP quoted strings cannot hold CR, LF or NUL')
  return `"${latin1(s).replace(/\\/g, '\\\\').replace(/"/g, '\\"')}"`
}

/** LOGIN, SELECT a mailbox read-only, list its messages, LOGOUT. */
export async function imapListMessages(
  host: string,
  port: number,
  user: string,
  password: string,
  mailbox = 'INBOX',
): Promise<ImapMailbox> {
  const client = await ImapClient.connect(host, port)
  try {
    await client.login(user, password)
    const exists = await client.select(mailbox, true)
    const messages = exists > 0 ? await client.listMessages() : []
    return {exists, messages}
  } finally {
    await client.logout()
  }
}
