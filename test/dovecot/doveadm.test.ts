/**
 * The doveadm vocabulary: each command's command line and HTTP API form say the same thing, exit codes
 * mean what Dovecot documents, and the tab output parser reads what a real doveadm prints (the sample
 * strings below were printed by Debian 12's Dovecot 2.3.19; test/remote/doveadm.int.test.ts runs them live).
 */
import {describe, expect, it} from 'vitest'

import {
  authLookupCommand,
  authLookupFields,
  doveadmArgv,
  fetchCommand,
  flagsCommand,
  httpRequestEntry,
  logErrorsCommand,
  mailboxStatusCommand,
  outcomeOfExit,
  parseTabRows,
  reloadCommand,
  syncCommand,
  syncStateOf,
  userErrors,
  userFieldsOf,
  userLookupCommand,
} from '../../src/dovecot/doveadm.js'

describe('doveadm commands', () => {
  it('spell sync the same on the command line and in the HTTP API', () => {
    const sync = syncCommand({
      user: 'alice@example.com',
      destination: 'tcp:10.0.0.3:12345',
      full: true,
      lockSeconds: 30,
    })
    expect(doveadmArgv(sync)).toEqual([
      '-f',
      'tab',
      'sync',
      '-u',
      'alice@example.com',
      '-f',
      '-l',
      '30',
      'tcp:10.0.0.3:12345',
    ])
    expect(httpRequestEntry(sync, 't1')).toEqual([
      'sync',
      {user: 'alice@example.com', destination: ['tcp:10.0.0.3:12345'], fullSync: true, lockTimeout: 30},
      't1',
    ])
  })

  it('sync a copy moved aside through an overridden mail_home, on the command line only', () => {
    const sync = syncCommand({user: 'a@b.c', destination: 'tcp:h:1', home: '/var/vmail/.mailring-trash/x y'})
    expect(doveadmArgv(sync)).toEqual([
      '-o',
      'mail_home=/var/vmail/.mailring-trash/x y',
      '-f',
      'tab',
      'sync',
      '-u',
      'a@b.c',
      'tcp:h:1',
    ])
    expect(() => httpRequestEntry(sync, 't1')).toThrow(/needs the command line/)
  })

  it('pass a saved dsync state with -s, an empty one too (the sync then prints its first state)', () => {
    const state = 'AQAAADCl8RVIVxdraHUAAIPsw3VIVxdrAQAAAAEAAAAAAAAAAAAAAAAAAAABAAAA9pkfwA=='
    const sync = syncCommand({user: 'a@b.c', destination: 'tcp:h:1', state})
    expect(doveadmArgv(sync)).toEqual(['-f', 'tab', 'sync', '-u', 'a@b.c', '-s', state, 'tcp:h:1'])
    expect(httpRequestEntry(sync, 't1')).toEqual([
      'sync',
      {user: 'a@b.c', destination: ['tcp:h:1'], state},
      't1',
    ])
    const first = syncCommand({user: 'a@b.c', destination: 'tcp:h:1', full: true, state: ''})
    expect(first.args).toEqual(['-u', 'a@b.c', '-f', '-s', '', 'tcp:h:1'])
    expect(first.params).toMatchObject({fullSync: true, state: ''})
  })

  it('read the state a sync printed, from the command line and from the HTTP API', () => {
    // As printed by 2.3.19 and 2.4.1: `doveadm -f tab sync -s '' ...`, and the HTTP API's answer rows.
    const printed = 'state\nAQAAADBq/hGwVxdrlQcAAIPsw3WwVxdrAQAAAAEAAAAAAAAAAAAAAAAAAAABAAAADB68RQ==\n'
    expect(syncStateOf(parseTabRows(printed))).toBe(
      'AQAAADBq/hGwVxdrlQcAAIPsw3WwVxdrAQAAAAEAAAAAAAAAAAAAAAAAAAABAAAADB68RQ==',
    )
    expect(syncStateOf([{state: 'AQAAAGDM'}])).toBe('AQAAAGDM')
    // A sync without -s prints the header only; the HTTP API answers no row.
    expect(syncStateOf(parseTabRows('state\n'))).toBeUndefined()
    expect(syncStateOf([])).toBeUndefined()
    expect(syncStateOf({})).toBeUndefined()
  })

  it("set or take away one message's flags by mailbox and UID", () => {
    const replace = flagsCommand('a@b.c', 'replace', ['\\Seen', 'todo'], 'Archive', '7')
    expect(doveadmArgv(replace)).toEqual([
      '-f',
      'tab',
      'flags',
      'replace',
      '-u',
      'a@b.c',
      '\\Seen todo',
      'mailbox',
      'Archive',
      'uid',
      '7',
    ])
    expect(httpRequestEntry(replace, 't1')).toEqual([
      'flagsReplace',
      {user: 'a@b.c', flag: ['\\Seen', 'todo'], query: ['mailbox', 'Archive', 'uid', '7']},
      't1',
    ])
    expect(flagsCommand('a@b.c', 'remove', ['\\Flagged'], 'INBOX', '1').method).toBe('flagsRemove')
  })

  it('leave out the options not asked for', () => {
    const sync = syncCommand({user: 'bob@example.com', destination: 'tcp:h:1'})
    expect(sync.args).toEqual(['-u', 'bob@example.com', 'tcp:h:1'])
    expect(sync.params).toEqual({user: 'bob@example.com', destination: ['tcp:h:1']})
  })

  it('pass fields as one argument on the command line and as a list in the API', () => {
    const status = mailboxStatusCommand('alice@example.com', ['messages', 'guid'])
    expect(doveadmArgv(status)).toEqual([
      '-f',
      'tab',
      'mailbox',
      'status',
      '-u',
      'alice@example.com',
      'messages guid',
      '*',
    ])
    expect(status.params).toEqual({
      user: 'alice@example.com',
      field: ['messages', 'guid'],
      mailboxMask: ['*'],
    })
    const fetch = fetchCommand('alice@example.com', ['mailbox', 'guid', 'uid', 'flags'])
    expect(fetch.args).toEqual(['-u', 'alice@example.com', 'mailbox guid uid flags', 'all'])
    expect(fetch.method).toBe('fetch')
  })

  it('look a user up and reload', () => {
    expect(doveadmArgv(userLookupCommand('a@b.c'))).toEqual(['-f', 'tab', 'user', 'a@b.c'])
    expect(userLookupCommand('a@b.c').params).toEqual({userMask: ['a@b.c']})
    expect(httpRequestEntry(reloadCommand(), 'r')).toEqual(['reload', {}, 'r'])
  })
})

