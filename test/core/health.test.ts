import {describe, expect, it} from 'vitest'

import {
  adoptHealth,
  initialTrack,
  nextHealth,
  roundInputs,
  SLOW_DOWN_FACTOR,
  thresholdsProblem,
  type HealthInput,
  type HealthThresholds,
  type HealthTrack,
  type HealthTransition,
  type ProbeResult,
} from '../../src/core/health.js'

const T: HealthThresholds = {downAfter: 2, upAfter: 3}
const ok: HealthInput = {kind: 'probe', result: {ok: true}}
const fail = (reason = 'imap 127.0.0.2:143: connection refused'): HealthInput => ({
  kind: 'probe',
  result: {ok: false, reason},
})
const caughtUp: HealthInput = {kind: 'caught-up'}

/** Feeds inputs one by one; the transitions in order and the final track. */
function feed(
  inputs: HealthInput[],
  start: HealthTrack = initialTrack(),
  t = T,
): {track: HealthTrack; transitions: HealthTransition[]} {
  let track = start
  const transitions: HealthTransition[] = []
  for (const input of inputs) {
    const step = nextHealth(track, input, t)
    track = step.track
    if (step.transition) transitions.push(step.transition)
  }
  return {track, transitions}
}

describe('server health with hysteresis', () => {
  it('a server without a record starts up, no probes counted', () => {
    expect(initialTrack()).toEqual({health: 'up', failures: 0, slowOnly: true, successes: 0, detail: ''})
  })

  it('goes down after down_after consecutive failures, with the last reason as detail', () => {
    const one = feed([fail()])
    expect(one.track).toMatchObject({health: 'up', failures: 1})
    expect(one.transitions).toEqual([])
    const two = feed([fail(), fail('lmtp 127.0.0.2:24: timed out after 1000 ms')])
    expect(two.transitions).toEqual([
      {from: 'up', to: 'down', detail: 'lmtp 127.0.0.2:24: timed out after 1000 ms'},
    ])
    expect(two.track.health).toBe('down')
  })

  it('a good probe in between starts the failure count over (no flapping on scattered failures)', () => {
    const r = feed([fail(), ok, fail(), ok, fail()])
    expect(r.transitions).toEqual([])
    expect(r.track).toMatchObject({health: 'up', failures: 1, detail: expect.stringContaining('refused')})
  })

  it('a down server becomes returning after up_after consecutive good probes, never up by itself', () => {
    const down = feed([fail(), fail()]).track
    expect(feed([ok, ok], down).track.health).toBe('down')
    const back = feed([ok, ok, ok], down)
    expect(back.transitions).toEqual([{from: 'down', to: 'returning', detail: ''}])
    expect(feed([ok, ok, ok, ok, ok, ok, ok, ok], down).track.health).toBe('returning')
    // A failure in between starts the success count over.
    expect(feed([ok, ok, fail(), ok, ok], down).track.health).toBe('down')
    // More failures while down change nothing but the detail.
    const still = feed([fail('x'), fail('y'), fail('z')], down)
    expect(still.transitions).toEqual([])
    expect(still.track).toMatchObject({health: 'down', detail: 'z'})
  })

  it('returning becomes up only when caught up', () => {
    const returning = feed([fail(), fail(), ok, ok, ok]).track
    expect(returning.health).toBe('returning')
    const r = feed([caughtUp], returning)
    expect(r.transitions).toEqual([{from: 'returning', to: 'up', detail: ''}])
    expect(r.track).toEqual(initialTrack('up'))
  })

  it('"caught up" changes nothing for an up or a down server', () => {
    expect(nextHealth(initialTrack('up'), caughtUp, T).transition).toBeUndefined()
    const down = feed([fail(), fail()]).track
    const r = nextHealth(down, caughtUp, T)
    expect(r.transition).toBeUndefined()
    expect(r.track).toBe(down)
  })

  it('a returning server that fails again goes down after down_after failures', () => {
    const returning = feed([fail(), fail(), ok, ok, ok]).track
    const r = feed([fail(), fail()], returning)
    expect(r.transitions).toEqual([{from: 'returning', to: 'down', detail: expect.any(String)}])
    // and must then come back through returning again.
    expect(feed([ok, ok, ok], r.track).transitions).toEqual([{from: 'down', to: 'returning', detail: ''}])
  })

  it('thresholds of 1 switch on the first probe', () => {
    const t = {downAfter: 1, upAfter: 1}
    expect(feed([fail()], initialTrack(), t).transitions.map((x) => x.to)).toEqual(['down'])
    expect(feed([fail(), ok], initialTrack(), t).transitions.map((x) => x.to)).toEqual(['down', 'returning'])
  })

  it('the detail is one line, never empty for a failure', () => {
    expect(feed([fail('a\nb\t c'), fail('')]).transitions[0]!.detail).toBe('probe failed')
    expect(feed([fail('a\nb\t c')]).track.detail).toBe('a b c')
  })

  it('adopts the health the store holds, counts started over', () => {
    const counting = feed([fail()]).track
    expect(adoptHealth(counting, 'up')).toBe(counting)
    expect(adoptHealth(counting, 'down')).toMatchObject({health: 'down', failures: 0, successes: 0})
  })

  it('refuses thresholds that are not whole numbers from 1', () => {
    expect(thresholdsProblem(T)).toBeUndefined()
    expect(thresholdsProblem({downAfter: 0, upAfter: 3})).toMatch(/down_after/)
    expect(thresholdsProblem({downAfter: 2, upAfter: 1.5})).toMatch(/up_after/)
  })

  it('goes down after SLOW_DOWN_FACTOR times down_after probes that only time out; a refusal counts at once', () => {
    const slow: HealthInput = {
      kind: 'probe',
      result: {ok: false, reason: 'imap: no greeting within 1000 ms', slow: true},
    }
    const slowRounds = T.downAfter * SLOW_DOWN_FACTOR
    expect(feed(Array.from({length: slowRounds - 1}, () => slow)).transitions).toEqual([])
    expect(feed(Array.from({length: slowRounds}, () => slow)).transitions).toEqual([
      {from: 'up', to: 'down', detail: 'imap: no greeting within 1000 ms'},
    ])
    // A refusal after slow probes: the streak counts as refused.
    expect(feed([slow, fail()]).transitions.map((t) => t.to)).toEqual(['down'])
    // A good probe starts it over.
    expect(feed([...Array.from({length: slowRounds - 1}, () => slow), ok, slow]).transitions).toEqual([])
  })

  it('an inconclusive probe counts neither way', () => {
    const inconclusive: HealthInput = {kind: 'inconclusive'}
    const counting = feed([fail()]).track
    expect(nextHealth(counting, inconclusive, T)).toEqual({track: counting})
    // Failures around inconclusive rounds still add up, and successes too.
    expect(feed([fail(), inconclusive, fail()]).transitions).toEqual([
      {from: 'up', to: 'down', detail: 'imap 127.0.0.2:143: connection refused'},
    ])
    expect(feed([ok, inconclusive, ok, ok], initialTrack('down')).transitions).toEqual([
      {from: 'down', to: 'returning', detail: ''},
    ])
  })
})

