/**
 * `mailring rebalance status` and `rebalance cancel` through the built CLI, on a store whose journal holds
 * moves in several states (written through the store API, as a rebalance run leaves them).
 */
import {afterAll, beforeAll, describe, expect, it} from 'vitest'

import type {RebalanceCancelResult} from '../../src/commands/rebalance/cancel.js'
import type {RebalanceStatusResult} from '../../src/commands/rebalance/status.js'
import {SqliteStore} from '../../src/store/sqlite.js'
import {seededSandbox, type CliSandbox} from '../support/cli-sandbox.js'

let cli: CliSandbox

beforeAll(async () => {
  cli = await seededSandbox(20)
  const store = await SqliteStore.open(cli.dbPath)
  try {
    const users = await store.listUsers({limit: 2})
    const elsewhere = (copies: string[]) => ['mx01', 'mx02', 'mx03'].find((s) => !copies.includes(s))!
    await store.journalMoves(
      'plan-x',
      users.map((u) => ({user: u.user, position: 0, from: u.copies[0]!, to: elsewhere(u.copies)})),
    )
    const [first, second] = await store.openMoves()
    await store.setMoveState(first!.id, 'planned', 'copying', 'doveadm sync with mx03 failed: exit 75')
    await store.setMoveState(second!.id, 'planned', 'verified')
    await store.switchMove(second!.id)
  } finally {
    await store.close()
  }
})

afterAll(() => cli?.cleanup())

describe('rebalance status and cancel', () => {
  it('lists the open moves with their state, attempts and last error', async () => {
    const {code, body} = await cli.json<RebalanceStatusResult>(['rebalance', 'status'])
    expect(code).toBe(0)
    expect(body.result.byState).toEqual({copying: 1, switched: 1})
    expect(body.result.moves[0]).toMatchObject({
      state: 'copying',
      attempts: 1,
      lastError: 'doveadm sync with mx03 failed: exit 75',
    })
    const text = await cli.run(['rebalance', 'status'])
    expect(text.stdout).toMatch(/ID\s+USER\s+FROM\s+TO\s+STATE\s+ATTEMPTS\s+LAST ERROR/)
    expect(text.stdout).toContain('2 open: 1 copying, 1 switched.')
  })

  it('cancels the moves not switched yet and leaves the switched one to finish', async () => {
    const {code, body} = await cli.json<RebalanceCancelResult>(['rebalance', 'cancel'])
    expect(code).toBe(0)
    expect(body.result.cancelled).toBe(1)
    expect(body.result.left.map((m) => m.state)).toEqual(['switched'])
    const again = await cli.run(['rebalance', 'cancel'])
    expect(again.stdout).toContain('Cancelled 0 moves that had not switched.')
    const status = await cli.json<RebalanceStatusResult>(['rebalance', 'status'])
    expect(status.body.result.moves).toHaveLength(1)
  })

  it('still plans with --dry-run', async () => {
    const r = await cli.run(['rebalance', '--dry-run'])
    expect(r.code, r.stderr).toBe(0)
  })
})