describe('doveadm answers', () => {
  it('map exit codes to outcomes', () => {
    expect([0, 2, 67, 75, 1, 64, 65, 68, 77, 78, 89].map(outcomeOfExit)).toEqual([
      'ok',
      'not-fully-synced',
      'no-such-user',
      'temporary',
      'failed',
      'failed',
      'failed',
      'failed',
      'failed',
      'failed',
      'failed',
    ])
  })

  it('read tab output: a header row, then one row each', () => {
    const out =
      'mailbox\tmessages\tuidnext\tuidvalidity\tvsize\tguid\n' +
      'INBOX\t1\t2\t1796293078\t287\t38493e0ed641116bd12d000083ecc375\n' +
      'Sent\t0\t1\t1796293079\t0\t48493e0ed641116bd12d000083ecc375\n'
    expect(parseTabRows(out)).toEqual([
      {
        mailbox: 'INBOX',
        messages: '1',
        uidnext: '2',
        uidvalidity: '1796293078',
        vsize: '287',
        guid: '38493e0ed641116bd12d000083ecc375',
      },
      {
        mailbox: 'Sent',
        messages: '0',
        uidnext: '1',
        uidvalidity: '1796293079',
        vsize: '0',
        guid: '48493e0ed641116bd12d000083ecc375',
      },
    ])
    expect(parseTabRows('mailbox\tmessages\n')).toEqual([])
    expect(parseTabRows('')).toEqual([])
  })

  it("read a user's fields from the command line's rows and from the API's object", () => {
    const rows = parseTabRows('field\tvalue\nuid\tvmail\nmail_replica\ttcp:127.0.0.9:12345\n')
    expect(userFieldsOf(rows, 'alice@example.com').get('mail_replica')).toBe('tcp:127.0.0.9:12345')
    const api = {'alice@example.com': {uid: 'vmail', mail_replica: 'tcp:127.0.0.9:12345'}}
    expect(userFieldsOf(api, 'alice@example.com').get('mail_replica')).toBe('tcp:127.0.0.9:12345')
    expect(userFieldsOf(api, 'bob@example.com').size).toBe(0)
  })
})

