import {
  asciiLowerCase,
  canonicalDomain,
  checkUserAddress,
  localPartProblem,
  type AddressCheck,
} from './address.js'

/**
 * The common case of a local part, decided by one regular expression: ASCII atext atoms joined by single
 * dots. What it accepts, localPartProblem accepts too; anything else goes the long way.
 */
const PLAIN_LOCAL = /^[A-Za-z0-9!#$%&'*+\-/=?^_`{|}~]+(?:\.[A-Za-z0-9!#$%&'*+\-/=?^_`{|}~]+)*$/

/** Distinct domains remembered; an import has a handful, and the cache must not grow without bound. */
const MAX_DOMAINS = 100_000

/**
 * checkUserAddress for many addresses: the same steps and results, with each domain's canonical form
 * (domainToASCII, most of the cost) computed once. Any address that fails a step goes through
 * checkUserAddress itself, so that every reason is word for word the same.
 */
export class AddressChecker {
  private readonly domains = new Map<string, string | {reason: string}>()

  check(input: string): AddressCheck {
    const raw = input.trim()
    const at = raw.lastIndexOf('@')
    if (at <= 0 || at === raw.length - 1) return checkUserAddress(input)
    const domainPart = raw.slice(at + 1)
    let domain = this.domains.get(domainPart)
    if (domain === undefined) {
      domain = canonicalDomain(domainPart)
      if (this.domains.size < MAX_DOMAINS) this.domains.set(domainPart, domain)
    }
    if (typeof domain !== 'string') return checkUserAddress(input)
    const local = raw.slice(0, at)
    const plain = local.length <= 64 && PLAIN_LOCAL.test(local)
    if (!plain && localPartProblem(local)) return checkUserAddress(input)
    // For ASCII text, toLowerCase is the ASCII-only lower-casing Dovecot does.
    const user = `${plain ? local.toLowerCase() : asciiLowerCase(local)}@${domain}`
    if (user.length > 127 && Buffer.byteLength(user) > 254) return checkUserAddress(input)
    return {ok: true, user}
  }
}
