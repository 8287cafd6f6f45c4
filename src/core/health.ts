/**
 * Server health with hysteresis (docs/decisions/0004-replicator.md, "Probes and routing"), pure: the
 * replicator's prober feeds it probe results and "caught up", and writes the transitions it returns to the
 * store.
 *
 *   up        --`downAfter` consecutive failed probes-->     down
 *   returning --`downAfter` consecutive failed probes-->     down
 *   (probes that only time out: SLOW_DOWN_FACTOR times as many)
 *   down      --`upAfter` consecutive good probes-->         returning
 *   returning --caught up (its copies are replicated)-->     up
 *
 * A good probe resets the failure count and a failed one the success count, so that a flapping server
 * neither goes down nor comes back on scattered results. Nothing but "caught up" makes a returning server up:
 * the proxies keep avoiding it until its copies have the mail delivered elsewhere while it was away.
 */
/** The same three values as the store's ServerHealthState (src/core may not import the store). */
export type ServerHealthState = 'up' | 'down' | 'returning'

/**
 * One probe of a server (all its ports): ok, or failed with a one-line reason; `slow` when every port that
 * failed connected or was still connecting and only did not answer within the time-out (nothing refused,
 * reset or closed the connection).
 */
export type ProbeResult = {ok: true} | {ok: false; reason: string; slow?: boolean}

/**
 * What moves a server's health: a probe; a probe whose slowness the other servers shared in the same round
 * (`inconclusive`: counts neither way, see roundInputs); its catch-up done.
 */
export type HealthInput = {kind: 'probe'; result: ProbeResult} | {kind: 'inconclusive'} | {kind: 'caught-up'}

export interface HealthThresholds {
  /** Consecutive failed probes that take an up (or returning) server down. */
  downAfter: number
  /** Consecutive good probes that take a down server to returning. */
  upAfter: number
}

export const DEFAULT_HEALTH_THRESHOLDS: HealthThresholds = {downAfter: 2, upAfter: 3}

/**
 * A server whose probes only time out (nothing refused) goes down after this many times `downAfter`
 * failed probes: a time-out under load is not a refusal. Seen on the test bed: a Dovecot that was stalled
 * answered its doveadm port late for two rounds after it resumed, while the others answered at once.
 */
export const SLOW_DOWN_FACTOR = 3

/** What the state machine keeps per server. */
export interface HealthTrack {
  health: ServerHealthState
  /** Consecutive failed probes (0 after a good one). */
  failures: number
  /** Whether every failure counted in `failures` only timed out. */
  slowOnly: boolean
  /** Consecutive good probes (0 after a failed one). */
  successes: number
  /** The last failure's reason ('' after a good probe). */
  detail: string
}

export interface HealthTransition {
  from: ServerHealthState
  to: ServerHealthState
  /** One line for the store's `detail`: the failure that took it down, '' otherwise. */
  detail: string
}

export interface HealthStep {
  track: HealthTrack
  /** Set when the health changed with this input. */
  transition?: HealthTransition
}

/** A server starting out in `health` (default up: a server without a record is up), no probes counted. */
export function initialTrack(health: ServerHealthState = 'up'): HealthTrack {
  return {health, failures: 0, slowOnly: true, successes: 0, detail: ''}
}

/** Refuses thresholds that would make the machine meaningless (0, negative, fractions). */
export function thresholdsProblem(t: HealthThresholds): string | undefined {
  for (const [name, value] of [
    ['down_after', t.downAfter],
    ['up_after', t.upAfter],
  ] as const) {
    if (!Number.isInteger(value) || value < 1 || value > 1000)
      return `${name} must be a whole number from 1 to 1000 (got ${value})`
  }
  return undefined
}

/**
 * The input each server's probe of one round gives. A refusal (connection refused, reset, closed, a wrong
 * greeting) always counts as a failure. A slow answer counts only when the other servers answered: when
 * more than half of the others were slow too, the slowness is the prober's or the network's (a loaded
 * machine, where a time-out is not an outage), and the probe is inconclusive. Seen on a busy test bed
 * (issue 20, C): with every probe timing out at once, every server was marked down and queued a catch-up
 * of all its users on its return.
 */
export function roundInputs(results: ReadonlyMap<string, ProbeResult>): Map<string, HealthInput> {
  const slow = [...results.values()].filter((r) => !r.ok && r.slow === true).length
  const inputs = new Map<string, HealthInput>()
  for (const [server, result] of results) {
    const others = results.size - 1
    const othersSlow = slow - 1
    const shared = !result.ok && result.slow === true && others > 0 && othersSlow * 2 > others
    inputs.set(server, shared ? {kind: 'inconclusive'} : {kind: 'probe', result})
  }
  return inputs
}

/** The next state of one server after one input (the track given is not changed). */
export function nextHealth(track: HealthTrack, input: HealthInput, t: HealthThresholds): HealthStep {
  if (input.kind === 'inconclusive') return {track}
  if (input.kind === 'caught-up') {
    if (track.health !== 'returning') return {track}
    return {
      track: {...track, health: 'up', failures: 0, slowOnly: true, successes: 0, detail: ''},
      transition: {from: 'returning', to: 'up', detail: ''},
    }
  }
  const result = input.result
  if (result.ok) {
    const successes = track.successes + 1
    const next: HealthTrack = {...track, failures: 0, slowOnly: true, successes, detail: ''}
    if (track.health === 'down' && successes >= t.upAfter) {
      return {
        track: {...next, health: 'returning', successes: 0},
        transition: {from: 'down', to: 'returning', detail: ''},
      }
    }
    return {track: next}
  }
  const reason = oneLine(result.reason)
  const failures = track.failures + 1
  const slowOnly = track.slowOnly && result.slow === true
  const next: HealthTrack = {...track, failures, slowOnly, successes: 0, detail: reason}
  if (track.health !== 'down' && failures >= (slowOnly ? t.downAfter * SLOW_DOWN_FACTOR : t.downAfter)) {
    return {
      track: {...next, health: 'down', failures: 0, slowOnly: true},
      transition: {from: track.health, to: 'down', detail: reason},
    }
  }
  return {track: next}
}

/**
 * The track after learning that the store holds another health for the server (another replicator changed
 * it, or our compare-and-set lost): that health, the counts started over.
 */
export function adoptHealth(track: HealthTrack, health: ServerHealthState): HealthTrack {
  if (track.health === health) return track
  return {...initialTrack(health), detail: track.detail}
}

function oneLine(text: string): string {
  const line = text.replace(/\s+/g, ' ').trim()
  return line === '' ? 'probe failed' : line.slice(0, 500)
}
