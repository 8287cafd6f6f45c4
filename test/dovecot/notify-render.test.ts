/**
 * The notification snippet and the event parser, pure. The events below were posted by a real Dovecot
 * 2.3.19 (trimmed); test/dovecot/notify.int.test.ts runs the snippet on real 2.3 and 2.4 servers.
 */
import {describe, expect, it} from 'vitest'

import {MailringError} from '../../src/core/errors.js'
import {notifyFilters, notifyUrl, renderNotifyConfig} from '../../src/dovecot/notify.js'
import {classifyEvent, parseNotifications, serverLookup} from '../../src/dovecot/notify-events.js'
import {maskSecrets} from '../../src/dovecot/render.js'

const SECRET = 'a1b2c3d4e5f6a7b8c9d0'

const DELIVERY = {
  event: 'mail_delivery_finished',
  hostname: 'mx01',
  start_time: '2026-12-03T15:49:12.048463Z',
  end_time: '2026-12-03T15:49:12.056189Z',
  categories: ['local-delivery', 'lmtp', 'smtp-server', 'service:lmtp'],
  fields: {
    reason_code: ['lmtp:cmd_data'],
    protocol: 'lmtp',
    remote_ip: '127.0.0.1',
    rcpt_to: 'alice@example.com',
    user: 'alice@example.com',
    message_subject: 'one',
    message_size: 283,
  },
}
const STORE = {
  event: 'imap_command_finished',
  hostname: 'mx02',
  categories: ['service:imap', 'imap'],
  fields: {
    user: 'Bob@Example.COM',
    cmd_tag: 't3',
    cmd_name: 'STORE',
    cmd_args: '1 +FLAGS (\\Seen)',
    tagged_reply_state: 'OK',
    mailbox: 'INBOX',
  },
}
const imap = (cmd_name: string, tagged_reply_state = 'OK') => ({
  ...STORE,
  fields: {...STORE.fields, cmd_name, tagged_reply_state},
})

describe('the notification snippet', () => {
  it('2.3: event_exporter with transport http-post, the secret as basic auth, three disjoint metrics', () => {
    const {text, secrets} = renderNotifyConfig({
      server: 'mx01',
      version: '2.3',
      url: 'http://10.0.0.5:8425',
      secret: SECRET,
    })
    expect(text).toContain('event_exporter mailring_replicator {\n  format = json\n')
    expect(text).toContain('  transport = http-post\n')
    expect(text).toContain(`  transport_args = http://mailring:${SECRET}@10.0.0.5:8425/events\n`)
    expect(text).toContain('  transport_timeout = 1s\n')
    expect(text).not.toMatch(/driver|http_post_url/)
    expect(text.match(/^metric /gm)).toHaveLength(3)
    expect(text).toContain('  filter = event=mail_delivery_finished\n')
    expect(text).toMatch(
      /filter = event=imap_command_finished AND tagged_reply_state=OK AND \(.*cmd_name="UID STORE"/,
    )
    expect(text).toContain('filter = event=mail_expunged AND category="service:pop3"\n')
    expect(secrets).toEqual([SECRET])
    expect(maskSecrets(text, secrets)).not.toContain(SECRET)
  })

  it('2.4: the renamed settings (driver, http_post_url, time_format), same metrics', () => {
    const {text} = renderNotifyConfig({
      version: '2.4',
      url: 'https://replicator.example:8425/',
      secret: SECRET,
    })
    expect(text).toContain('  driver = http-post\n  format = json\n  time_format = rfc3339\n')
    expect(text).toContain(`  http_post_url = https://mailring:${SECRET}@replicator.example:8425/events\n`)
    expect(text).not.toMatch(/transport|format_args/)
    for (const filter of Object.values(notifyFilters())) expect(text).toContain(`filter = ${filter}\n`)
  })

  it('refuses a URL with a path, credentials or another scheme, and a secret it cannot put in a URL', () => {
    for (const url of ['ftp://x:1', 'http://x:1/api', 'http://u:p@x:1', 'not a url', 'http://x:1/?a=b']) {
      expect(() => notifyUrl(url, SECRET)).toThrow(MailringError)
    }
    for (const secret of ['short', 'has space in it 1234', 'percent%41percent%41', 'dollar$dollar$dollar$']) {
      expect(() => notifyUrl('http://x:1', secret)).toThrow(/openssl rand -hex 32/)
    }
  })
})

describe('the events Dovecot posts', () => {
  it('a delivery is priority mail; a failed one is ignored', () => {
    expect(classifyEvent(DELIVERY)).toBe('mail')
    expect(classifyEvent({...DELIVERY, fields: {...DELIVERY.fields, error: 'Quota exceeded'}})).toBe('failed')
  })

  it('IMAP: saves and copies are mail, other changes change, failed or unknown commands ignored', () => {
    for (const c of ['APPEND', 'COPY', 'UID COPY', 'MOVE', 'UID MOVE'])
      expect(classifyEvent(imap(c))).toBe('mail')
    for (const c of [
      'STORE',
      'UID STORE',
      'EXPUNGE',
      'CLOSE',
      'RENAME',
      'DELETE',
      'CREATE',
      'FETCH',
      'UID FETCH',
    ])
      expect(classifyEvent(imap(c))).toBe('change')
    expect(classifyEvent(imap('STORE', 'NO'))).toBe('failed')
    expect(classifyEvent(imap('NOOP'))).toBe('unknown_command')
    expect(classifyEvent({event: 'mail_expunged', fields: {user: 'a@b.c'}})).toBe('change')
    expect(classifyEvent({event: 'client_connection_connected', fields: {}})).toBe('unknown_event')
    expect(classifyEvent('text')).toBe('not_an_event')
    expect(classifyEvent([DELIVERY])).toBe('not_an_event')
  })

  it('turns a body into requests: canonical user, source by hostname, else by peer address', () => {
    const lookup = serverLookup([
      {name: 'mx01', address: '10.0.0.1'},
      {name: 'mx02', address: '10.0.0.2'},
      {name: 'mx03', address: '10.0.0.3'},
    ])
    expect(parseNotifications(DELIVERY, lookup, '10.0.0.9')).toEqual({
      requests: [{user: 'alice@example.com', priority: 'mail', source: 'mx01'}],
      ignored: {},
      unknownSource: 0,
    })
    expect(parseNotifications(STORE, lookup).requests).toEqual([
      {user: 'bob@example.com', priority: 'change', source: 'mx02'},
    ])
    // Host names: a full name whose first label is the server's, an address; else the peer address.
    expect(lookup({hostname: 'MX03.mail.example'})).toBe('mx03')
    expect(lookup({hostname: '10.0.0.2'})).toBe('mx02')
    expect(lookup({hostname: 'elsewhere', peerAddress: '::ffff:10.0.0.3'})).toBe('mx03')
    const unknown = parseNotifications({...DELIVERY, hostname: 'elsewhere'}, lookup, '127.0.0.1')
    expect(unknown.requests).toEqual([{user: 'alice@example.com', priority: 'mail'}])
    expect(unknown.unknownSource).toBe(1)
  })

  it('takes an array of events, counting what it ignores', () => {
    const parsed = parseNotifications(
      [
        DELIVERY,
        imap('NOOP'),
        {event: 'mail_expunged', fields: {}},
        {...DELIVERY, fields: {user: 'not an address'}},
        42,
        imap('LOGOUT'),
      ],
      () => undefined,
    )
    expect(parsed.requests).toEqual([{user: 'alice@example.com', priority: 'mail'}])
    expect(parsed.ignored).toEqual({unknown_command: 2, no_user: 1, bad_user: 1, not_an_event: 1})
  })
})
