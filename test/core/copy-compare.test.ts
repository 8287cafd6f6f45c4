import {describe, expect, it} from 'vitest'

import {describeDifferences, mailboxesToDeepCheck, type CopyStatus} from '../../src/core/copy-compare.js'

const box = (
  mailbox: string,
  messages: number,
  guid = `g-${mailbox}`,
  uidvalidity = '7',
  uidnext?: number,
) => ({
  mailbox,
  messages: String(messages),
  uidvalidity,
  uidnext: String(uidnext ?? messages + 1),
  guid,
})

describe('comparing copies', () => {
  it('finds nothing when every mailbox agrees', () => {
    const copies: CopyStatus[] = [
      {copy: 'mx1', mailboxes: [box('INBOX', 2), box('Sent', 1)]},
      {copy: 'mx2', mailboxes: [box('Sent', 1), box('INBOX', 2)]},
    ]
    expect(mailboxesToDeepCheck(copies)).toEqual([])
    expect(describeDifferences(copies)).toEqual([])
  })

  it('names the missing messages per pair of copies from their GUIDs', () => {
    const copies: CopyStatus[] = [
      {copy: 'mx1', mailboxes: [box('INBOX', 3)]},
      {copy: 'mx3', mailboxes: [box('INBOX', 1, 'g-INBOX', '7', 4)]},
    ]
    expect(mailboxesToDeepCheck(copies)).toEqual(['INBOX'])
    const messages = new Map([
      ['mx1', new Map([['INBOX', ['m1', 'm2', 'm3']]])],
      ['mx3', new Map([['INBOX', ['m1']]])],
    ])
    expect(describeDifferences(copies, messages)).toEqual(['INBOX: 2 messages on mx1 missing on mx3'])
  })

  it('says which copies lack a mailbox, and when identities differ', () => {
    const copies: CopyStatus[] = [
      {copy: 'mx1', mailboxes: [box('INBOX', 0, 'a', '1'), box('Archive', 4)]},
      {copy: 'mx2', mailboxes: [box('INBOX', 0, 'b', '2')]},
    ]
    expect(describeDifferences(copies)).toEqual([
      'Archive: on mx1, missing on mx2',
      'INBOX: different mailbox GUIDs (created on each copy on its own)',
      'INBOX: UIDVALIDITY 1 on mx1, 2 on mx2',
    ])
  })

  it('reports message counts when GUIDs were not fetched, and UIDNEXT alone', () => {
    expect(
      describeDifferences([
        {copy: 'mx1', mailboxes: [box('INBOX', 2)]},
        {copy: 'mx2', mailboxes: [box('INBOX', 1)]},
      ]),
    ).toEqual(['INBOX: 2 messages on mx1, 1 message on mx2'])
    expect(
      describeDifferences([
        {copy: 'mx1', mailboxes: [box('INBOX', 1, 'g', '7', 2)]},
        {copy: 'mx2', mailboxes: [box('INBOX', 1, 'g', '7', 3)]},
      ]),
    ).toEqual(['INBOX: UIDNEXT 2 on mx1, 3 on mx2 (a message was added and expunged on one copy only)'])
  })
})
