/**
 * A mixed IMAP workload of one session, drawn from a seed, as a mail client and its user would make it:
 * APPEND (with flags), flags set and cleared, messages deleted and expunged, copied to another folder, and
 * FETCHes and NOOPs between. Written for mailring's tests because Dovecot's own stress tester (imaptest) is
 * not in Debian's packages; it does what the convergence issue ran imaptest for: several sessions changing
 * one user's mail on several copies at once.
 *
 * A command the server refuses (a message just expunged by another session, a race a real client meets
 * too) is counted, not thrown: what the test checks is whether the copies agree afterwards.
 */
import type {Randomness} from './seeded.js'
import {ImapClient} from './mailclients.js'

export interface ImapWorkload {
  host: string
  port: number
  user: string
  password: string
  /** Where COPY puts messages (it must exist on the copy). */
  folder: string
  /** Commands that change mail. */
  changes: number
  random: Randomness
  /** Names the messages this session appends. */
  label: string
}

export interface ImapWorkloadResult {
  changes: number
  /** Commands the server refused (NO/BAD). */
  refused: string[]
}

const FLAGS = ['\\Seen', '\\Flagged', '\\Answered', '\\Draft', '$Label1', 'todo']

/** Runs the workload on one session; resolves when it has logged out. */
export async function runImapWorkload(w: ImapWorkload): Promise<ImapWorkloadResult> {
  const result: ImapWorkloadResult = {changes: 0, refused: []}
  const client = await ImapClient.connect(w.host, w.port)
  try {
    await client.login(w.user, w.password)
    await client.select('INBOX')
    for (let i = 0; i < w.changes; i++) {
      const uids = await client.uids()
      const uid = uids.length > 0 ? w.random.pick(uids) : undefined
      const flag = w.random.pick(FLAGS)
      const kind = w.random.pick(['append', 'append', 'flag', 'flag', 'unflag', 'expunge', 'copy'] as const)
      const command = (() => {
        if (kind === 'append' || uid === undefined) return undefined
        if (kind === 'flag') return `UID STORE ${uid} +FLAGS (${flag})`
        if (kind === 'unflag') return `UID STORE ${uid} -FLAGS (${flag})`
        if (kind === 'copy') return `UID COPY ${uid} "${w.folder}"`
        return `UID STORE ${uid} +FLAGS.SILENT (\\Deleted)`
      })()
      try {
        if (command === undefined) {
          const subject = `${w.label} ${i}`
          const flags = w.random.rnd() < 0.3 ? [flag] : []
          await client.append(
            'INBOX',
            `From: client@example.net\r\nTo: ${w.user}\r\nSubject: ${subject}\r\nMessage-ID: <${subject.replace(/\W/g, '.')}@workload>\r\n\r\n${subject}\r\n`,
            flags,
          )
        } else {
          await client.command(command)
          if (kind === 'expunge') await client.command(`UID EXPUNGE ${uid}`)
        }
        result.changes++
      } catch (error) {
        if (!(error instanceof Error) || !error.message.startsWith('IMAP ')) throw error
        result.refused.push(error.message)
      }
      // What a client does between changes: look, and let the server tell it what others changed.
      await client.command(w.random.rnd() < 0.5 ? 'NOOP' : 'FETCH 1:* (FLAGS)').catch(() => undefined)
    }
  } finally {
    await client.logout()
  }
  return result
}
