import {describe, expect, it} from 'vitest'

import {identityRepairs, stateFingerprint} from '../../src/core/mailbox-state.js'

const row = (mailbox: string, messages: string, guid: string, uidvalidity = '100', highestmodseq = '1') => ({
  mailbox,
  messages,
  guid,
  uidvalidity,
  uidnext: String(Number(messages) + 1),
  highestmodseq,
})

describe('stateFingerprint', () => {
  it('changes with a message, a flag (modseq) or an identity, not with the order of mailboxes', () => {
    const base = [row('INBOX', '2', 'g1'), row('Sent', '0', 'g2')]
    expect(stateFingerprint([...base].reverse())).toBe(stateFingerprint(base))
    expect(stateFingerprint([row('INBOX', '3', 'g1'), row('Sent', '0', 'g2')])).not.toBe(
      stateFingerprint(base),
    )
    expect(stateFingerprint([row('INBOX', '2', 'g1', '100', '2'), row('Sent', '0', 'g2')])).not.toBe(
      stateFingerprint(base),
    )
    expect(stateFingerprint([row('INBOX', '2', 'g9'), row('Sent', '0', 'g2')])).not.toBe(
      stateFingerprint(base),
    )
  })
})

describe('identityRepairs', () => {
  it('gives each empty twin the identity of the copy that holds messages', () => {
    expect(
      identityRepairs([
        {copy: 'mx-a', rows: [row('INBOX', '0', 'ga', '200')]},
        {copy: 'mx-b', rows: [row('INBOX', '0', 'gb', '201')]},
        {copy: 'mx-c', rows: [row('INBOX', '1', 'gc', '199')]},
      ]),
    ).toEqual([
      {copy: 'mx-a', mailbox: 'INBOX', guid: 'gc', uidvalidity: '199'},
      {copy: 'mx-b', mailbox: 'INBOX', guid: 'gc', uidvalidity: '199'},
    ])
  })

  it('prefers the first copy when none holds messages, and leaves agreeing mailboxes alone', () => {
    expect(
      identityRepairs([
        {copy: 'mx-a', rows: [row('INBOX', '0', 'ga'), row('Sent', '0', 's1')]},
        {copy: 'mx-b', rows: [row('INBOX', '0', 'gb'), row('Sent', '0', 's1')]},
      ]),
    ).toEqual([{copy: 'mx-b', mailbox: 'INBOX', guid: 'ga', uidvalidity: '100'}])
  })

  it('never touches a mailbox that holds messages, and mailboxes only on one copy', () => {
    expect(
      identityRepairs([
        {copy: 'mx-a', rows: [row('INBOX', '2', 'ga'), row('Drafts', '0', 'd1')]},
        {copy: 'mx-b', rows: [row('INBOX', '1', 'gb')]},
      ]),
    ).toEqual([])
  })
})
