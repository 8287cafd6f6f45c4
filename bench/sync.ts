/**
 * Sync benchmark: `sync-domain` (the engine behind it: selectDomains + syncUsers over a DoveadmFleet) on three
 * real Dovecot 2.3 servers (test/support/ring-cluster.ts: each on its own 127.0.0.N, configured by mailring's
 * rendered SQL files over a SQLite store, doveadm through its HTTP API) holding 2,000 small mailboxes in one
 * domain, R = 3, with --parallel 8 against --parallel 1 in the same run; then `verify --all` on the same users.
 *
 * - First sync, with real work: 1 or 2 messages were delivered (LMTP) to one copy of each user only; the other
 *   two copies have never been opened. The domain is split in two disjoint sets of fresh users, a tenth synced
 *   with --parallel 1 and the rest with --parallel 8, so that every mailbox is synced once and both modes
 *   start from the same kind of state; they are compared by users/s.
 * - Already in sync: a sample of a tenth of the users, synced once more to settle (not compared), then with
 *   --parallel 1 and with --parallel 8.
 *
 * Per run: wall time, users/s, doveadm HTTP requests per user, mailring's own time per user beyond the
 * doveadm calls (with --parallel 1: the run less the time waiting for doveadm), mailring's CPU per user
 * (process.cpuUsage() of this process: everything but the wait for doveadm), and the Dovecot servers' CPU per
 * user (other processes, read from /proc). A bare doveadm request, measured in the same run, says how much of
 * mailring's CPU is the HTTP client. Every run must end with failed = 0 and partial = 0, every copy of every
 * user must hold its messages in the same INBOX afterwards, and verify must find every user's copies in
 * agreement, or the suite reports FAIL.
 *
 * A whole run takes several minutes: every doveadm request costs Dovecot a fresh doveadm-server process
 * (service_count = 1; the HTTP API answers Connection: close). BENCH_SYNC_USERS=400 gives a quicker look.
 */
import * as fs from 'node:fs'
import * as http from 'node:http'
import * as os from 'node:os'
import * as path from 'node:path'

import {contextFor} from '../test/support/store-cluster.js'
import {startRingCluster, type RingCluster} from '../test/support/ring-cluster.js'
import {lmtpDeliver} from '../test/support/mailclients.js'
import {httpRequestEntry, userLookupCommand} from '../src/dovecot/doveadm.js'
import type {DovecotContext} from '../src/engine/context.js'
import {DoveadmFleet} from '../src/engine/sync/fleet.js'
import {syncUsers, type SyncSummary} from '../src/engine/sync/sync.js'
import {selectDomains, type UserCopies} from '../src/engine/sync/selection.js'
import {verifyUsers, type VerifySummary} from '../src/engine/sync/verify.js'
import {doveadmHttpCounters, HttpDoveadm} from '../src/remote/doveadm-http.js'
import {DOVEADM_PASSWORD_ENV} from '../src/remote/doveadm-settings.js'
import {SqliteStore} from '../src/store/sqlite.js'
import {collectGarbage, dovecotCpuMs, ownCpuMs} from './measure.js'
import {checkTarget, count, printTable, seconds, times} from './report.js'

const SUITE = 'sync'
const SERVERS = ['mx-a', 'mx-b', 'mx-c']
const COPIES = 3
const USERS = usersWanted()
const DOMAIN = 'bench.example'
/** Synced once before anything is measured (JIT, Dovecot's auth and config processes, first connections). */
const WARM_USERS = 40
const WARM_DOMAIN = 'warm.example'
const PARALLEL = 8
/** Share of the users in the --parallel 1 first sync, and in the in-sync sample. */
const SERIAL_SHARE = 10
const CPU_TARGET_MS = 5
const VERIFY_TARGET_MS = 30_000
/** LMTP recipients per delivery, and deliveries at once, while the mailboxes are filled. */
const RCPT_PER_DELIVERY = 50
const DELIVERIES_AT_ONCE = 3
/** Bare doveadm requests measured one after the other, per client. */
const BARE_REQUESTS = 100

function usersWanted(): number {
  const n = Number(process.env.BENCH_SYNC_USERS ?? 2_000)
  if (!Number.isInteger(n) || n < 100 || n > 9_999 || n % 20 !== 0)
    throw new Error('BENCH_SYNC_USERS is a multiple of 20 from 100 to 9,980')
  return n
}

