/**
 * A bandwidth limit for work that moves whole objects of known size (a mailbox copied by `doveadm sync`,
 * where mailring is not on the wire and cannot pace the bytes themselves): each object's start is delayed
 * so that the bytes started over any stretch of time stay within `rate` per second, plus `burstMs` worth.
 * One object still travels at full speed; what is bounded is the average. Pure: the caller passes the time.
 */
export class ByteBudget {
  /** When the bytes reserved so far have been paid for at `rate` (ms since the epoch). */
  private paidUntil = 0

  constructor(
    /** Bytes per second. */
    readonly rate: number,
    /** How far ahead of the rate a start may go (lets small objects start without waiting for each other). */
    readonly burstMs = 1000,
  ) {
    if (!(rate > 0)) throw new RangeError(`a byte budget needs a positive rate, not ${rate}`)
  }

  /** Reserves `bytes` to start now or later: returns the ms to wait before starting. */
  reserve(bytes: number, now: number): number {
    const startAt = Math.max(now, this.paidUntil - this.burstMs)
    this.paidUntil = Math.max(this.paidUntil, now) + (Math.max(0, bytes) / this.rate) * 1000
    return startAt - now
  }
}
