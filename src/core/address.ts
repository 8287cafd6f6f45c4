import {domainToASCII} from 'node:url'

import {MailringError} from './errors.js'

/**
 * Users are identified the way Dovecot's `%Lu` sees them: the full address, lower-cased. Dovecot lower-cases
 * ASCII only, so the local part is lower-cased in ASCII only; the domain is brought to its ASCII (A-label)
 * form first, so `user@Müller.de` and `user@xn--mller-kva.de` are one user on every server.
 */
export type UserAddress = string

const LOCAL_ATEXT = /^[A-Za-z0-9!#$%&'*+\-/=?^_`{|}~\u0080-\uFFFF]+$/u
const DOMAIN_LABEL = /^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$/

export type AddressCheck = {ok: true; user: UserAddress} | {ok: false; reason: string}

/** Validates and canonicalises one address; never throws. */
export function checkUserAddress(input: string): AddressCheck {
  const raw = input.trim()
  if (raw === '') return {ok: false, reason: 'empty address'}
  const at = raw.lastIndexOf('@')
  if (at <= 0 || at === raw.length - 1)
    return {ok: false, reason: `"${raw}" is not an address of the form user@domain`}
  const local = raw.slice(0, at)
  const domain = canonicalDomain(raw.slice(at + 1))
  if (typeof domain !== 'string') return {ok: false, reason: `"${raw}": ${domain.reason}`}
  const localProblem = localPartProblem(local)
  if (localProblem) return {ok: false, reason: `"${raw}": ${localProblem}`}
  const user = `${asciiLowerCase(local)}@${domain}`
  if (Buffer.byteLength(user) > 254) return {ok: false, reason: `"${raw}": an address has at most 254 bytes`}
  return {ok: true, user}
}

/** Canonical address, or a MailringError naming the problem. */
export function normalizeUser(input: string): UserAddress {
  const check = checkUserAddress(input)
  if (!check.ok)
    throw new MailringError(
      `Invalid user address: ${check.reason}. Give the full address, e.g. alice@example.com.`,
    )
  return check.user
}

/** Canonical domain name (A-labels, lower case, no trailing dot), or the reason it is not one. */
export function canonicalDomain(input: string): string | {reason: string} {
  let name = input.trim()
  if (name.endsWith('.')) name = name.slice(0, -1)
  if (name === '') return {reason: 'empty domain'}
  const ascii = domainToASCII(name)
  if (ascii === '') return {reason: `"${input}" is not a valid domain name`}
  const labels = ascii.split('.')
  if (labels.length < 2) return {reason: `domain "${input}" has no dot; give a fully qualified domain`}
  if (ascii.length > 253) return {reason: `domain "${input}" is longer than 253 characters`}
  for (const label of labels) {
    if (!DOMAIN_LABEL.test(label)) return {reason: `domain "${input}" has an invalid label "${label}"`}
  }
  return ascii
}

/** Like canonicalDomain, but throws a MailringError. */
export function normalizeDomain(input: string): string {
  const domain = canonicalDomain(input)
  if (typeof domain !== 'string') throw new MailringError(`Invalid domain: ${domain.reason}.`)
  return domain
}

export function domainOf(user: UserAddress): string {
  return user.slice(user.lastIndexOf('@') + 1)
}

export function localPartProblem(local: string): string | undefined {
  if (Buffer.byteLength(local) > 64) return 'the part before @ has more than 64 bytes'
  if (local.startsWith('"')) return 'quoted local parts are not supported'
  const atoms = local.split('.')
  if (atoms.some((atom) => atom === '')) return 'the part before @ has an empty dot-separated part'
  for (const atom of atoms) {
    if (!LOCAL_ATEXT.test(atom)) return 'the part before @ contains a character not allowed in an address'
  }
  return undefined
}

export function asciiLowerCase(text: string): string {
  return text.replace(/[A-Z]+/g, (upper) => upper.toLowerCase())
}