interface BenchUser {
  user: string
  copies: string[]
  /** Messages delivered to it (1 or 2). */
  messages: number
  /** The one copy they were delivered to. */
  filled: string
}

/** User i: copies rotated so that every server is first for a third; mail on one copy, which varies. */
function benchUsers(domain: string, n: number): BenchUser[] {
  return Array.from({length: n}, (_, index) => {
    const copies = SERVERS.map((_, k) => SERVERS[(index + k) % SERVERS.length]!)
    return {
      user: `u${String(index).padStart(4, '0')}@${domain}`,
      copies,
      messages: 1 + (index % 2),
      filled: copies[Math.floor(index / 3) % copies.length]!,
    }
  })
}

function message(n: number): string {
  return [
    'From: sender@example.net',
    `To: mailbox@${DOMAIN}`,
    `Subject: bench message ${n}`,
    `Message-ID: <bench-${n}-${process.pid}@example.net>`,
    '',
    `Body of bench message ${n}, a few bytes as small mailboxes have.`,
    '',
  ].join('\r\n')
}

/** Delivers each user's messages over LMTP to its one filled copy, many recipients per transaction. */
async function fill(ring: RingCluster, users: readonly BenchUser[]): Promise<void> {
  // Message 1 to everyone before message 2 to anyone.
  for (const n of [1, 2]) {
    const jobs: {server: string; to: string[]}[] = []
    for (const server of SERVERS) {
      const to = users.filter((u) => u.filled === server && u.messages >= n).map((u) => u.user)
      for (let i = 0; i < to.length; i += RCPT_PER_DELIVERY)
        jobs.push({server, to: to.slice(i, i + RCPT_PER_DELIVERY)})
    }
    let next = 0
    const worker = async () => {
      while (next < jobs.length) {
        const job = jobs[next++]!
        const host = ring.host(job.server)
        await lmtpDeliver(host.ip, host.lmtpPort, {to: job.to, message: message(n), timeoutMs: 120_000})
      }
    }
    await Promise.all(Array.from({length: DELIVERIES_AT_ONCE}, worker))
  }
}

interface Measured {
  label: string
  parallel: number
  users: number
  ms: number
  /** This process (mailring). */
  cpuMs: number
  /** The three Dovecot servers. */
  dovecotCpuMs: number
  requests: number
  /** Time during which at least one doveadm request was waiting for its answer. */
  waitMs: number
  summary: {failed: number}
}

/** Runs `work` (a selection and a sync, as one `mailring sync-domain`, or a verify) with its figures. */
async function measure<S extends {failed: number}>(
  ring: RingCluster,
  label: string,
  parallel: number,
  work: () => Promise<{users: number; summary: S}>,
): Promise<Measured & {summary: S}> {
  collectGarbage()
  const dovecotBefore = dovecotCpuMs(ring)
  const countersBefore = doveadmHttpCounters()
  const cpuBefore = ownCpuMs()
  const started = performance.now()
  const {users, summary} = await work()
  const ms = performance.now() - started
  const cpuMs = ownCpuMs() - cpuBefore
  return {
    label,
    parallel,
    users,
    ms,
    cpuMs,
    dovecotCpuMs: dovecotCpuMs(ring) - dovecotBefore,
    requests: doveadmHttpCounters().requests - countersBefore.requests,
    waitMs: doveadmHttpCounters().waitMs - countersBefore.waitMs,
    summary,
  }
}

/** One sync run as `mailring sync-domain` does it: the domain's users from the store, `pick` of them, synced. */
function syncRun(ctx: DovecotContext, domain: string, parallel: number, pick: (user: string) => boolean) {
  return async () => {
    const fleet = new DoveadmFleet(ctx)
    try {
      const selection = await selectDomains(ctx.store, [domain])
      if (selection.problems.length > 0) throw new Error(selection.problems.join('; '))
      const targets = selection.targets.filter((t) => pick(t.user))
      const {summary} = await syncUsers(fleet, targets, {parallel})
      return {users: targets.length, summary}
    } finally {
      await fleet.close()
    }
  }
}

