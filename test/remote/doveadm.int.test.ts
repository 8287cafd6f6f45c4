/**
 * The doveadm transport over SSH against real servers: an OpenSSH sshd and two Dovecot 2.3 instances on
 * loopback. sshd runs as root here, so the "remote" doveadm is the local binary with `-c <instance config>`.
 */
import {afterAll, beforeAll, describe, expect, it} from 'vitest'

import {
  kickCommand,
  kicked,
  mailboxStatusCommand,
  reloadCommand,
  syncCommand,
  userFieldsOf,
  userLookupCommand,
} from '../../src/dovecot/doveadm.js'
import {SshDoveadm} from '../../src/remote/doveadm.js'
import {SshConnection} from '../../src/remote/ssh.js'
import {startDovecot, type DovecotHost} from '../support/dovecot.js'
import {ImapClient, sessionClosed} from '../support/mailclients.js'
import {startSshd, type SshServer} from '../support/sshd.js'
import * as fs from 'node:fs'
import * as path from 'node:path'

let a: DovecotHost
let b: DovecotHost
let sshd: SshServer
let conn: SshConnection
let doveadmA: SshDoveadm

const USERS = [
  {user: 'alice@example.com', password: 'pw', userdbFields: {mail_replica: 'tcp:127.0.0.9:12345'}},
]

beforeAll(async () => {
  ;[a, b] = await Promise.all([startDovecot({users: USERS}), startDovecot({users: USERS})])
  sshd = await startSshd({host: a.ip})
  const knownHosts = path.join(sshd.dir, 'client_known_hosts')
  fs.writeFileSync(knownHosts, sshd.knownHostsLine + '\n')
  conn = await SshConnection.connect({
    host: sshd.host,
    port: sshd.port,
    user: 'root',
    identityFiles: [sshd.clientKeyPath],
    agent: false,
    knownHostsFiles: [knownHosts],
    resolve: {configPath: false, systemConfigPath: false, env: {}},
  })
  doveadmA = new SshDoveadm(conn, `doveadm -c ${a.configPath}`)
})

afterAll(async () => {
  await conn?.close()
  await Promise.all([a?.stop(), b?.stop(), sshd?.stop()])
})

describe('doveadm over SSH', () => {
  it("looks a user up and reads the userdb's fields", async () => {
    const reply = await doveadmA.run(userLookupCommand('alice@example.com'))
    expect(reply.outcome).toBe('ok')
    expect(userFieldsOf(reply.rows, 'alice@example.com').get('mail_replica')).toBe('tcp:127.0.0.9:12345')
  })

  it('says "no such user" for a user the server does not know, with doveadm\'s own words', async () => {
    const reply = await doveadmA.run(mailboxStatusCommand('nobody@example.com', ['messages']))
    expect(reply).toMatchObject({outcome: 'no-such-user', exitCode: 67})
    expect(reply.message).toMatch(/doesn't exist/)
  })

  it('syncs a delivered mail to the other server, whose mailbox status then agrees', async () => {
    await a.deliver('alice@example.com', 'Subject: over ssh\r\n\r\nbody\r\n')
    const sync = await doveadmA.run(
      syncCommand({user: 'alice@example.com', destination: `tcp:${b.ip}:${b.doveadmPort}`, lockSeconds: 30}),
    )
    expect(sync.outcome, sync.message).toBe('ok')
    const fields = ['messages', 'uidvalidity', 'uidnext', 'guid']
    const here = await doveadmA.run(mailboxStatusCommand('alice@example.com', fields))
    const there = new SshDoveadm(conn, `doveadm -c ${b.configPath}`)
    const copy = await there.run(mailboxStatusCommand('alice@example.com', fields))
    expect(here.rows).toEqual(copy.rows)
    expect(here.rows).toEqual([expect.objectContaining({mailbox: 'INBOX', messages: '1'})])
  })

  it('kicks a user: exit 68 with nobody logged in, 0 closing an open IMAP session; both count as kicked', async () => {
    const nobody = await doveadmA.run(kickCommand('alice@example.com'))
    expect(nobody.exitCode).toBe(68)
    expect(kicked(nobody)).toBe(true)
    const session = await ImapClient.connect(a.ip, a.imapPort)
    await session.login('alice@example.com', 'pw')
    const reply = await doveadmA.run(kickCommand('alice@example.com'))
    expect(reply.exitCode).toBe(0)
    expect(kicked(reply)).toBe(true)
    await sessionClosed(session)
    expect(kicked({exitCode: 75})).toBe(false)
  })

  it('reloads Dovecot', async () => {
    expect((await doveadmA.run(reloadCommand())).outcome).toBe('ok')
  })
})
