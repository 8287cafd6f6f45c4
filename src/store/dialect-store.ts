/** The Store methods both dialects share, written once over each dialect's aggregates (see store.ts). */
import type {Topology} from '../core/topology.js'
import {storeMetaOf} from './aggregates/meta.js'
import {
  claimWith,
  enqueueWith,
  renewWith,
  type ClaimPlan,
  type EnqueuePlan,
} from './aggregates/replication.js'
import {tallyInserts, type InsertTally} from './aggregates/users.js'
import type * as api from './store.js'

/** What an aggregate of SQLite (synchronous) or MySQL (a promise) gives back. */
export type Awaitable<T> = T | Promise<T>

/**
 * One dialect's aggregates (./aggregates), as the store's methods call them: on a connection `C`, which is
 * the first argument. The sqliteX and mysqlX objects each fit it.
 */
export interface Aggregates<C> {
  meta: {map(conn: C): Awaitable<Map<string, string>>}
  topology: {
    read(conn: C): Awaitable<Topology>
    write(conn: C, topology: Topology): Awaitable<void>
    usage(conn: C): Awaitable<api.ServerUsage[]>
  }
  users: {
    insert(conn: C, batches: Iterable<api.UserBatch>, tally: InsertTally): Awaitable<void>
    replace(
      conn: C,
      batches: Iterable<api.UserBatch>,
      remove: readonly string[],
    ): Awaitable<api.ReplaceUsersResult>
    remove(conn: C, users: readonly string[]): Awaitable<string[]>
    get(conn: C, user: string): Awaitable<api.UserRecord | undefined>
    list(conn: C, options: api.UserListOptions): Awaitable<api.UserRecord[]>
    count(conn: C): Awaitable<number>
  }
  moves: {
    journal(conn: C, plan: string, moves: readonly api.NewMove[]): Awaitable<number>
    open(conn: C): Awaitable<api.MoveRecord[]>
    setState(
      conn: C,
      id: number,
      expected: api.MoveState,
      next: api.MoveState,
      error?: string,
    ): Awaitable<boolean>
    switch(conn: C, id: number): Awaitable<void>
    retire(conn: C, id: number, trash: string | null): Awaitable<boolean>
    retired(conn: C, before: string): Awaitable<api.MoveRecord[]>
    cancelUnswitched(conn: C): Awaitable<number>
  }
  queue: {
    enqueue(conn: C, plan: EnqueuePlan): Awaitable<api.EnqueueResult>
    claim(conn: C, plan: ClaimPlan): Awaitable<api.ReplicationTask[]>
    renew(conn: C, owner: string, users: readonly string[], until: number): Awaitable<string[]>
    finish(
      conn: C,
      owner: string,
      task: api.ReplicationTask,
      outcome: api.ReplicationOutcome,
    ): Awaitable<boolean>
    release(conn: C, owner: string): Awaitable<number>
    stats(conn: C, nowMs: number): Awaitable<api.ReplicationQueueStats>
    marker(conn: C, key: string): Awaitable<string | undefined>
    setMarker(conn: C, key: string, value: string): Awaitable<void>
  }
  health: {
    list(conn: C): Awaitable<api.ServerHealth[]>
    set(
      conn: C,
      server: string,
      expected: api.ServerHealthState,
      next: api.ServerHealthState,
      detail: string,
    ): Awaitable<boolean>
  }
  syncStates: {
    list(conn: C, user: string): Awaitable<api.SyncState[]>
    save(conn: C, user: string, states: readonly api.SyncState[]): Awaitable<number>
  }
  missed: {
    record(conn: C, user: string, servers: readonly string[], nowMs: number): Awaitable<number>
    users(conn: C, server: string): Awaitable<string[]>
    clear(conn: C, user: string, servers: readonly string[]): Awaitable<number>
  }
  hosts: {
    list(conn: C): Awaitable<api.Host[]>
    put(conn: C, host: api.Host): Awaitable<void>
    remove(conn: C, name: string): Awaitable<boolean>
  }
}

