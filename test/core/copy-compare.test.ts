import {describe, expect, it} from 'vitest'

import {
  describeDifferences,
  flagRepairs,
  mailboxesToDeepCheck,
  normalizedFlags,
  type CopyStatus,
  type MessageRow,
} from '../../src/core/copy-compare.js'

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

const guids = (...list: string[]): MessageRow[] => list.map((guid) => ({guid}))
const msg = (uid: number, guid: string, flags: string): MessageRow => ({uid: String(uid), guid, flags})

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
      ['mx1', new Map([['INBOX', guids('m1', 'm2', 'm3')]])],
      ['mx3', new Map([['INBOX', guids('m1')]])],
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

  it('sees copies whose summaries agree but that each hold another message under the same UID', () => {
    const copies: CopyStatus[] = [
      {copy: 'mx1', mailboxes: [box('INBOX', 2)]},
      {copy: 'mx2', mailboxes: [box('INBOX', 2)]},
    ]
    // The summaries alone cannot tell: nothing to deep-check from them.
    expect(mailboxesToDeepCheck(copies)).toEqual([])
    const messages = new Map([
      ['mx1', new Map([['INBOX', [msg(1, 'g1', ''), msg(2, 'from-mx1', '')]]])],
      ['mx2', new Map([['INBOX', [msg(1, 'g1', ''), msg(2, 'from-mx2', '')]]])],
    ])
    expect(describeDifferences(copies, messages)).toEqual([
      'INBOX: 1 message on mx1 missing on mx2',
      'INBOX: 1 message on mx2 missing on mx1',
    ])
  })

  it('names the messages whose flags or keywords differ, \\Recent aside', () => {
    const copies: CopyStatus[] = ['mx1', 'mx2', 'mx3'].map((copy) => ({copy, mailboxes: [box('INBOX', 2)]}))
    const messages = new Map([
      ['mx1', new Map([['INBOX', [msg(1, 'g1', '\\Seen'), msg(2, 'g2', '\\Draft \\Seen')]]])],
      ['mx2', new Map([['INBOX', [msg(1, 'g1', '\\Seen \\Recent'), msg(2, 'g2', '\\Seen \\Draft')]]])],
      ['mx3', new Map([['INBOX', [msg(1, 'g1', '\\Seen'), msg(2, 'g2', '\\Seen')]]])],
    ])
    expect(describeDifferences(copies, messages)).toEqual([
      'INBOX: flags differ on 1 message (UID 2: \\Draft \\Seen on mx1, \\Draft \\Seen on mx2, \\Seen on mx3)',
    ])
    const keywords = new Map([
      ['mx1', new Map([['INBOX', [msg(1, 'g1', '$Label1'), msg(2, 'g2', '')]]])],
      ['mx2', new Map([['INBOX', [msg(1, 'g1', ''), msg(2, 'g2', '')]]])],
      ['mx3', new Map([['INBOX', [msg(1, 'g1', ''), msg(2, 'g2', '')]]])],
    ])
    expect(describeDifferences(copies, keywords)).toEqual([
      'INBOX: flags differ on 1 message (UID 1: $Label1 on mx1, (none) on mx2, (none) on mx3)',
    ])
  })

  it('compares flags as sets, without \\Recent', () => {
    expect(normalizedFlags('\\Seen  \\Answered \\Recent $Label1')).toBe('$Label1 \\Answered \\Seen')
    expect(normalizedFlags('')).toBe('')
  })
})

describe('repairing flags dsync leaves different', () => {
  const copy = (name: string, inbox: MessageRow[], archive: MessageRow[] = []) => ({
    copy: name,
    messages: new Map([
      ['INBOX', inbox],
      ['Archive', archive],
    ]),
  })

  it("gives each message the hub's flags where another copy differs, by GUID, \\Recent aside", () => {
    const hub = copy('mx-a', [
      {guid: 'g1', uid: '1', flags: '\\Seen \\Recent'},
      {guid: 'g2', uid: '2', flags: ''},
    ])
    const b = copy('mx-b', [
      {guid: 'g1', uid: '1', flags: '\\Seen'},
      {guid: 'g2', uid: '3', flags: '\\Flagged $Label1'},
    ])
    const c = copy('mx-c', [
      {guid: 'g1', uid: '4', flags: 'todo \\Flagged \\Seen'},
      {guid: 'g3', uid: '5', flags: '\\Draft'},
    ])
    expect(flagRepairs(hub, [b, c])).toEqual([
      {copy: 'mx-b', mailbox: 'INBOX', uid: '3', flags: [], current: ['$Label1', '\\Flagged']},
      {copy: 'mx-c', mailbox: 'INBOX', uid: '4', flags: ['\\Seen'], current: ['\\Flagged', '\\Seen', 'todo']},
    ])
  })

  it('leaves messages the hub lacks, and copies that agree, alone; compares per mailbox', () => {
    const hub = copy('mx-a', [{guid: 'g1', uid: '1', flags: '\\Seen'}], [{guid: 'g1', uid: '1', flags: ''}])
    const b = copy(
      'mx-b',
      [{guid: 'g1', uid: '1', flags: '\\Seen'}],
      [{guid: 'g1', uid: '7', flags: '\\Seen'}],
    )
    expect(flagRepairs(hub, [b])).toEqual([
      {copy: 'mx-b', mailbox: 'Archive', uid: '7', flags: [], current: ['\\Seen']},
    ])
    expect(flagRepairs(hub, [copy('mx-c', [{guid: 'g9', uid: '1', flags: '\\Seen'}])])).toEqual([])
  })
})
