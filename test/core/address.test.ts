import {describe, expect, it} from 'vitest'

import {checkUserAddress, normalizeDomain, normalizeUser} from '../../src/core/address.js'
import {MailringError} from '../../src/core/errors.js'

describe('user addresses, as Dovecot sees them with %Lu', () => {
  it('lower-cases the whole address', () => {
    expect(normalizeUser('Alice.Smith@Example.COM')).toBe('alice.smith@example.com')
    expect(normalizeUser('  bob@example.org ')).toBe('bob@example.org')
  })

  it('brings internationalised domains to one ASCII form', () => {
    expect(normalizeUser('jürgen@Müller.de')).toBe('jürgen@xn--mller-kva.de')
    expect(normalizeUser('jürgen@xn--mller-kva.de')).toBe('jürgen@xn--mller-kva.de')
    expect(normalizeDomain('例え.テスト')).toBe('xn--r8jz45g.xn--zckzah')
  })

  it('lower-cases only ASCII in the local part, like Dovecot', () => {
    expect(normalizeUser('ÄRGER@example.com')).toBe('ÄRGER@example.com'.replace('RGER', 'rger'))
  })

  it.each([
    ['bad', 'not an address'],
    ['@example.com', 'not an address'],
    ['alice@', 'not an address'],
    ['alice@localhost', 'has no dot'],
    ['al ice@example.com', 'not allowed'],
    ['alice..x@example.com', 'empty dot-separated part'],
    ['.alice@example.com', 'empty dot-separated part'],
    ['alice@exa_mple.com', 'invalid label'],
    ['alice@-example.com', 'invalid label'],
    ['"quoted"@example.com', 'quoted local parts'],
    [`${'a'.repeat(65)}@example.com`, 'more than 64 bytes'],
  ])('rejects %s with a reason', (input, reason) => {
    const check = checkUserAddress(input)
    expect(check.ok).toBe(false)
    if (!check.ok) expect(check.reason).toContain(reason)
    expect(() => normalizeUser(input)).toThrow(MailringError)
  })

  it('accepts the characters RFC 5322 allows in a dot-atom', () => {
    expect(normalizeUser("o'brien+tag=x/y@example.com")).toBe("o'brien+tag=x/y@example.com")
  })
})
