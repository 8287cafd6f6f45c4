import {describe, expect, it} from 'vitest'

import {MoveList} from '../../src/core/plan.js'
import {describeDifference, PlanMovesCheck} from '../../src/core/plan-check.js'

const servers = ['mx-a', 'mx-b', 'mx-c', 'mx-d']

/** alice mx-a -> mx-c, bob mx-b -> mx-c, carol a new copy on mx-d, dave a copy on mx-a deleted. */
function inputs(): MoveList {
  const moves = new MoveList(servers)
  moves.add(moves.addUser('alice@example.com'), 0, 2)
  moves.add(moves.addUser('bob@example.com'), 1, 2)
  moves.add(moves.addUser('carol@example.com'), -1, 3)
  moves.add(moves.addUser('dave@example.com'), 0, -1)
  return moves
}

function check(file: unknown[]): string | undefined {
  const moves = new PlanMovesCheck(inputs())
  for (const move of file) moves.add(move)
  return moves.finish()
}

describe("a plan file's moves against the moves its inputs give", () => {
  const same = () => [...inputs()].map((move) => ({...move}))

  it('finds none when they are the same', () => {
    expect(check(same())).toBeUndefined()
  })

  it('names the first move that differs, and how', () => {
    const to = same()
    to[0]!.to = 'mx-d'
    to[2]!.to = 'mx-a'
    expect(check(to)).toBe('move 1 (alice@example.com) goes to mx-d in the file, to mx-c by its inputs')
    const from = same()
    from[1]!.from = null
    expect(check(from)).toBe(
      'move 2 (bob@example.com) comes from no server (a new copy) in the file, from mx-b by its inputs',
    )
    const dropped = same()
    dropped[3]!.to = 'mx-b'
    expect(check(dropped)).toBe(
      'move 4 (dave@example.com) goes to mx-b in the file, to no server (a copy deleted) by its inputs',
    )
    const user = same()
    user[1]!.user = 'eve@example.com'
    expect(check(user)).toBe('move 2 is of eve@example.com in the file, of bob@example.com by its inputs')
    const extra = same() as Record<string, unknown>[]
    extra[2]!.note = 'later'
    expect(check(extra)).toBe('move 3 (carol@example.com) has "note" in the file, which a move does not have')
    expect(check(['alice@example.com', ...same().slice(1)])).toBe(
      'move 1 is "alice@example.com" in the file, not a move (user, from, to)',
    )
  })

  it('counts the moves when the file lists fewer or more, and otherwise agrees', () => {
    expect(check(same().slice(0, 3))).toBe('the file lists 3 moves, its inputs give 4')
    expect(check([])).toBe('the file lists 0 moves, its inputs give 4')
    expect(check([...same(), {user: 'eve@example.com', from: 'mx-a', to: 'mx-b'}, 7])).toBe(
      'the file lists 6 moves, its inputs give 4',
    )
    // A difference before the end wins over the count.
    const both = same().slice(0, 2)
    both[1]!.to = 'mx-a'
    expect(check(both)).toMatch(/^move 2 \(bob@example\.com\) goes to mx-a/)
  })
})

describe('the other parts of a plan file against its inputs', () => {
  const summary = {users: 10, moves: 5, drops: 0}

  it('names the first field that differs, with both values', () => {
    expect(describeDifference('summary', summary, summary)).toBeUndefined()
    expect(describeDifference('summary', {...summary, moves: 3}, summary)).toBe(
      'summary.moves is 3 in the file, 5 by its inputs',
    )
    expect(describeDifference('summary', {users: 10, drops: 0}, summary)).toBe(
      'summary.moves is missing in the file, 5 by its inputs',
    )
    expect(describeDifference('summary', {...summary, note: 'x'}, summary)).toBe(
      'summary.note is in the file, not in a plan',
    )
    expect(describeDifference('summary', 'none', summary)).toBe(
      'summary is "none" in the file, an object by its inputs',
    )
    const servers = [
      {server: 'mx-a', after: 4},
      {server: 'mx-b', after: 6},
    ]
    expect(describeDifference('servers', [servers[0], {server: 'mx-b', after: 7}], servers)).toBe(
      'servers[1].after is 7 in the file, 6 by its inputs',
    )
    expect(describeDifference('servers', servers.slice(0, 1), servers)).toBe(
      'servers has 1 entry in the file, 2 by its inputs',
    )
  })
})
