/**
 * What a sound sync costs (issue 20): one user's sync on three real Dovecot 2.3 servers (R = 3, doveadm
 * through its HTTP API, test/support/ring-cluster.ts), copies already in agreement, for a small and a large
 * mailbox, four ways, their runs interleaved so that the machine's load falls on them alike:
 *
 * - "summaries (before issue 20)": every copy's mailbox status, the hub synced with each copy (no -f, no
 *   state), every copy's status again: what `syncOneUser` did. Unsound: it reports a split (two copies that
 *   each took a message) as synced. The peer the others are measured against.
 * - "syncOneUser (now)": the same, but the check after the syncs reads every message's GUID and flags on every
 *   copy (status and fetch in one request per copy), and syncs again in full while copies differ.
 * - "-f every pair": every copy's status, the hub synced in full (-f) with each copy, every copy's status:
 *   the other sound choice.
 * - "incremental from a state": the replicator's fast path, the source synced with each copy from the state
 *   of the pair's last sync (both syncs in one request), no status read: what a notified change costs.
 *
 * Figures: the Dovecot servers' CPU (every process, short-lived ones included, from /proc) and the wall time
 * per user sync, medians of BENCH_SYNC_CHECK_RUNS (default 7). BENCH_SYNC_CHECK_MESSAGES sets the large
 * mailbox (default 2,000 messages; the small one has 50). Bounded by this machine's two cores: Dovecot's
 * process start-ups (a fresh doveadm-server per request and per dsync connection) are most of the CPU.
 */
import {DoveadmFleet} from '../src/engine/sync/fleet.js'
import {readCopyContents, syncOneUser, syncPair} from '../src/engine/sync/sync.js'
import {STATE_FIELDS} from '../src/core/mailbox-state.js'
import {syncCommand, syncStateOf} from '../src/dovecot/doveadm.js'
import {ringFleet, startRingCluster, type RingCluster} from '../test/support/ring-cluster.js'
import {lmtpDeliver} from '../test/support/mailclients.js'
import {SqliteStore} from '../src/store/sqlite.js'
import {dovecotCpuMs} from './measure.js'
import {printTable, times} from './report.js'

const SUITE = 'sync-check'
const SERVERS = ['mx-a', 'mx-b', 'mx-c']
const RUNS = Number(process.env.BENCH_SYNC_CHECK_RUNS ?? 7)
const LARGE = Number(process.env.BENCH_SYNC_CHECK_MESSAGES ?? 2_000)
const MAILBOXES = [
  {user: 'small@bench.example', messages: 50},
  {user: 'large@bench.example', messages: LARGE},
]

const message = (n: number) =>
  `From: s@example.net\r\nSubject: message ${n}\r\nMessage-ID: <m${n}.${Math.random()}@bench>\r\n\r\n${'body line\r\n'.repeat(20)}`

interface Way {
  label: string
  run(fleet: DoveadmFleet, user: string): Promise<void>
}

const statusAll = (fleet: DoveadmFleet, user: string) =>
  Promise.all(SERVERS.map((s) => fleet.mailboxStatus(s, user, STATE_FIELDS)))

function ways(states: Map<string, string>): Way[] {
  return [
    {
      label: 'summaries (before issue 20)',
      async run(fleet, user) {
        await statusAll(fleet, user)
        for (const target of SERVERS.slice(1))
          await syncPair(fleet, user, SERVERS[0]!, target, {}, {syncs: 0})
        await statusAll(fleet, user)
      },
    },
    {
      label: 'syncOneUser (now)',
      async run(fleet, user) {
        const result = await syncOneUser(fleet, user, SERVERS, false)
        if (result.status !== 'in-sync') throw new Error(`${user}: ${result.status} ${result.message ?? ''}`)
      },
    },
    {
      label: '-f every pair',
      async run(fleet, user) {
        await statusAll(fleet, user)
        for (const target of SERVERS.slice(1))
          await syncPair(fleet, user, SERVERS[0]!, target, {full: true}, {syncs: 0})
        await statusAll(fleet, user)
      },
    },
    {
      label: 'incremental from a state',
      async run(fleet, user) {
        const targets = SERVERS.slice(1)
        const replies = await fleet.runAll(
          SERVERS[0]!,
          targets.map((target) =>
            syncCommand({
              user,
              destination: fleet.syncDestination(target),
              state: states.get(`${user} ${target}`) ?? '',
              full: !states.has(`${user} ${target}`),
            }),
          ),
        )
        replies.forEach((reply, i) => {
          const state = syncStateOf(reply.rows)
          if (reply.outcome !== 'ok' || state === undefined) throw new Error(`${user}: sync failed`)
          states.set(`${user} ${targets[i]}`, state)
        })
      },
    },
  ]
}