/** `mailring verify --all` on the same users (the domain's, here). */
function verifyRun(ctx: DovecotContext, users: readonly UserCopies[]) {
  return async () => {
    const fleet = new DoveadmFleet(ctx)
    try {
      const {summary} = await verifyUsers(fleet, users, {parallel: PARALLEL})
      return {users: users.length, summary: {...summary, failed: summary.users - summary.agree}}
    } finally {
      await fleet.close()
    }
  }
}

/**
 * Read on disk after the first syncs (nothing measured): every copy of every user holds its messages in an
 * INBOX of one identity (UIDVALIDITY and mailbox GUID in the header of dovecot-uidlist, "3 V... N... G...").
 * Returns one line per problem.
 */
function checkOnDisk(ring: RingCluster, users: readonly BenchUser[]): string[] {
  const problems: string[] = []
  const files = (dir: string): number => {
    try {
      return fs.readdirSync(dir).length
    } catch {
      return 0
    }
  }
  for (const u of users) {
    const [local, domain] = u.user.split('@') as [string, string]
    const identities = new Set<string>()
    for (const server of u.copies) {
      const dir = path.join(ring.host(server).dir, 'home', domain, local, 'Maildir')
      const messages = files(path.join(dir, 'cur')) + files(path.join(dir, 'new'))
      if (messages !== u.messages)
        problems.push(`${u.user} on ${server}: ${messages} of ${u.messages} messages`)
      let header = ''
      try {
        header = fs.readFileSync(path.join(dir, 'dovecot-uidlist'), 'utf8').split('\n')[0] ?? ''
      } catch {
        // no uidlist: reported below
      }
      const v = / V(\d+)/.exec(header)?.[1]
      const g = / G([0-9a-f]+)/.exec(header)?.[1]
      if (v === undefined || g === undefined)
        problems.push(`${u.user} on ${server}: no INBOX identity on disk`)
      else identities.add(`${v}/${g}`)
    }
    if (identities.size > 1) problems.push(`${u.user}: INBOX UIDVALIDITY or GUID differ between copies`)
  }
  return problems
}

/**
 * The peer of mailring's CPU per user: one bare doveadm request (a user lookup, as the probe before each
 * run), one after the other, through HttpDoveadm and through a bare node:http request with the same body.
 */
async function bareRequests(
  ring: RingCluster,
): Promise<{clientCpuMs: number; httpCpuMs: number; wallMs: number; perRequest: number}> {
  const host = ring.host(SERVERS[0]!)
  const command = userLookupCommand('mailring-probe@invalid')
  const doveadm = new HttpDoveadm({
    name: SERVERS[0]!,
    host: host.ip,
    port: host.httpPort,
    password: ring.doveadmPassword,
  })
  const body = JSON.stringify([httpRequestEntry(command, 'c0')])
  const headers = {
    Authorization: 'Basic ' + Buffer.from(`doveadm:${ring.doveadmPassword}`).toString('base64'),
    'Content-Type': 'application/json',
    'Content-Length': String(Buffer.byteLength(body)),
  }
  const plain = () =>
    new Promise<void>((resolve, reject) => {
      const request = http.request(
        {host: host.ip, port: host.httpPort, path: '/doveadm/v1', method: 'POST', headers},
        (response) => {
          response.resume()
          response.on('end', () => (response.statusCode === 200 ? resolve() : reject(new Error('not 200'))))
        },
      )
      request.on('error', reject)
      request.end(body)
    })
  const cpuOf = async (one: () => Promise<unknown>) => {
    await one()
    collectGarbage()
    const cpuBefore = ownCpuMs()
    const started = performance.now()
    for (let i = 0; i < BARE_REQUESTS; i++) await one()
    return {
      cpuMs: (ownCpuMs() - cpuBefore) / BARE_REQUESTS,
      wallMs: (performance.now() - started) / BARE_REQUESTS,
    }
  }
  const before = doveadmHttpCounters().requests
  const viaClient = await cpuOf(() => doveadm.run(command))
  const perRequest = (doveadmHttpCounters().requests - before) / (BARE_REQUESTS + 1)
  const viaHttp = await cpuOf(plain)
  return {clientCpuMs: viaClient.cpuMs, httpCpuMs: viaHttp.cpuMs, wallMs: viaClient.wallMs, perRequest}
}

