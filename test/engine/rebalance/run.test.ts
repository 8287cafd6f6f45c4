/**
 * The rebalance scheduler (engine/rebalance/run.ts) over a real SQLite store and fake move steps: the
 * journal, the plan and the waves are the real ones; each move's remote work is a fake that walks the
 * journal through the states as engine/rebalance/move.ts does, and records what ran at once and when.
 */
import * as path from 'node:path'

import {afterEach, beforeEach, describe, expect, it, vi} from 'vitest'

import type {MoveOptions, MoveOutcome} from '../../../src/engine/rebalance/move.js'
import {computePlan} from '../../../src/engine/rebalance/plan.js'
import {runRebalance, type MoveSteps, type RebalanceEvent} from '../../../src/engine/rebalance/run.js'
import {SqliteStore} from '../../../src/store/sqlite.js'
import type {MoveRecord, MoveState, Store} from '../../../src/store/store.js'
import {makeTempDir, removeDir} from '../../support/proc.js'
import {fillStore} from '../../support/store-cluster.js'

const SERVERS = ['mx-a', 'mx-b', 'mx-c', 'mx-d']

/** One call of a move's steps: the state it started from, and when (the clock the test controls). */
interface StepCall {
  id: number
  user: string
  from: string | null
  to: string | null
  state: MoveState
  at: number
}

/** Move steps without servers: each call walks the journal on as executeMove does, a few turns at a time. */
class FakeMoves implements MoveSteps {
  readonly calls: StepCall[] = []
  /** The most calls in flight at once, in all and per server (as the one left or the one arrived on). */
  peak = 0
  readonly peakPerServer = new Map<string, number>()
  /** Users with two open moves in the journal seen by a call (a wave must never journal that). */
  readonly doubled = new Set<string>()
  private running = 0
  private readonly perServer = new Map<string, number>()

  constructor(
    private readonly store: Store,
    private readonly options: {size?: number; fails?: (move: MoveRecord) => boolean} = {},
  ) {}

  async copySize(): Promise<number> {
    return this.options.size ?? 0
  }

  async execute(move: MoveRecord, options: MoveOptions): Promise<MoveOutcome> {
    this.calls.push({
      id: move.id,
      user: move.user,
      from: move.from,
      to: move.to,
      state: move.state,
      at: Date.now(),
    })
    const servers = [move.from, move.to].filter((s): s is string => s !== null)
    this.running++
    this.peak = Math.max(this.peak, this.running)
    for (const s of servers) {
      this.perServer.set(s, (this.perServer.get(s) ?? 0) + 1)
      this.peakPerServer.set(s, Math.max(this.peakPerServer.get(s) ?? 0, this.perServer.get(s)!))
    }
    try {
      const open = (await this.store.openMoves()).filter((m) => m.user === move.user)
      if (open.length > 1) this.doubled.add(move.user)
      return await this.walk(move, options)
    } finally {
      this.running--
      for (const s of servers) this.perServer.set(s, this.perServer.get(s)! - 1)
    }
  }

  private async walk(move: MoveRecord, options: MoveOptions): Promise<MoveOutcome> {
    let state = move.state
    const outcome = (error?: string): MoveOutcome => ({
      ...options.carry,
      id: move.id,
      user: move.user,
      from: move.from,
      to: move.to,
      state,
      messages: 1,
      bytes: this.options.size ?? 0,
      syncs: 1,
      ms: 0,
      ...(error === undefined ? {} : {error}),
    })
    const advance = async (next: MoveState) => {
      await Promise.resolve() // other moves go on meanwhile
      if (!(await this.store.setMoveState(move.id, state, next))) throw new Error(`move ${move.id} moved on`)
      state = next
    }
    if (this.options.fails?.(move)) {
      await this.store.setMoveState(move.id, state, state, 'the copy failed')
      return outcome('the copy failed')
    }
    if (state === 'planned') await advance('copying')
    if (state === 'copying') await advance('verified')
    if (state === 'verified') {
      await this.store.switchMove(move.id)
      state = 'switched'
    }
    if (state === 'switched') await advance('caught-up')
    if (move.from !== null && options.stopAt === 'caught-up') return outcome()
    if (!(await this.store.retireMove(move.id, move.from === null ? null : `/trash/${move.id}`)))
      throw new Error(`move ${move.id} is not caught-up`)
    state = 'retired'
    return outcome()
  }
}

let dir: string
let store: SqliteStore

/** `count` users, each with its copies on mx-a and mx-b of mx-a..mx-d: most have to move, some twice. */
async function clusterToRebalance(count: number): Promise<void> {
  const users = Array.from({length: count}, (_, i): [string, string[]] => [
    `u${i}@example.com`,
    ['mx-a', 'mx-b'],
  ])
  await fillStore(
    store,
    SERVERS.map((name) => ({name, address: `${name}.example.net`})),
    users,
    2,
  )
}

beforeEach(async () => {
  dir = makeTempDir('mr-run')
  store = (await SqliteStore.init(path.join(dir, 'cluster.db'), {copies: 2})).store
})

afterEach(async () => {
  vi.useRealTimers()
  await store.close()
  removeDir(dir)
})