function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b)
  const middle = sorted.length >> 1
  return sorted.length % 2 === 1 ? sorted[middle]! : (sorted[middle - 1]! + sorted[middle]!) / 2
}

async function fill(ring: RingCluster, user: string, messages: number): Promise<void> {
  const host = ring.host(SERVERS[0]!)
  let next = 0
  const worker = async () => {
    while (next < messages) {
      const n = next++
      await lmtpDeliver(host.ip, host.lmtpPort, {to: [user], message: message(n), timeoutMs: 120_000})
    }
  }
  await Promise.all(Array.from({length: 3}, worker))
}

async function runSyncCheckBench(): Promise<void> {
  const ring = await startRingCluster({
    servers: SERVERS,
    users: MAILBOXES.map((m) => [m.user, SERVERS]),
    copies: 3,
  })
  const store = await SqliteStore.open(ring.dbPath)
  const fleet = await ringFleet(ring, store)
  try {
    for (const {user, messages} of MAILBOXES) {
      await fill(ring, user, messages)
      const first = await syncOneUser(fleet, user, SERVERS, false)
      if (first.status !== 'synced')
        throw new Error(`${user}: first sync ${first.status} ${first.message ?? ''}`)
      const copies = await Promise.all(SERVERS.map((s) => readCopyContents(fleet, user, s)))
      const counts = copies.map((c) => c.messages.get('INBOX')?.length ?? 0)
      if (counts.some((n) => n !== messages))
        throw new Error(`${user}: copies hold ${counts.join('/')} messages`)
    }
    const states = new Map<string, string>()
    const all = ways(states)
    const cpu = new Map<string, number[]>()
    const wall = new Map<string, number[]>()
    for (const {user} of MAILBOXES) {
      // Warm-up: each way once (and the states of the incremental way's first, full, sync).
      for (const way of all) await way.run(fleet, user)
      for (let run = 0; run < RUNS; run++)
        for (const way of all) {
          const key = `${user} ${way.label}`
          const cpuBefore = dovecotCpuMs(ring)
          const started = performance.now()
          await way.run(fleet, user)
          wall.set(key, [...(wall.get(key) ?? []), performance.now() - started])
          cpu.set(key, [...(cpu.get(key) ?? []), dovecotCpuMs(ring) - cpuBefore])
        }
    }
    const rows: string[][] = []
    for (const {user, messages} of MAILBOXES) {
      const peer = median(cpu.get(`${user} ${all[0]!.label}`)!)
      const peerWall = median(wall.get(`${user} ${all[0]!.label}`)!)
      for (const way of all) {
        const key = `${user} ${way.label}`
        const c = median(cpu.get(key)!)
        const w = median(wall.get(key)!)
        rows.push([
          `${messages} messages`,
          way.label,
          `${Math.round(c)} ms`,
          times(c / peer),
          `${Math.round(w)} ms`,
          times(w / peerWall),
        ])
      }
    }
    printTable(
      `One user's sync, copies in agreement, R = 3, median of ${RUNS}`,
      ['mailbox', 'way', 'Dovecot CPU', 'x summaries', 'wall', 'x summaries'],
      rows,
      [
        'Dovecot CPU counts every Dovecot process (from /proc), ±10 ms (USER_HZ = 100); the peer is the unsound way `sync` had before issue 20.',
      ],
      2,
    )
  } finally {
    await fleet.close()
    await store.close()
    await ring.stop()
  }
}

export const syncCheckBench = {
  name: SUITE,
  description: "what a sound sync costs: one user's sync four ways, small and large mailbox",
  run: runSyncCheckBench,
}
