/**
 * What the rebalance end-to-end tests do with a ring cluster's mail (test/support/ring-cluster.ts): where the
 * ring puts users, the store's current copies, mail delivered to each user's first copy, and the check that
 * every message is on every current copy and Dovecot knows each user on exactly those servers.
 */
import {expect} from 'vitest'

import type {RebalanceRunOutput} from '../../src/commands/rebalance.js'
import {Placement} from '../../src/core/placement.js'
import {PLACEMENT_ALGORITHM_VERSION, type Topology} from '../../src/core/topology.js'
import type {JsonEnvelope} from './cli.js'
import type {DovecotVersion} from './dovecot24.js'
import type {MariaDb} from './mariadb.js'
import {startRingCluster, type RingCluster} from './ring-cluster.js'

/** Where a ring of `servers` (equal weights) puts each user with `copies` copies. */
export function placed(
  servers: readonly string[],
  copies: number,
  users: readonly string[],
): Map<string, string[]> {
  const topology: Topology = {
    algorithm: PLACEMENT_ALGORITHM_VERSION,
    copies,
    servers: servers.map((name) => ({name, address: '', weight: 1, state: 'active'})),
    domains: [],
  }
  const placement = new Placement(topology)
  return new Map(users.map((u) => [u, placement.serversFor(u)]))
}

/** Each user's current copies, as the store says (primary first). */
export async function copiesInStore(ring: RingCluster): Promise<Map<string, string[]>> {
  const store = await ring.openStore()
  try {
    return new Map((await store.listUsers({limit: 1000})).map((u) => [u.user, u.copies]))
  } finally {
    await store.close()
  }
}

/** The subjects delivered to each user, and delivery (LMTP, to the user's first copy) that records them. */
export class Mail {
  readonly sent = new Map<string, string[]>()

  constructor(private readonly ring: RingCluster) {}

  /** One message for each of `users`, `Subject: SUBJECT USER`, delivered to the user's first copy. */
  async deliver(subject: string, users: readonly string[]): Promise<void> {
    const copies = await copiesInStore(this.ring)
    for (const user of users) {
      await this.ring.host(copies.get(user)![0]!).deliver(user, `Subject: ${subject} ${user}\r\n\r\nbody\r\n`)
      this.record(user, `${subject} ${user}`)
    }
  }

  /** A message that reached the user some other way (e.g. an IMAP APPEND). */
  record(user: string, subject: string): void {
    this.sent.set(user, [...(this.sent.get(user) ?? []), subject])
  }

  /**
   * Every message each of `users` was sent on every current copy (IMAP), and each user known by Dovecot
   * (`doveadm user`) on exactly those of `servers`.
   */
  async expectOnEveryCopy(users: readonly string[], servers: readonly string[]): Promise<void> {
    const copies = await copiesInStore(this.ring)
    for (const user of users) {
      for (const server of copies.get(user)!) {
        const subjects = (await this.ring.mailbox(server, user)).map((m) => m.subject)
        expect(subjects, `${user} on ${server}`).toEqual([...(this.sent.get(user) ?? [])].sort())
      }
      for (const server of servers) {
        const known = (await this.ring.host(server).doveadm(['user', user])).exitCode === 0
        expect(known, `${server} knows ${user}`).toBe(copies.get(user)!.includes(server))
      }
    }
  }
}

/** `mailring rebalance --yes --json` with the given options; expects exit 0 and returns its result. */
export async function rebalance(ring: RingCluster, options: string[] = []): Promise<RebalanceRunOutput> {
  const r = await ring.cli<JsonEnvelope<RebalanceRunOutput>>(['rebalance', '--yes', '--json', ...options])
  expect(r.exitCode, r.stderr + r.stdout).toBe(0)
  return r.json!.result!
}

/**
 * A ring of mx-a..mx-d (sshd on each), R = 2, where mx-d runs but is not in the cluster yet (the store
 * forgot it: `node add` brings it in), the users of example.com placed by the other three, each with a
 * message `first USER` on both copies.
 */
export async function startRingWithSpare(
  users: readonly string[],
  options: {mariadb?: MariaDb; version?: DovecotVersion} = {},
): Promise<{ring: RingCluster; mail: Mail}> {
  const three = placed(['mx-a', 'mx-b', 'mx-c'], 2, users)
  const ring = await startRingCluster({
    servers: ['mx-a', 'mx-b', 'mx-c', 'mx-d'],
    users: users.map((u) => [u, three.get(u)!]),
    copies: 2,
    ssh: true,
    ...options,
  })
  const mail = new Mail(ring)
  try {
    const removed = await ring.cli(['node', 'remove', 'mx-d'])
    expect(removed.exitCode, removed.stderr).toBe(0)
    await mail.deliver('first', users)
    const synced = await ring.cli(['sync', 'domain', 'example.com'])
    expect(synced.exitCode, synced.stderr).toBe(0)
  } catch (error) {
    await ring.stop()
    throw error
  }
  return {ring, mail}
}
