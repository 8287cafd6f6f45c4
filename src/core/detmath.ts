/**
 * Exactly specified arithmetic for placement. ECMAScript fixes +, -, *, / and Math.sqrt to IEEE 754
 * double precision with round-to-nearest, so they give the same bits everywhere; Math.log, Math.exp and
 * Math.pow do not (their precision is left to the engine). Placement uses only the functions below.
 */

const FRACTION_BITS = 12
const TABLE_SIZE = 1 << FRACTION_BITS
const TWO_POW_32 = 4294967296

/** log2(m) for m in [1, 2), bit by bit: each step squares and halves, both exact operations. */
export function log2Mantissa(mantissa: number): number {
  let m = mantissa
  let result = 0
  let bit = 0.5
  for (let i = 0; i < 53; i++) {
    m *= m
    if (m >= 2) {
      m /= 2
      result += bit
    }
    bit /= 2
  }
  return result
}

/** log2(1 + k / 4096) for k = 0..4096. */
const LOG2_TABLE: Float64Array = (() => {
  const table = new Float64Array(TABLE_SIZE + 1)
  for (let k = 0; k < TABLE_SIZE; k++) table[k] = log2Mantissa(1 + k / TABLE_SIZE)
  table[TABLE_SIZE] = 1
  return table
})()

/**
 * -log2((score + 1) / 2^32) for a 32-bit score: the exponential variate behind weighted rendezvous hashing
 * (divided by a weight it gives the server's "arrival time"; the earliest wins). Table lookup with linear
 * interpolation: at most about 1e-8 from the true value, and the same bits on every platform.
 */
export function negLog2Unit(score: number): number {
  if (score >= 0xffffffff) return 0
  const x = score + 1
  const leadingZeros = Math.clz32(x)
  const shifted = (x << leadingZeros) >>> 0 // leading one at bit 31
  const below = (shifted << 1) >>> 0 // the 32 bits after the leading one
  const index = below >>> (32 - FRACTION_BITS)
  const rest = ((below << FRACTION_BITS) >>> 0) / TWO_POW_32
  const low = LOG2_TABLE[index]!
  const log2Mant = low + (LOG2_TABLE[index + 1]! - low) * rest
  return leadingZeros + 1 - log2Mant
}

const LN2 = 0.6931471805599453

/** e^x for x <= 0 (and moderate x > 0): range reduction to |r| <= ln2/2, then a Taylor series. */
export function exactExp(x: number): number {
  if (x < -700) return 0
  const k = Math.round(x / LN2)
  const r = x - k * LN2
  let term = 1
  let sum = 1
  for (let n = 1; n <= 20; n++) {
    term = (term * r) / n
    sum += term
  }
  return scaleByPowerOfTwo(sum, k)
}

function scaleByPowerOfTwo(value: number, exponent: number): number {
  let result = value
  if (exponent > 0) for (let i = 0; i < exponent; i++) result *= 2
  else for (let i = 0; i < -exponent; i++) result /= 2
  return result
}
