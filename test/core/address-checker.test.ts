import {describe, expect, it} from 'vitest'

import {checkUserAddress} from '../../src/core/address.js'
import {AddressChecker} from '../../src/core/address-checker.js'

describe('AddressChecker', () => {
  it('gives exactly what checkUserAddress gives, valid or not', () => {
    const inputs = [
      'alice@example.com',
      '  Bob.Smith@Example.COM ',
      'carol+lists@mail.example.de',
      'user@Müller.de',
      'user@xn--mller-kva.de',
      'Ünïcode@example.com',
      'no-at-sign',
      '@example.com',
      'alice@',
      'alice@localhost',
      'a..b@example.com',
      '"quoted"@example.com',
      'spaces in@example.com',
      `${'x'.repeat(65)}@example.com`,
      `${'x'.repeat(64)}@${'d'.repeat(60)}.${'e'.repeat(60)}.${'f'.repeat(60)}.${'g'.repeat(60)}.com`,
      'alice@exa_mple.com',
      'alice@-example.com',
      'alice@example.com.',
      'x@y@example.com',
      "o'Neil@example.com",
      '.alice@example.com',
      'alice.@example.com',
      'ALICE.B+tag@EXAMPLE.COM',
      'a/b=c?d^e_f`g{h|i}j~k#l$m%n&o*p@example.com',
      `${'x'.repeat(64)}@example.com`,
      'alice(comment)@example.com',
      'alice\u00e9@example.com',
      '',
    ]
    const checker = new AddressChecker()
    // Twice: the second round answers from the domain cache.
    for (const round of [1, 2]) {
      for (const input of inputs)
        expect([round, input, checker.check(input)]).toEqual([round, input, checkUserAddress(input)])
    }
  })
})