function cpuText(value: number): string {
  return Number.isFinite(value) ? `${value.toFixed(2)} ms` : '-'
}

async function runSyncBench(): Promise<void> {
  const users = benchUsers(DOMAIN, USERS)
  const warm = benchUsers(WARM_DOMAIN, WARM_USERS)
  // The first sync with --parallel 1: the first tenth; with --parallel 8: the rest. The in-sync sample: users
  // 0 and 7 of every 20 (both message counts, every first copy, every filled copy).
  const serialFirst = (user: string) => Number(user.slice(1, 5)) < USERS / SERIAL_SHARE
  const sample = (user: string) => [0, 7].includes(Number(user.slice(1, 5)) % 20)
  const sampleSize = users.filter((u) => sample(u.user)).length
  const setupStarted = performance.now()
  const ring = await startRingCluster({
    servers: SERVERS,
    users: [...users, ...warm].map((u): [string, string[]] => [u.user, u.copies]),
    copies: COPIES,
  })
  let store: SqliteStore | undefined
  try {
    await fill(ring, [...users, ...warm])
    store = await SqliteStore.open(ring.dbPath)
    const first = ring.host(SERVERS[0]!)
    const base = await contextFor(
      store,
      {kind: 'sqlite', path: ring.dbPath, source: 'bench'},
      {doveadmPort: first.doveadmPort},
    )
    // As the config file of the ring would say: the HTTP API on one port everywhere, the password in the
    // environment, everything else at its default (doveadm.per_server 4, 3 retries).
    const ctx: DovecotContext = {
      ...base,
      doveadm: {...base.doveadm, transport: 'http', httpPort: first.httpPort},
      env: {[DOVEADM_PASSWORD_ENV]: ring.doveadmPassword},
    }
    const setupMs = performance.now() - setupStarted
    const all = () => true

    const warmRun = await measure(ring, 'warm-up', PARALLEL, syncRun(ctx, WARM_DOMAIN, PARALLEL, all))
    const bare = await bareRequests(ring)
    const firstSerial = await measure(ring, 'first sync', 1, syncRun(ctx, DOMAIN, 1, serialFirst))
    const firstParallel = await measure(
      ring,
      'first sync',
      PARALLEL,
      syncRun(ctx, DOMAIN, PARALLEL, (u) => !serialFirst(u)),
    )
    const problems = checkOnDisk(ring, users)
    const settle = await measure(ring, 'second sync', PARALLEL, syncRun(ctx, DOMAIN, PARALLEL, sample))
    const againSerial = await measure(ring, 'in sync', 1, syncRun(ctx, DOMAIN, 1, sample))
    const againParallel = await measure(ring, 'in sync', PARALLEL, syncRun(ctx, DOMAIN, PARALLEL, sample))
    const domainUsers = (await selectDomains(store, [DOMAIN])).targets
    const verified = await measure(ring, 'verify --all', PARALLEL, verifyRun(ctx, domainUsers))

    // Right results: nothing failed or partial anywhere; every user of the first syncs synced (it had mail on
    // one copy only); nothing to do in the in-sync runs; verify finds every user's copies in agreement.
    const syncs: (Measured & {summary: SyncSummary})[] = [
      warmRun,
      firstSerial,
      firstParallel,
      settle,
      againSerial,
      againParallel,
    ]
    for (const r of syncs)
      if (r.summary.failed > 0 || r.summary.partial > 0)
        problems.push(
          `${r.label}, --parallel ${r.parallel}: ${r.summary.failed} failed, ${r.summary.partial} partial`,
        )
    for (const r of [firstSerial, firstParallel])
      if (r.summary.synced !== r.users)
        problems.push(`first sync, --parallel ${r.parallel}: ${r.summary.synced} of ${r.users} synced`)
    for (const r of [againSerial, againParallel])
      if (r.summary.inSync !== r.users)
        problems.push(`in sync, --parallel ${r.parallel}: ${r.summary.inSync} of ${r.users} already in sync`)
    if (firstSerial.users + firstParallel.users !== USERS || againSerial.users !== sampleSize)
      problems.push('the runs did not select the users meant')
    const vs: VerifySummary = verified.summary
    if (vs.users !== USERS || vs.agree !== USERS)
      problems.push(`verify: ${vs.agree} of ${USERS} agree, ${vs.differ} differ, ${vs.unchecked} unchecked`)
    const right = problems.length === 0

    const cpuTarget = `<= ${CPU_TARGET_MS} ms`
    // "mailring's own time per user beyond the doveadm calls": the run's time during which no doveadm
    // request was waiting for its answer (store, planning the syncs, comparing states, building and
    // parsing requests). Exact with --parallel 1, where one user is worked on at a time; with --parallel 8
    // other users' requests hide some of it, so only --parallel 1 is held to the target.
    const ownMsPerUser = (r: Measured) => (r.ms - r.waitMs) / r.users
    const syncRow = (r: Measured & {summary: SyncSummary}, peer?: Measured, target = true): string[] => {
      const serial = r.parallel === 1
      const cpuPerUser = ownMsPerUser(r)
      const requestsPerUser = r.requests / r.users
      return [
        `${r.label}, --parallel ${r.parallel}`,
        count(r.users),
        seconds(r.ms),
        (r.users / (r.ms / 1000)).toFixed(1),
        peer ? times(peer.ms / peer.users / (r.ms / r.users)) : '',
        requestsPerUser.toFixed(1),
        `${r.summary.synced}/${r.summary.inSync}/${r.summary.partial}/${r.summary.failed}`,
        cpuText(r.cpuMs / r.users),
        serial ? cpuText(cpuPerUser) : '',
        cpuText(r.dovecotCpuMs / r.users),
        target && serial ? cpuTarget : '',
        target && serial
          ? checkTarget(
              SUITE,
              `mailring's own time per user beyond the doveadm calls, ${r.label}, --parallel 1`,
              cpuText(cpuPerUser),
              cpuTarget,
              cpuPerUser <= CPU_TARGET_MS,
            )
          : '',
      ]
    }
    const verifyTarget = `< ${VERIFY_TARGET_MS / 1000} s`
    const cores = os.cpus().length
    const cpuBound = (r: Measured) => (r.cpuMs + r.dovecotCpuMs) / cores
    const dovecotPerRequest = (r: Measured) => r.dovecotCpuMs / r.requests
    printTable(
      `sync of ${count(USERS)} small mailboxes (1-2 messages), R = ${COPIES}, on ${SERVERS.length} Dovecot 2.3 servers over the doveadm HTTP API`,
      [
        'run',
        'users',
        'time',
        'users/s',
        'speed-up',
        'requests/user',
        'synced/in-sync/partial/failed',
        'mailring CPU/user',
        'own time/user beyond doveadm',
        'Dovecot CPU/user',
        'target',
        'result',
      ],
      [
        syncRow(firstSerial),
        syncRow(firstParallel, firstSerial),
        syncRow(settle, undefined, false),
        syncRow(againSerial),
        syncRow(againParallel, againSerial),
        [
          `verify --all, --parallel ${PARALLEL}`,
          count(verified.users),
          seconds(verified.ms),
          (verified.users / (verified.ms / 1000)).toFixed(1),
          '',
          (verified.requests / verified.users).toFixed(1),
          `${vs.agree} agree, ${vs.differ} differ, ${vs.unchecked} unchecked`,
          cpuText(verified.cpuMs / verified.users),
          '',
          cpuText(verified.dovecotCpuMs / verified.users),
          verifyTarget,
          checkTarget(
            SUITE,
            `verify --all, ${count(USERS)} users`,
            seconds(verified.ms),
            verifyTarget,
            verified.ms < VERIFY_TARGET_MS,
          ),
        ],
        [
          'results right',
          '',
          '',
          '',
          '',
          '',
          '',
          '',
          '',
          '',
          'failed = partial = 0, copies agree',
          checkTarget(SUITE, 'failed = partial = 0, copies agree', right ? 'yes' : 'no', 'yes', right),
        ],
      ],
      [
        ...problems.slice(0, 10).map((p) => `PROBLEM: ${p}`),
        ...(problems.length > 10 ? [`PROBLEM: ... and ${problems.length - 10} more`] : []),
        'each run is the engine of `mailring sync-domain` called in process (the domain read from the store, ' +
          'then syncUsers; doveadm.per_server 4): the first syncs on two disjoint sets of fresh users (mail on ' +
          `one copy, the other two never opened; 1 in ${SERIAL_SHARE} with --parallel 1, the rest with ` +
          `--parallel ${PARALLEL}), then a sample of ${count(sampleSize)} users synced a second time, and again ` +
          'twice once in sync. speed-up: users/s against --parallel 1 on the same kind of state, same run.',
        'mailring CPU/user: user + system CPU of this Node process over the run (store, HTTP requests, JSON, ' +
          'state comparison, GC) per user: everything but waiting for doveadm. The Dovecot servers are ' +
          'separate processes and not in it; their CPU (masters, services, reaped children, from /proc) is ' +
          '"Dovecot CPU/user".',
        `the HTTP client: one bare doveadm request (a user lookup, ${BARE_REQUESTS} one after the other) costs ` +
          `this process ${cpuText(bare.clientCpuMs)} CPU through HttpDoveadm (${bare.perRequest.toFixed(2)} ` +
          `HTTP requests each) and ${cpuText(bare.httpCpuMs)} as a bare node:http request, ${cpuText(bare.wallMs)} ` +
          'wall; Dovecot answers Connection: close, so every request is a new TCP connection. "own time/user ' +
          'beyond doveadm" (the target): with --parallel 1, the run\'s time less the time spent waiting for ' +
          "doveadm's answers, per user: what mailring adds to the doveadm calls.",
        `Dovecot CPU per doveadm request: ${cpuText(dovecotPerRequest(firstParallel))} in the first sync, ` +
          `${cpuText(dovecotPerRequest(againParallel))} in sync (every request starts a doveadm-server process: ` +
          'service doveadm has service_count = 1 by default; a sync runs one on each side).',
        `what bounds the speed-up here: ${cores} cores shared by the 3 Dovecots and mailring, on loopback with ` +
          'no network latency to overlap. The CPU used (mailring + Dovecot) alone bounds --parallel ' +
          `${PARALLEL} at ${seconds(cpuBound(firstParallel))} for its first sync and ` +
          `${seconds(cpuBound(againParallel))} in sync, i.e. a speed-up of at most ` +
          `${times((firstSerial.ms / firstSerial.users) * (firstParallel.users / cpuBound(firstParallel)))} and ` +
          `${times((againSerial.ms / againSerial.users) * (againParallel.users / cpuBound(againParallel)))}. ` +
          'Over a network each doveadm call also waits on round trips and remote disks, which parallel runs overlap.',
        `second sync: ${settle.summary.synced} of ${settle.users} users reported "synced" again right after their ` +
          'first sync (after a first sync that brought 2 messages, one copy keeps a higher HIGHESTMODSEQ than ' +
          'the others until the next sync); the in-sync runs follow it.',
        `setup (3 Dovecots, ${count(USERS + WARM_USERS)} users, ` +
          `${count([...users, ...warm].reduce((s, u) => s + u.messages, 0))} messages over LMTP): ` +
          `${seconds(setupMs)}; warm-up (${WARM_USERS} other users synced first, not counted): ${seconds(warmRun.ms)}.`,
      ],
    )
  } catch (error) {
    // A run that throws instead of reporting its users: FAIL, with what the servers logged, and the other
    // suites still run.
    console.log('')
    console.log(`sync: FAILED: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}`)
    for (const [name, host] of ring.hosts) {
      const lines = host
        .readLog()
        .split('\n')
        .filter((line) => /Error|Fatal|Panic|Warning/.test(line))
      console.log(`${name}: ${lines.length} error lines in the Dovecot log; the last ones:`)
      for (const line of lines.slice(-8)) console.log(`  ${line}`)
    }
    checkTarget(SUITE, 'runs complete', 'no', 'yes', false)
  } finally {
    await store?.close()
    await ring.stop()
  }
}

export const syncBench = {
  name: SUITE,
  description: `sync-domain of ${count(USERS)} small mailboxes, R = ${COPIES}, on 3 real Dovecots: --parallel ${PARALLEL} against --parallel 1; verify --all`,
  run: runSyncBench,
}
