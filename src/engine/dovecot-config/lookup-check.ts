/**
 * The check after an install: a user looked up through the new file must answer as the store says
 * (`doveadm user` on a mail server, `doveadm auth lookup` on a proxy), retried for a few seconds while
 * Dovecot's new auth processes start.
 */

import {firstLine} from '../../core/errors.js'
import type {DovecotVersion} from '../../dovecot/render.js'
import {
  authLookupCommand,
  authLookupFields,
  doveadmCommandLine,
  userFieldsOf,
  userLookupCommand,
} from '../../dovecot/doveadm.js'
import {type DoveadmReply, SshDoveadm} from '../../remote/doveadm.js'
import {LOOKUP_EXIT_MARKER} from '../../dovecot/scripts/config-push.js'
import {type ExecResult, SshConnection} from '../../remote/ssh.js'
import {type SampleUser} from './render.js'
import {type DovecotContext} from '../context.js'

/** How long `doveadm user` may keep failing after a reload before the new file counts as broken. */
const LOOKUP_DEADLINE_MS = 5_000
export const LOOKUP_SETTLE_MS = 300

export function lookupExitCode(stdout: string): number {
  const m = new RegExp(`${LOOKUP_EXIT_MARKER}(\\d+)`).exec(stdout)
  return m ? Number(m[1]) : 1
}

/** undefined when `doveadm user` answers as the store says it must; otherwise what is wrong. */
export async function verifyLookup(
  doveadm: SshDoveadm,
  sample: SampleUser,
  version: DovecotVersion,
  first: DoveadmReply,
): Promise<string | undefined> {
  const deadline = Date.now() + LOOKUP_DEADLINE_MS
  let problem = ''
  let reply = first
  for (;;) {
    if (reply.outcome === 'ok') {
      const replica = userFieldsOf(reply.rows, sample.user).get('mail_replica')
      if (version === '2.4' || sample.mailReplica === undefined || replica === sample.mailReplica)
        return undefined
      problem = `mail_replica is ${replica ?? 'missing'}, expected ${sample.mailReplica}`
    } else {
      problem = `doveadm user exited ${reply.exitCode}: ${reply.message}`
    }
    if (Date.now() > deadline) return problem
    await new Promise((resolve) => setTimeout(resolve, 250))
    reply = await doveadm.run(userLookupCommand(sample.user), {timeoutMs: 30_000})
  }
}

/** A user for checking a proxy's new passdb, and the addresses of its copies (one must be the answer). */
export interface ProxySample {
  user: string
  hosts: string[]
}

/** The first user of the store (any will do: every user's login goes through the one query). */
export async function proxySampleUser(ctx: DovecotContext): Promise<ProxySample | undefined> {
  const [record] = await ctx.store.listUsers({limit: 1})
  if (!record) return undefined
  const addressOf = new Map(ctx.servers.map((s) => [s.name, s.address]))
  return {user: record.user, hosts: record.copies.map((c) => addressOf.get(c) ?? '')}
}

/** undefined when the proxy's `doveadm auth lookup` sends the user to one of its copies; else what is wrong. */
export async function verifyProxyLookup(
  conn: SshConnection,
  doveadm: string,
  sample: ProxySample,
  first: ExecResult | {exitCode: number; stdout: string; stderr: string},
): Promise<string | undefined> {
  const deadline = Date.now() + LOOKUP_DEADLINE_MS
  let problem = ''
  let reply = first
  for (;;) {
    if (reply.exitCode === 0) {
      const fields = authLookupFields(reply.stdout)
      const host = fields.get('host')
      if (/^y/i.test(fields.get('proxy') ?? '') && host !== undefined && sample.hosts.includes(host))
        return undefined
      problem = `the answer is proxy=${fields.get('proxy') ?? 'missing'} host=${host ?? 'missing'}, expected one of ${sample.hosts.join(', ')}`
    } else {
      problem = `doveadm auth lookup exited ${reply.exitCode ?? '?'}: ${firstLine(reply.stderr || reply.stdout)}`
    }
    if (Date.now() > deadline) return problem
    await new Promise((resolve) => setTimeout(resolve, 250))
    reply = await conn.exec(doveadmCommandLine(doveadm, authLookupCommand(sample.user)), {
      label: 'doveadm auth lookup',
      timeoutMs: 30_000,
    })
  }
}
