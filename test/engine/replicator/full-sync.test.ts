/**
 * The periodic full sync against a real (SQLite) store, with a clock the test drives: every user is queued
 * once per interval, spread evenly over it, in address order; a restarted scheduler goes on where the
 * last one stopped; users added during a pass are queued before it ends.
 */
import * as path from 'node:path'

import {afterEach, beforeEach, describe, expect, it} from 'vitest'

import {FullSyncScheduler} from '../../../src/engine/replicator/full-sync.js'
import {backoffFor} from '../../../src/engine/replicator/service.js'
import {SqliteStore} from '../../../src/store/sqlite.js'
import type {ReplicationRequest} from '../../../src/store/store.js'
import {fillStore} from '../../support/store-cluster.js'
import {makeTempDir, removeDir} from '../../support/proc.js'
import {userBatch} from '../../support/user-batch.js'

let dir: string
let store: SqliteStore
const HOUR = 3600_000
const users = Array.from({length: 100}, (_, i) => `u${String(i).padStart(3, '0')}@example.com`)

beforeEach(async () => {
  dir = makeTempDir('mr-fullsync')
  store = (await SqliteStore.init(path.join(dir, 'c.db'), {copies: 2})).store
  await fillStore(
    store,
    [
      {name: 'a', address: '127.0.0.1'},
      {name: 'b', address: '127.0.0.2'},
    ],
    users.map((u) => [u, ['a', 'b']]),
    2,
  )
})

afterEach(async () => {
  await store.close()
  removeDir(dir)
})

function scheduler(queued: ReplicationRequest[]): FullSyncScheduler {
  return new FullSyncScheduler(store, HOUR, async (requests) => {
    queued.push(...requests)
  })
}

describe('the full sync', () => {
  it('queues every user once per interval, spread evenly, in address order', async () => {
    const queued: ReplicationRequest[] = []
    const s = scheduler(queued)
    const t0 = 1_000_000_000
    await s.tick(t0)
    expect(queued).toHaveLength(0)
    await s.tick(t0 + HOUR / 4)
    expect(queued).toHaveLength(25)
    await s.tick(t0 + HOUR / 2)
    expect(queued).toHaveLength(50)
    expect(queued.every((r) => r.priority === 'full')).toBe(true)
    expect(queued.map((r) => r.user)).toEqual(users.slice(0, 50))
    await s.tick(t0 + HOUR)
    expect(queued.map((r) => r.user)).toEqual(users)
    expect(await store.replicationMarker('full_sync.finished')).toBe(String(t0 + HOUR))
    // The next pass starts where the interval ends, from the first user again.
    await s.tick(t0 + HOUR + HOUR / 10)
    expect(queued.slice(100).map((r) => r.user)).toEqual(users.slice(0, 10))
  })

  it('goes on where a stopped scheduler left off', async () => {
    const first: ReplicationRequest[] = []
    const t0 = 2_000_000_000
    await scheduler(first).tick(t0)
    await scheduler(first).tick(t0 + HOUR / 2)
    const second: ReplicationRequest[] = []
    await scheduler(second).tick(t0 + (HOUR * 3) / 4)
    expect(first.map((r) => r.user)).toEqual(users.slice(0, 50))
    expect(second.map((r) => r.user)).toEqual(users.slice(50, 75))
  })

  it('queues users added during the pass before the pass ends', async () => {
    const queued: ReplicationRequest[] = []
    const s = scheduler(queued)
    const t0 = 3_000_000_000
    await s.tick(t0)
    await s.tick(t0 + HOUR / 2)
    await store.insertUsers([userBatch([['zz-late@example.com', ['a', 'b']]])], {skipExisting: false})
    await s.tick(t0 + HOUR + 1)
    expect(queued.map((r) => r.user)).toEqual([...users, 'zz-late@example.com'])
  })
})

describe('the back-off of a failed sync', () => {
  it('doubles per attempt, within a jitter of a quarter, up to the cap', () => {
    const tuning = {backoffMs: 1_000, maxBackoffMs: 60_000}
    for (const [attempts, base] of [
      [0, 1_000],
      [1, 2_000],
      [3, 8_000],
      [10, 60_000],
    ] as const) {
      const ms = backoffFor(attempts, tuning)
      expect(ms).toBeGreaterThanOrEqual(base * 0.75)
      expect(ms).toBeLessThanOrEqual(base * 1.25)
    }
  })
})
