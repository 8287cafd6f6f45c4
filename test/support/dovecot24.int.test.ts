/**
 * The test bed's Dovecot 2.4 (Debian 13's, chrooted in the root of scripts/build-dovecot24-root.sh) started
 * beside a 2.3 one with the same helper: it serves IMAP logins, LMTP deliveries, doveadm on the command line
 * and over HTTP, reloads, and stops.
 */
import * as fs from 'node:fs'

import {afterAll, beforeAll, expect, it} from 'vitest'

import {startDovecot, startDovecotHosts, type DovecotHost} from './dovecot.js'
import {describeDovecot24} from './dovecot24.js'
import {isAlive, run} from './proc.js'

const USERS = [
  {user: 'alice@example.com', password: 'pw-a'},
  {user: 'bob@example.com', password: 'pw-b'},
]

describeDovecot24('a Dovecot 2.4 host beside a 2.3 one', () => {
  let h24: DovecotHost
  let h23: DovecotHost

  beforeAll(async () => {
    const hosts = await startDovecotHosts([
      {version: '2.4', users: USERS},
      {version: '2.3', users: USERS},
    ])
    h24 = hosts[0]!
    h23 = hosts[1]!
  })

  afterAll(async () => {
    await Promise.all([h24?.stop(), h23?.stop()])
  })

  it('runs Dovecot 2.4 in the root and 2.3 on the host', async () => {
    expect(h24.version).toBe('2.4')
    const v24 = await run('/bin/sh', ['-c', `${h24.command('dovecot')} --version`])
    expect(v24.stdout, v24.stderr).toMatch(/^2\.4\./)
    const v23 = await run('/bin/sh', ['-c', `${h23.command('dovecot')} --version`])
    expect(v23.stdout).toMatch(/^2\.3\./)
    expect(h24.readLog()).toMatch(/Dovecot v2\.4\.\S+ .*starting up for imap, lmtp/)
    expect(fs.readFileSync(h24.configPath, 'utf8')).toMatch(/^dovecot_config_version = 2\.4\./)
  })

  it('delivers over LMTP and serves the mail over IMAP, to the password only', async () => {
    await h24.deliver('alice@example.com', 'Subject: over lmtp\r\nMessage-ID: <m1@test>\r\n\r\nbody\r\n')
    await h24.save('alice@example.com', 'Subject: by doveadm save\r\n\r\nbody\r\n')
    const box = await h24.imapListMessages('alice@example.com', 'pw-a')
    expect(box.exists).toBe(2)
    expect(box.messages.map((m) => m.subject)).toEqual(['over lmtp', 'by doveadm save'])
    await expect(h24.imapListMessages('alice@example.com', 'wrong')).rejects.toThrow()
    await expect(h24.deliver('nobody@example.com', 'Subject: x\r\n\r\nx\r\n')).rejects.toThrow()
    // The mail is in the host's folder, written by the root's Dovecot as the host's vmail.
    const cur = `${h24.mailDir}/example.com/alice`
    expect(fs.existsSync(cur)).toBe(true)
  })

  it('answers doveadm on the command line and over the HTTP API', async () => {
    const user = await h24.doveadm(['user', 'alice@example.com'])
    expect(user.exitCode, user.stderr).toBe(0)
    expect(user.stdout).toMatch(/^home\s+\S+\/home\/example\.com\/alice$/m)
    expect((await h24.doveadm(['user', 'nobody@example.com'])).exitCode).toBe(67)
    const status = await h24.doveadm([
      '-f',
      'tab',
      'mailbox',
      'status',
      '-u',
      'alice@example.com',
      'messages',
      'INBOX',
    ])
    // As 2.3 does: the mailbox name first, though not asked for (and `mailbox` is refused as a field).
    expect(status.stdout.trim()).toBe('mailbox\tmessages\nINBOX\t2')
    expect(await h24.doveadmHttp([['user', {userMask: ['bob@example.com']}, 't1']])).toEqual([
      ['doveadmResponse', {'bob@example.com': expect.objectContaining({uid: 'vmail'})}, 't1'],
    ])
  })

  it('answers every mail command of one HTTP request with the default auth-userdb socket, where 2.3 answers 75 after the first', async () => {
    // Neither host sets auth-userdb's owner (docs/dovecot-facts.md: 2.3 needs it owned by the mail user).
    const status = (user: string, tag: string) => [
      'mailboxStatus',
      {user, field: ['messages'], mailboxMask: ['*']},
      tag,
    ]
    const batch = [
      status('alice@example.com', 't1'),
      status('bob@example.com', 't2'),
      status('alice@example.com', 't3'),
    ]
    const kinds = async (h: DovecotHost) => ((await h.doveadmHttp(batch)) as unknown[][]).map((r) => r[0])
    expect(await kinds(h24)).toEqual(['doveadmResponse', 'doveadmResponse', 'doveadmResponse'])
    expect(await h23.doveadmHttp(batch)).toEqual([
      ['doveadmResponse', [], 't1'],
      ['error', {type: 'exitCode', exitCode: 75}, 't2'],
      ['error', {type: 'exitCode', exitCode: 75}, 't3'],
    ])
  })

  it('syncs a user with the 2.3 host, both ways (doveadm sync over TCP)', async () => {
    const sync = (from: DovecotHost, to: DovecotHost) =>
      from.doveadm(['sync', '-u', 'bob@example.com', `tcp:${to.ip}:${to.doveadmPort}`])
    await h23.deliver('bob@example.com', 'Subject: written on 2.3\r\n\r\nbody\r\n')
    const first = await sync(h23, h24)
    expect(first.exitCode, first.stderr).toBe(0)
    expect((await h24.imapListMessages('bob@example.com', 'pw-b')).messages.map((m) => m.subject)).toEqual([
      'written on 2.3',
    ])
    await h24.deliver('bob@example.com', 'Subject: written on 2.4\r\n\r\nbody\r\n')
    const back = await sync(h24, h23)
    expect(back.exitCode, back.stderr).toBe(0)
    const on23 = await h23.imapListMessages('bob@example.com', 'pw-b')
    expect(on23.messages.map((m) => m.subject)).toEqual(['written on 2.3', 'written on 2.4'])
    const guids = async (h: DovecotHost) =>
      (await h.doveadm(['-f', 'tab', 'fetch', '-u', 'bob@example.com', 'guid', 'mailbox', 'INBOX'])).stdout
    expect(await guids(h23)).toBe(await guids(h24))
  })

  it('reloads a changed configuration, and refuses a broken one keeping the old', async () => {
    await h24.reconfigure({extraConfig: 'mail_debug = yes\n'})
    await expect(h24.reconfigure({extraConfig: 'no_such_setting_24 = 1\n'})).rejects.toThrow(
      /no_such_setting_24/,
    )
    expect((await h24.doveadm(['user', 'alice@example.com'])).exitCode).toBe(0)
  })

  it('stops: the master and its children exit, nothing stays mounted', async () => {
    const other = await startDovecot({version: '2.4', users: USERS})
    const pid = other.pid
    await other.stop()
    expect(isAlive(pid)).toBe(false)
    expect(fs.existsSync(other.dir)).toBe(false)
    expect(fs.readFileSync('/proc/self/mounts', 'utf8')).not.toContain('mailring-testbed/trixie')
  })
})