/**
 * What an operation needs from the way it runs; each dialect decides how (SqliteStore.run, MysqlStore.run).
 * - query: one statement that reads, outside a transaction.
 * - read: reads that must agree: one read transaction.
 * - write: a change in one transaction, which checks before it commits that a cluster lock this store
 *   holds is still its own.
 * - claim: a write that takes rows other claims race for (MySQL runs it READ COMMITTED: see mysqlQueue.claim).
 * - switch: a claim that may deadlock with another one; MySQL runs it again then (see mysqlMoves.switch).
 * - readOne, writeOne: one statement, which SQLite runs by itself (a writeOne unchecked against the lock)
 *   and MySQL as a read or a write.
 */
export type RunKind = 'query' | 'read' | 'readOne' | 'write' | 'writeOne' | 'claim' | 'switch'

/**
 * The Store methods that only run an aggregate, written once for both dialects: a subclass gives its
 * aggregates and how an operation runs (`run`), and has the rest (opening, closing, scans, the lock).
 */
export abstract class DialectStore<C> {
  protected abstract readonly aggregates: Aggregates<C>

  /** Runs `work` on a connection the way `kind` needs, turning the driver's errors into the store's. */
  protected abstract run<T>(kind: RunKind, work: (conn: C) => Awaitable<T>): Awaitable<T>

  async meta(): Promise<api.StoreMeta> {
    return storeMetaOf(await this.run('query', (conn) => this.aggregates.meta.map(conn)))
  }

  // Topology

  async readTopology(): Promise<Topology> {
    return this.run('read', (conn) => this.aggregates.topology.read(conn))
  }

  async writeTopology(topology: Topology): Promise<void> {
    await this.run('write', (conn) => this.aggregates.topology.write(conn, topology))
  }

  async serverUsage(): Promise<api.ServerUsage[]> {
    return this.run('read', (conn) => this.aggregates.topology.usage(conn))
  }

  // Users

  async insertUsers(
    batches: Iterable<api.UserBatch>,
    options: {skipExisting: boolean},
  ): Promise<api.InsertUsersResult> {
    return tallyInserts(options, (tally) =>
      this.run('write', (conn) => this.aggregates.users.insert(conn, batches, tally)),
    )
  }

  async replaceUsers(
    batches: Iterable<api.UserBatch>,
    remove: readonly string[],
  ): Promise<api.ReplaceUsersResult> {
    return this.run('write', (conn) => this.aggregates.users.replace(conn, batches, remove))
  }

  async removeUsers(users: readonly string[]): Promise<string[]> {
    return this.run('write', (conn) => this.aggregates.users.remove(conn, users))
  }

  async getUser(user: string): Promise<api.UserRecord | undefined> {
    return this.run('read', (conn) => this.aggregates.users.get(conn, user))
  }

  async listUsers(options: api.UserListOptions): Promise<api.UserRecord[]> {
    return this.run('read', (conn) => this.aggregates.users.list(conn, options))
  }

  async countUsers(): Promise<number> {
    return this.run('query', (conn) => this.aggregates.users.count(conn))
  }

  // The move journal

  async journalMoves(plan: string, moves: readonly api.NewMove[]): Promise<number> {
    return this.run('write', (conn) => this.aggregates.moves.journal(conn, plan, moves))
  }

  async openMoves(): Promise<api.MoveRecord[]> {
    return this.run('readOne', (conn) => this.aggregates.moves.open(conn))
  }

  async setMoveState(
    id: number,
    expected: api.MoveState,
    next: api.MoveState,
    error?: string,
  ): Promise<boolean> {
    return this.run('writeOne', (conn) => this.aggregates.moves.setState(conn, id, expected, next, error))
  }

  async switchMove(id: number): Promise<void> {
    await this.run('switch', (conn) => this.aggregates.moves.switch(conn, id))
  }

  async retireMove(id: number, trash: string | null): Promise<boolean> {
    return this.run('writeOne', (conn) => this.aggregates.moves.retire(conn, id, trash))
  }

