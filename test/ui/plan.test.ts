import {describe, expect, it} from 'vitest'

import type {PlanSummary} from '../../src/core/plan.js'
import {planSummaryLine} from '../../src/ui/plan.js'

const summary = (changes: Partial<PlanSummary>): PlanSummary => ({
  users: 2000,
  copiesBefore: 4589,
  copiesAfter: 4589,
  moves: 274,
  drops: 0,
  minimumMoves: 274,
  capacityLowerBound: 245,
  usersAffected: 274,
  ...changes,
})

describe('the plan summary', () => {
  it('says which minimum is which: the fewest moves to the target, and what the copies per server alone need', () => {
    expect(planSummaryLine(summary({})).split('\n')).toEqual([
      '274 copies to move for 274 of 2000 users (5.97% of 4589 copies): the fewest that reach the target placement (one per target server that holds no copy of its user yet).',
      'The copies per server alone need at least 245 moves (what the growing servers gain); this placement takes 29 more.',
    ])
  })

  it('says when no placement with the same copies per server moves fewer', () => {
    expect(planSummaryLine(summary({capacityLowerBound: 274})).split('\n')[1]).toBe(
      'No placement with the same copies per server moves fewer.',
    )
  })

  it('compares a plan that moves more than the target needs with the fewest', () => {
    expect(planSummaryLine(summary({moves: 300}))).toMatch(
      /^300 copies to move .*: 1\.09x the 274 that reach the target placement at the least \(/,
    )
  })

  it('counts the copies to delete, alone or beside the moves', () => {
    expect(planSummaryLine(summary({drops: 3}))).toMatch(/copies\), and 3 extra copies to delete: the fewest/)
    expect(
      planSummaryLine(
        summary({moves: 0, minimumMoves: 0, capacityLowerBound: 0, drops: 5, usersAffected: 5}),
      ),
    ).toBe('5 extra copies to delete for 5 of 2000 users; nothing to move.')
    expect(
      planSummaryLine(summary({moves: 0, minimumMoves: 0, capacityLowerBound: 0, usersAffected: 0})),
    ).toBe('Nothing to move: all 2000 users are on their target servers.')
  })
})