describe('doveadm auth lookup (a proxy passdb check)', () => {
  it('is `auth lookup USER`; its answer is read from the `key : value` lines (as 2.3 prints it, whatever -f says)', () => {
    expect(doveadmArgv(authLookupCommand('alice@example.com'))).toEqual([
      '-f',
      'tab',
      'auth',
      'lookup',
      'alice@example.com',
    ])
    const fields = authLookupFields(
      '\npassdb: alice@example.com\n  user      : alice@example.com\n  proxy     : y\n  host      : 192.0.2.7\n',
    )
    expect(Object.fromEntries(fields)).toEqual({user: 'alice@example.com', proxy: 'y', host: '192.0.2.7'})
    expect(authLookupFields("\npassdb lookup: user nobody@example.com doesn't exist\n").size).toBe(0)
  })
})

describe('doveadm log errors', () => {
  it('is asked since a time, on the command line and in the HTTP API', () => {
    const command = logErrorsCommand(1796325097)
    expect(doveadmArgv(command)).toEqual(['-f', 'tab', 'log', 'errors', '-s', '1796325097'])
    expect(httpRequestEntry(command, 't1')).toEqual(['logErrors', {since: 1796325097}, 't1'])
  })

  it('keeps the errors that name the user in their prefix, each once, oldest first', () => {
    // As Dovecot 2.3.19 answered through the HTTP API after a sync onto a full disk (paths shortened).
    const rows = [
      {timestamp: 'Dec 03 19:11:37', prefix: 'doveadm(22622)', type: 'Error', text: 'Command sync failed'},
      {
        timestamp: 'Dec 03 19:11:37',
        prefix: 'doveadm(erin@example.com)<22623><nDnfK+m+EWtfWAAAg+zDdQ>',
        type: 'Error',
        text: 'Mailbox INBOX: Saving failed: write(/home/erin/Maildir/tmp/1.vm) failed: No space left on device',
      },
      {
        timestamp: 'Dec 03 19:11:37',
        prefix: 'doveadm(127.0.0.1,erin@example.com)',
        type: 'Error',
        text: 'Mailbox INBOX: Saving mail: write(/home/erin/Maildir/tmp/1.vm) failed: No space left on device',
      },
      {
        timestamp: 'Dec 03 19:11:38',
        prefix: 'doveadm(erin@example.com)<22627><miBBO+m+EWtjWAAAg+zDdQ>',
        type: 'Error',
        text: 'Mailbox INBOX: Saving failed: write(/home/erin/Maildir/tmp/1.vm) failed: No space left on device',
      },
      {
        timestamp: 'Dec 03 19:11:38',
        prefix: 'doveadm(xerin@example.com)<1><s>',
        type: 'Error',
        text: 'other',
      },
    ]
    expect(userErrors(rows, 'Erin@Example.com')).toEqual([
      'Mailbox INBOX: Saving failed: write(/home/erin/Maildir/tmp/1.vm) failed: No space left on device',
      'Mailbox INBOX: Saving mail: write(/home/erin/Maildir/tmp/1.vm) failed: No space left on device',
    ])
    expect(userErrors(rows, 'bob@example.com')).toEqual([])
  })
})