describe('runRebalance', () => {
  it('never runs more than --per-server moves touching one server at once, and fills that limit', async () => {
    await clusterToRebalance(40)
    const steps = new FakeMoves(store)
    const run = await runRebalance(steps, store, {parallel: 16, perServer: 3, retireAfterMs: 0})
    expect(run.summary).toMatchObject({failed: 0, left: 0})
    expect(run.summary.moved).toBeGreaterThan(40)
    expect(Math.max(...steps.peakPerServer.values())).toBe(3)
  })

  it('never runs more than --parallel moves at once, and fills that limit', async () => {
    await clusterToRebalance(40)
    const steps = new FakeMoves(store)
    await runRebalance(steps, store, {parallel: 4, perServer: 100, retireAfterMs: 0})
    expect(steps.peak).toBe(4)
  })

  it('journals one move per user at a time: a wave starts once every move of the one before has finished', async () => {
    await clusterToRebalance(30)
    const steps = new FakeMoves(store)
    const events: RebalanceEvent[] = []
    const run = await runRebalance(steps, store, {
      parallel: 8,
      perServer: 4,
      retireAfterMs: 0,
      onEvent: (e) => events.push(e),
    })
    const journals = events.filter((e) => e.event === 'journal')
    // Users whose target is mx-c and mx-d lose both copies: their second move is in the second wave.
    expect(journals.map((e) => e.wave)).toEqual([1, 2])
    expect(steps.doubled.size).toBe(0)
    const second = events.indexOf(journals[1]!)
    const startedBefore = events.slice(0, second).filter((e) => e.event === 'start')
    const finishedBefore = events.slice(0, second).filter((e) => e.event === 'finish')
    expect(finishedBefore.map((e) => e.id).sort()).toEqual(startedBefore.map((e) => e.id).sort())
    expect(finishedBefore.every((e) => e.event === 'finish' && e.state === 'retired')).toBe(true)
    expect(run.summary).toMatchObject({moved: journals[0]!.moves + journals[1]!.moves, failed: 0, left: 0})
    // Nothing is left to move: every user is where the ring puts it.
    expect((await computePlan(store)).plan.summary.moves).toBe(0)
  })

  it('leaves a failed move in the journal untried for the rest of the run; the next run resumes it', async () => {
    await clusterToRebalance(12)
    const [firstMove] = (await computePlan(store)).plan.moves
    const failing = firstMove!.user
    const first = new FakeMoves(store, {fails: (m) => m.user === failing})
    const run = await runRebalance(first, store, {parallel: 4, perServer: 2, retireAfterMs: 0})
    expect(run.summary.failed).toBe(1)
    expect(run.failures.map((f) => [f.user, f.error])).toEqual([[failing, 'the copy failed']])
    expect(first.calls.filter((c) => c.user === failing)).toHaveLength(1)
    const open = await store.openMoves()
    expect(open.map((m) => [m.user, m.attempts, m.lastError])).toEqual([[failing, 1, 'the copy failed']])

    const events: RebalanceEvent[] = []
    const again = await runRebalance(new FakeMoves(store), store, {
      parallel: 4,
      perServer: 2,
      retireAfterMs: 0,
      onEvent: (e) => events.push(e),
    })
    expect(events[0]).toEqual({event: 'resume', moves: 1})
    expect(again.summary).toMatchObject({resumed: 1, failed: 0, left: 0})
    expect(await store.openMoves()).toEqual([])
  })

  describe('on a clock the test turns', () => {
    beforeEach(() => {
      vi.useFakeTimers({toFake: ['setTimeout', 'clearTimeout', 'Date']})
    })

    it('retires a caught-up move only retireAfterMs later, and lets other moves use its servers meanwhile', async () => {
      // Two users leaving mx-a, one move at a time on mx-a: the second copies while the first waits.
      await fillStore(
        store,
        [
          {name: 'mx-a', address: 'a'},
          {name: 'mx-b', address: 'b'},
        ],
        [
          ['alice@example.com', ['mx-a']],
          ['bob@example.com', ['mx-a']],
        ],
        1,
      )
      await store.writeTopology({
        ...(await store.readTopology()),
        servers: [
          {name: 'mx-a', address: 'a', weight: 1, state: 'draining'},
          {name: 'mx-b', address: 'b', weight: 1, state: 'active'},
        ],
      })
      const steps = new FakeMoves(store)
      const started = Date.now()
      const running = runRebalance(steps, store, {parallel: 4, perServer: 1, retireAfterMs: 10_000})
      await vi.advanceTimersByTimeAsync(9_999)
      expect(steps.calls.map((c) => [c.user, c.state, c.at - started])).toEqual([
        ['alice@example.com', 'planned', 0],
        ['bob@example.com', 'planned', 0],
      ])
      await vi.advanceTimersByTimeAsync(1)
      expect(steps.calls.slice(2).map((c) => [c.user, c.state, c.at - started])).toEqual([
        ['alice@example.com', 'caught-up', 10_000],
        ['bob@example.com', 'caught-up', 10_000],
      ])
      expect((await running).summary).toMatchObject({moved: 2, left: 0})
      expect(await store.openMoves()).toEqual([])
    })

    it('with a byte budget, starts each copy when the bytes started before it fit in the rate', async () => {
      await clusterToRebalance(8)
      // 2000 bytes a mailbox at 1000 bytes/s, one second of burst: the copies start 0, 1, 3, 5... s in.
      const steps = new FakeMoves(store, {size: 2000})
      const started = Date.now()
      const running = runRebalance(steps, store, {
        parallel: 100,
        perServer: 100,
        retireAfterMs: 0,
        bytesPerSecond: 1000,
      })
      await vi.runAllTimersAsync()
      const run = await running
      const copyStarts = new Map(
        steps.calls.filter((c) => c.state === 'planned').map((c) => [c.id, c.at - started]),
      )
      const copies = [...copyStarts.values()].sort((x, y) => x - y)
      expect(copies.length).toBeGreaterThan(4)
      expect(copies).toEqual(copies.map((_, k) => Math.max(0, (2 * k - 1) * 1000)))
      // Retires copy nothing and wait for no budget: each follows its copy at once.
      for (const c of steps.calls.filter((c) => c.state === 'caught-up'))
        expect(c.at - started).toBe(copyStarts.get(c.id))
      expect(run.summary).toMatchObject({failed: 0, left: 0})
    })
  })
})