  async retiredMoves(before: string): Promise<api.MoveRecord[]> {
    return this.run('readOne', (conn) => this.aggregates.moves.retired(conn, before))
  }

  async cancelUnswitchedMoves(): Promise<number> {
    return this.run('writeOne', (conn) => this.aggregates.moves.cancelUnswitched(conn))
  }

  // The replication queue and server health

  async enqueueReplication(
    requests: readonly api.ReplicationRequest[],
    options: api.EnqueueOptions,
  ): Promise<api.EnqueueResult> {
    return enqueueWith(requests, options, (plan) =>
      this.run('write', (conn) => this.aggregates.queue.enqueue(conn, plan)),
    )
  }

  async claimReplication(options: api.ClaimOptions): Promise<api.ReplicationTask[]> {
    return claimWith(options, (plan) => this.run('claim', (conn) => this.aggregates.queue.claim(conn, plan)))
  }

  async renewReplication(owner: string, users: readonly string[], leaseUntilMs: number): Promise<string[]> {
    return renewWith(users, leaseUntilMs, (until) =>
      this.run('write', (conn) => this.aggregates.queue.renew(conn, owner, users, until)),
    )
  }

  async finishReplication(
    owner: string,
    task: api.ReplicationTask,
    outcome: api.ReplicationOutcome,
  ): Promise<boolean> {
    return this.run('write', (conn) => this.aggregates.queue.finish(conn, owner, task, outcome))
  }

  async releaseReplication(owner: string): Promise<number> {
    return this.run('writeOne', (conn) => this.aggregates.queue.release(conn, owner))
  }

  async replicationStats(nowMs: number): Promise<api.ReplicationQueueStats> {
    return this.run('read', (conn) => this.aggregates.queue.stats(conn, nowMs))
  }

  async replicationMarker(key: string): Promise<string | undefined> {
    return this.run('query', (conn) => this.aggregates.queue.marker(conn, key))
  }

  async setReplicationMarker(key: string, value: string): Promise<void> {
    await this.run('writeOne', (conn) => this.aggregates.queue.setMarker(conn, key, value))
  }

  async serverHealth(): Promise<api.ServerHealth[]> {
    return this.run('read', (conn) => this.aggregates.health.list(conn))
  }

  async setServerHealth(
    server: string,
    expected: api.ServerHealthState,
    next: api.ServerHealthState,
    detail: string,
  ): Promise<boolean> {
    return this.run('write', (conn) => this.aggregates.health.set(conn, server, expected, next, detail))
  }

  // dsync's saved states

  async syncStates(user: string): Promise<api.SyncState[]> {
    return this.run('read', (conn) => this.aggregates.syncStates.list(conn, user))
  }

  async saveSyncStates(user: string, states: readonly api.SyncState[]): Promise<number> {
    return this.run('write', (conn) => this.aggregates.syncStates.save(conn, user, states))
  }

  // Changes down servers missed

  async recordMissed(user: string, servers: readonly string[], nowMs: number): Promise<number> {
    if (servers.length === 0) return 0
    return this.run('write', (conn) => this.aggregates.missed.record(conn, user, servers, nowMs))
  }

  async missedUsers(server: string): Promise<string[]> {
    return this.run('read', (conn) => this.aggregates.missed.users(conn, server))
  }

  async clearMissed(user: string, servers: readonly string[]): Promise<number> {
    if (servers.length === 0) return 0
    return this.run('write', (conn) => this.aggregates.missed.clear(conn, user, servers))
  }

  // Hosts

  async listHosts(): Promise<api.Host[]> {
    return this.run('query', (conn) => this.aggregates.hosts.list(conn))
  }

  async putHost(host: api.Host): Promise<void> {
    await this.run('write', (conn) => this.aggregates.hosts.put(conn, host))
  }

  async removeHost(name: string): Promise<boolean> {
    return this.run('writeOne', (conn) => this.aggregates.hosts.remove(conn, name))
  }
}
