/**
 * The frozen hash of placement algorithm version 1. Changing anything here moves mailboxes on every
 * cluster: the golden vectors in test/core/hash.test.ts must never change.
 *
 * Strings are hashed with MurmurHash3 x86_32 over their UTF-8 bytes. The score of a (user, server) pair
 * combines the user's hash and the server's seed with MurmurHash3's 32-bit finaliser, which is a bijection
 * with full avalanche: integer arithmetic only, identical on every platform.
 */

const C1 = 0xcc9e2d51
const C2 = 0x1b873593

const encoder = new TextEncoder()

/**
 * MurmurHash3 x86_32 of the UTF-8 encoding of `text`. ASCII text (nearly every address) is hashed straight
 * from its character codes: hashing a million addresses is a large part of placing them.
 */
export function murmur3(text: string, seed: number): number {
  const length = text.length
  for (let i = 0; i < length; i++) {
    if (text.charCodeAt(i) >= 0x80) return murmur3Bytes(encoder.encode(text), seed)
  }
  const blocks = length & ~3
  let h = seed | 0
  for (let i = 0; i < blocks; i += 4) {
    h ^= mixBlock(
      text.charCodeAt(i) |
        (text.charCodeAt(i + 1) << 8) |
        (text.charCodeAt(i + 2) << 16) |
        (text.charCodeAt(i + 3) << 24),
    )
    h = (h << 13) | (h >>> 19)
    h = (Math.imul(h, 5) + 0xe6546b64) | 0
  }
  let tail = 0
  for (let i = length - 1; i >= blocks; i--) tail = (tail << 8) | text.charCodeAt(i)
  if (length & 3) h ^= mixBlock(tail)
  return fmix32(h ^ length)
}

export function murmur3Bytes(bytes: Uint8Array, seed: number): number {
  const length = bytes.length
  const blocks = length & ~3
  let h = seed | 0
  for (let i = 0; i < blocks; i += 4) {
    h ^= mixBlock(bytes[i]! | (bytes[i + 1]! << 8) | (bytes[i + 2]! << 16) | (bytes[i + 3]! << 24))
    h = (h << 13) | (h >>> 19)
    h = (Math.imul(h, 5) + 0xe6546b64) | 0
  }
  let tail = 0
  for (let i = length - 1; i >= blocks; i--) tail = (tail << 8) | bytes[i]!
  if (length & 3) h ^= mixBlock(tail)
  return fmix32(h ^ length)
}

function mixBlock(block: number): number {
  let k = Math.imul(block, C1)
  k = (k << 15) | (k >>> 17)
  return Math.imul(k, C2)
}

/** MurmurHash3's finaliser: a bijection on 32-bit integers with full avalanche. */
export function fmix32(value: number): number {
  let h = value | 0
  h ^= h >>> 16
  h = Math.imul(h, 0x85ebca6b)
  h ^= h >>> 13
  h = Math.imul(h, 0xc2b2ae35)
  h ^= h >>> 16
  return h >>> 0
}

/** Seeds keep the user and server hash spaces apart, so a user named like a server gets no special score. */
export const USER_SEED = 0x6d61696c // "mail"
export const SERVER_SEED = 0x72696e67 // "ring"
const GOLDEN_GAMMA = 0x9e3779b9

export function userHash(user: string): number {
  return murmur3(user, USER_SEED)
}

export function serverSeed(serverName: string): number {
  return murmur3(serverName, SERVER_SEED)
}

/**
 * The rendezvous score of a user on a server, a uniform 32-bit integer; higher wins. Two rounds of the
 * finaliser, so that scores of one user on different servers are independent even though the inputs
 * differ only by the server seed.
 */
export function pairScore(userHashValue: number, serverSeedValue: number): number {
  return fmix32(fmix32(userHashValue ^ serverSeedValue) + GOLDEN_GAMMA)
}