describe('one round of probes', () => {
  const slow = {ok: false, reason: 'imap 127.0.0.2:143: no greeting within 1000 ms', slow: true} as const
  const refused = {ok: false, reason: 'imap 127.0.0.3:143: connection refused', slow: false} as const
  const kinds = (results: Record<string, ProbeResult>) =>
    Object.fromEntries([...roundInputs(new Map(Object.entries(results)))].map(([s, i]) => [s, i.kind]))

  it('counts a slow server as failed when the others answered', () => {
    expect(kinds({a: slow, b: {ok: true}, c: {ok: true}})).toEqual({a: 'probe', b: 'probe', c: 'probe'})
    // Two of three slow: each has one slow and one prompt other, not more than half.
    expect(kinds({a: slow, b: slow, c: {ok: true}})).toEqual({a: 'probe', b: 'probe', c: 'probe'})
  })

  it('takes slowness that more than half of the other servers share as inconclusive', () => {
    expect(kinds({a: slow, b: slow, c: slow})).toEqual({
      a: 'inconclusive',
      b: 'inconclusive',
      c: 'inconclusive',
    })
    expect(kinds({a: slow, b: slow, c: slow, d: {ok: true}})).toEqual({
      a: 'inconclusive',
      b: 'inconclusive',
      c: 'inconclusive',
      d: 'probe',
    })
    expect(kinds({a: slow, b: slow})).toEqual({a: 'inconclusive', b: 'inconclusive'})
  })

  it('always counts a refusal, whatever the others do', () => {
    expect(kinds({a: refused, b: slow, c: slow, d: slow})).toEqual({
      a: 'probe',
      b: 'inconclusive',
      c: 'inconclusive',
      d: 'inconclusive',
    })
    // A server alone has nobody to share its slowness with.
    expect(kinds({a: slow})).toEqual({a: 'probe'})
  })
})
