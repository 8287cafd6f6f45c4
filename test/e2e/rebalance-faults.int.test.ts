/**
 * Fault injection for `mailring rebalance` on real servers, once on each store: four Dovecot 2.3 configured
 * by mailring over the MySQL store on a real MariaDB (Dovecot's userdb reads it as its own read-only
 * database user), then over the SQLite store; an sshd on each server's address, mail delivered over LMTP
 * all along, quickly and slowly (each slow message held 0.5-4 s before its final dot: in flight while its
 * user's move switches and retires the copy it was routed to). Rounds cycle through raising the domain's copy count to 3 (a copy added for every user),
 * lowering it back to 2 (a copy dropped), draining a server and bringing it back, so that every round has
 * moves; in each round the built CLI runs rebalance several times with one fault each, at a random moment
 * (each kind a third of the time):
 *   - kill -9 of mailring;
 *   - a Dovecot stopped (`doveadm stop`) and started again a moment later: the target, the source or
 *     another copy of the moves in flight, whichever it is;
 *   - the store taken away:
 *     - MariaDB: every connection of mailring's database user killed (`KILL CONNECTION` for each of its
 *       rows in information_schema.PROCESSLIST), the one holding the cluster lock too; once (30%), or
 *       every 100 ms (each new connection killed as soon as it shows) for 0.5-4 s (35%) or for 15 s
 *       (15%: longer than any retry or connect timeout of mailring's). Only mailring's database user is
 *       hit: Dovecot's userdb connections and the test's own reader use other users, so delivery goes on.
 *       Or (20%) MariaDB itself restarted (SIGTERM, down 0-3 s, started again): every connection drops,
 *       Dovecot's too, and new ones are refused meanwhile;
 *     - SQLite: another process holds the write lock, 0.5-4 s or 16 s (longer than mailring's busy
 *       timeout): the SQLite counterpart of a dropped database connection.
 * A run may end done (0), with moves failed (1) or left (2), on a store error (4), or on MariaDB, once its
 * lock connection was killed, with the lost cluster lock (3, `Lost the cluster lock`); never with a stack
 * trace or an error mailring did not expect, never hanging. Then runs without faults finish the round.
 * After every round the journal is empty and every user has its R copies where the ring puts them; at the
 * end, every delivered message is on every current copy of its user (read over IMAP, after `sync domain`,
 * which stands in for the replicator for users that did not move), and `verify --all` agrees.
 *
 * A third run puts the SQLite store under Dovecot 2.4.1 servers (no replication of their own; where the
 * test bed's 2.4 root exists, always on CI).
 * MAILRING_FAULT_POINTS (default 50) sets the number of faults on MariaDB, MAILRING_FAULT_POINTS_SQLITE
 * (default 15) on SQLite, MAILRING_FAULT_POINTS_24 (default 10) on 2.4, MAILRING_FAULT_SEED the random seed of all (default DEFAULT_SEED below; `random` draws one; printed: the
 * same seed gives the same faults at the same moments; the deliveries are not seeded). The test prints each store's faults with how
 * each run ended. `-t MariaDB` or `-t SQLite` runs one store; `npm run soak` runs 300 on each, with a new seed.
 */
import {execFileSync} from 'node:child_process'
import * as fs from 'node:fs'
import * as path from 'node:path'

import Database from 'better-sqlite3'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'

import type {RebalanceStatusResult} from '../../src/commands/rebalance/status.js'
import {MysqlStore} from '../../src/store/mysql.js'
import type {Store} from '../../src/store/store.js'
import {settingsFor} from '../support/mysql-databases.js'
import {dovecot24Missing, type DovecotVersion} from '../support/dovecot24.js'
import {lmtpDeliver} from '../support/mailclients.js'
import {startMariaDb, type MariaDb} from '../support/mariadb.js'
import {startCli, type CliResult, type JsonEnvelope} from '../support/cli.js'
import {startRingCluster, type RingCluster} from '../support/ring-cluster.js'
import {randomness, seedFrom, type Randomness} from '../support/seeded.js'

/** The seed of the default run: the same faults at the same moments every time (`npm run soak` draws one). */
const DEFAULT_SEED = 1_804_289_383
/** MAILRING_FAULT_SEED replays a run; `random` draws a new seed (printed with the results). */
const SEED = seedFrom('MAILRING_FAULT_SEED', DEFAULT_SEED)

const FAULTS_PER_ROUND = 5
const SERVERS = ['mx-a', 'mx-b', 'mx-c', 'mx-d']
const USERS = Array.from({length: 24}, (_, i) => `u${String(i + 1).padStart(2, '0')}@example.com`)
const COPIES = 2

/** What each round changes, in turn: the copy count first, so that a short run (10 faults) covers it. */
const ROUNDS = [
  {args: ['domain', 'set', 'example.com', '--copies', '3'], copies: 3},
  {args: ['domain', 'set', 'example.com', '--copies', 'default'], copies: COPIES},
  {args: ['node', 'set', 'mx-d', '--state', 'draining'], copies: COPIES},
  {args: ['node', 'set', 'mx-d', '--state', 'active'], copies: COPIES},
]

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms))

/** A store under test: how the ring is started on it, how the test reads it, and how it is taken away. */
interface StoreUnderTest {
  name: string
  /** The number of faults. */
  points: number
  start(): Promise<RingCluster>
  /** A reader for the test's own lookups, which the store fault leaves alone. */
  reader(ring: RingCluster): Promise<Store>
  /** Takes the store away from mailring for a random while; says how. */
  fault(ring: RingCluster, random: Randomness): Promise<string>
  /** Whether a run that lost its store may end with the lost cluster lock (exit code 3). */
  losesLock: boolean
  stop(): Promise<void>
}

function startCluster(options: {mariadb?: MariaDb; version?: DovecotVersion} = {}): Promise<RingCluster> {
  return startRingCluster({
    servers: SERVERS,
    users: USERS.map((u, i) => [u, [SERVERS[i % 3]!, SERVERS[(i + 1) % 3]!]]),
    copies: COPIES,
    ssh: true,
    ...options,
  })
}

/** The SQLite store, with servers of the given Dovecot version. */
const sqliteStore = (version: DovecotVersion, points: number): StoreUnderTest => ({
  name: version === '2.3' ? 'SQLite' : `SQLite, Dovecot ${version}`,
  points,
  start: () => startCluster({version}),
  reader: (ring) => ring.openStore(),
  fault: async (ring, {rnd, between}) => {
    const hold = rnd() < 0.25 ? 16_000 : between(500, 4000) // 16 s: longer than mailring's busy timeout
    const db = new Database(ring.dbPath)
    db.exec('BEGIN IMMEDIATE')
    await sleep(hold)
    db.exec('COMMIT')
    db.close()
    return `store write-locked for ${hold.toFixed(0)} ms`
  },
  losesLock: false,
  stop: async () => {},
})

function mariadbStore(): StoreUnderTest {
  let maria: MariaDb | undefined
  return {
    name: 'MariaDB',
    points: Number(process.env.MAILRING_FAULT_POINTS ?? 50),
    start: async () => {
      maria = await startMariaDb()
      return startCluster({mariadb: maria})
    },
    reader: async (ring) => {
      const database = ring.mysql!.database
      const reader = await maria!.createUser('fault_test_reader', `SELECT ON \`${database}\`.*`)
      return MysqlStore.open(settingsFor(maria!, database, reader))
    },
    fault: async (ring, {rnd, between}) => {
      const user = ring.mysql!.user
      const mode = rnd()
      if (mode < 0.3) return `mailring's connections killed once (${await maria!.killConnections(user)})`
      if (mode >= 0.8) {
        const down = between(0, 3000)
        await maria!.restart(down)
        return `MariaDB restarted, down for ${down.toFixed(0)} ms`
      }
      const span = mode < 0.65 ? between(500, 4000) : 15_000
      let killed = 0
      const end = Date.now() + span
      while (Date.now() < end) {
        killed += await maria!.killConnections(user)
        await sleep(100)
      }
      return `mailring's connections killed every 100 ms for ${span.toFixed(0)} ms (${killed})`
    },
    losesLock: true,
    stop: async () => {
      await maria?.stop()
    },
  }
}

function faultRun(store: StoreUnderTest): void {
  const {pick, between, ...random} = randomness(SEED)
  const points = store.points
  let ring: RingCluster
  let reader: Store
  /** Every message accepted by LMTP, by user. */
  const delivered = new Map<string, string[]>(USERS.map((u) => [u, []]))
  /** Messages whose delivery failed from the client's side after it was sent: Dovecot may have kept them. */
  const uncertain = new Set<string>()
  let delivering = true
  let deliveries: Promise<void> | undefined
  const faults: string[] = []
  /** When the test began, for the times in the account of a lost message. */
  const origin = Date.now()
  const at = () => `${((Date.now() - origin) / 1000).toFixed(2)} s`
  /** Where and when each message was delivered: the account of a lost message quotes it. */
  const deliveredHow = new Map<string, string>()
  /** Each rebalance run: when it started and ended, and what it printed. */
  const runs: string[] = []

  /**
   * Delivers to a random user's primary copy (as the proxy would route it) until told to stop. `holdMs`:
   * each message is held that long before its final dot (a large message on a slow link), so that it is in
   * flight while its user's move switches and retires the copy it was routed to.
   */
  async function deliverAllAlong(prefix: string, holdMs?: () => number): Promise<void> {
    for (let n = 1; delivering; n++) {
      // Not seeded: how many messages go out depends on timing, and the faults must not.
      const user = USERS[Math.floor(Math.random() * USERS.length)]!
      try {
        const record = await reader.getUser(user)
        const primary = record?.copies[0]
        if (primary) {
          const subject = `${prefix}${n} ${user}`
          uncertain.add(subject)
          const start = at()
          const host = ring.host(primary)
          const hold = holdMs?.()
          await lmtpDeliver(host.ip, host.lmtpPort, {
            to: [user],
            message: `Subject: ${subject}\r\n\r\n${subject}\r\n`,
            ...(hold === undefined ? {} : {beforeEnd: () => sleep(hold)}),
          })
          uncertain.delete(subject)
          delivered.get(user)!.push(subject)
          deliveredHow.set(
            subject,
            `to ${primary} (copies ${record.copies.join(', ')}) from ${start} to ${at()}`,
          )
        }
      } catch {
        // Refused (the server is stopped, the store is locked): a sender tries again later; not counted.
      }
      await sleep(20 + Math.random() * 100)
    }
  }

  function rebalance(retireAfter = '1s') {
    const start = at()
    const run = startCli(
      ['rebalance', '--yes', '--retire-after', retireAfter, '--parallel', '4', '--json-lines'],
      {
        cwd: ring.dir,
        env: ring.env,
        timeoutMs: 180_000,
      },
    )
    void run.result.then((r) =>
      runs.push(`run ${start} to ${at()}: exit ${r.exitCode ?? r.signal}\n${r.stdout}${r.stderr}`),
    )
    return run
  }

  /**
   * Where a message missing from a user's copies went: when and where it was delivered, every file on any
   * server that holds it (a trash folder, a home left behind), the user's moves and the runs that touched it.
   */
  async function accountOf(user: string, missing: readonly string[]): Promise<string> {
    const lines = [`${user} lacks ${missing.join(', ')}`]
    for (const subject of missing) {
      lines.push(`${subject}: delivered ${deliveredHow.get(subject) ?? '(no record)'}`)
      for (const server of SERVERS) {
        let found = ''
        try {
          found = execFileSync('grep', ['-rlF', `Subject: ${subject}`, ring.host(server).dir], {
            encoding: 'utf8',
          })
        } catch {
          found = '' // grep exits 1 when nothing matches
        }
        for (const file of found.split('\n').filter(Boolean)) lines.push(`  on ${server}: ${file}`)
      }
    }
    const moves = (await reader.retiredMoves(new Date(Date.now() + 86_400_000).toISOString())).filter(
      (m) => m.user === user,
    )
    for (const m of moves)
      lines.push(
        `move ${m.id} ${m.from ?? '-'} -> ${m.to ?? '-'} ${m.state} at ${m.updatedAt} trash ${m.trash}`,
      )
    lines.push(
      ...runs
        .filter((r) => r.includes(user))
        .map((r) =>
          r
            .split('\n')
            .filter((l) => !l.startsWith('{') || l.includes(user))
            .join('\n'),
        ),
    )
    return lines.join('\n')
  }

  /**
   * What a run may end with: done, moves left or failed, the store unavailable, killed by the test, or
   * (where the store's fault can do that) the cluster lock lost with the store's connection.
   */
  function expectOrderlyEnd(r: CliResult, fault: string, storeFault = false): void {
    const how = `${fault}: exit ${r.exitCode} ${r.signal ?? ''}\n${r.stderr}`
    if (r.signal === 'SIGKILL') return
    const lockLost = storeFault && store.losesLock && /Lost the cluster lock/.test(r.stderr)
    expect(lockLost ? [0, 1, 2, 3, 4] : [0, 1, 2, 4], how).toContain(r.exitCode)
    expect(r.stderr, how).not.toMatch(/TypeError|ReferenceError|at .*\.js:\d+/)
    // An error mailring did not expect (describeError's 'internal'): not a stack trace, but not orderly.
    expect(r.stderr, how).not.toContain('MAILRING_DEBUG=1 for details')
  }

  /** One run of rebalance with one fault at a random moment. */
  async function faultedRun(): Promise<void> {
    const kind = pick(['kill', 'kill', 'server', 'server', 'store', 'store'] as const)
    const delay = between(50, 2500)
    const run = rebalance()
    await sleep(delay)
    let fault = `${kind} after ${delay.toFixed(0)} ms`
    if (kind === 'kill') run.child.kill('SIGKILL')
    else if (kind === 'server') {
      const server = pick(SERVERS)
      const down = between(300, 3000)
      fault += `: ${server} stopped for ${down.toFixed(0)} ms`
      await ring.host(server).halt()
      await sleep(down)
      await ring.host(server).resume()
    } else fault += `: ${await store.fault(ring, {pick, between, ...random})}`
    const r = await run.result
    // The error a run ended with, or its first failed move's, shortened: what each fault did shows in the list.
    const error = (/^Error: (.*)/m.exec(r.stderr) ??
      /"error":"((?:[^"\\]|\\.)*)"/.exec(r.stdout))?.[1]?.slice(0, 100)
    faults.push(`${at()} ${fault} (exit ${r.exitCode ?? r.signal}${error ? `: ${error}` : ''})`)
    expectOrderlyEnd(r, fault, kind === 'store')
  }

  /** Runs without faults until one finishes every move (a failed move is retried by the next run). */
  async function finishRound(round: number): Promise<void> {
    for (let attempt = 1; ; attempt++) {
      const r = await rebalance('0s').result
      expectOrderlyEnd(r, `round ${round} clean run ${attempt}`)
      if (r.exitCode === 0) return
      if (attempt >= 6)
        throw new Error(
          `round ${round}: rebalance did not finish after ${attempt} runs:\n${r.stderr}${r.stdout
            .split('\n')
            .filter((l) => l.includes('"error"'))
            .join('\n')}`,
        )
    }
  }

  async function expectRoundSettled(round: number, copies: number): Promise<void> {
    const status = await ring.cli<JsonEnvelope<RebalanceStatusResult>>(['rebalance', 'status', '--json'])
    expect(status.json?.result?.moves, `round ${round}: open moves`).toEqual([])
    const plan = await ring.cli(['rebalance', '--dry-run', '--detailed-exitcode'])
    expect(plan.exitCode, `round ${round}: moves still pending\n${plan.stdout}`).toBe(0)
    for (const user of await reader.listUsers({limit: 1000})) {
      expect(user.copies, user.user).toHaveLength(copies)
      expect(new Set(user.copies).size, user.user).toBe(copies)
    }
  }

  describe(`rebalance under faults on ${store.name}`, () => {
    beforeAll(async () => {
      ring = await store.start()
      reader = await store.reader(ring)
      // Start where the ring puts everyone, on all four servers.
      // (A move that fails, e.g. on a server's slow start, is retried by the next run, as in every round.)
      await finishRound(0)
      // Quick deliveries, and slow ones (held 0.5-4 s) that are in flight across switches and retires.
      deliveries = Promise.all([
        deliverAllAlong('m'),
        deliverAllAlong('s', () => 500 + Math.random() * 3500),
      ]).then(() => undefined)
      console.log(
        `fault injection on ${store.name}: ${points} faults, seed ${SEED} (MAILRING_FAULT_SEED=${SEED} replays it)`,
      )
    }, 300_000)

    afterAll(async () => {
      delivering = false
      await deliveries
      await reader?.close()
      await ring?.stop()
      await store.stop()
    })

    it(
      `loses no message and ends every round settled, over ${points} random faults`,
      async () => {
        const started = Date.now()
        for (let round = 1; faults.length < points; round++) {
          const {args, copies} = ROUNDS[(round - 1) % ROUNDS.length]!
          const change = await ring.cli(args)
          expect(change.exitCode, change.stderr).toBe(0)
          for (let i = 0; i < FAULTS_PER_ROUND && faults.length < points; i++) await faultedRun()
          await finishRound(round)
          await expectRoundSettled(round, copies)
        }
        delivering = false
        await deliveries

        const synced = await ring.cli(['sync', 'domain', 'example.com'])
        expect(synced.exitCode, synced.stderr).toBe(0)
        let messages = 0
        for (const user of await reader.listUsers({limit: 1000})) {
          const expected = [...delivered.get(user.user)!].sort()
          messages += expected.length
          const boxes = await Promise.all(user.copies.map((server) => ring.mailbox(server, user.user)))
          const [first, ...others] = boxes.map((box) => box.map((m) => m.subject).sort())
          // Every accepted message, and besides them only messages whose delivery the client saw fail (the
          // server may have stored one before the connection broke); the copies agree.
          const lacking = expected.filter((m) => !first!.includes(m))
          if (lacking.length > 0) console.log(await accountOf(user.user, lacking))
          expect(
            first!.filter((m) => !uncertain.has(m)),
            `${user.user} on ${user.copies[0]}`,
          ).toEqual(expected)
          others.forEach((box, i) => expect(box, `${user.user} on ${user.copies[i + 1]}`).toEqual(first))
        }
        expect(messages).toBeGreaterThan(Math.min(50, points * 3))
        // No home on a server that is not one of its user's copies: such a home holds mail no copy sees (a
        // delivery that ended after its copy was retired, accepted and lost), and a move bringing the user
        // back would hide that. Where an old copy was, there is nothing, or the retire's fence.
        const strays: string[] = []
        for (const user of await reader.listUsers({limit: 1000}))
          for (const server of SERVERS.filter((s) => !user.copies.includes(s))) {
            const home = path.join(ring.host(server).dir, 'home', 'example.com', user.user.split('@')[0]!)
            if (fs.existsSync(home) && fs.statSync(home).isDirectory()) strays.push(`${server}: ${home}`)
          }
        expect(strays, 'homes left where a user has no copy').toEqual([])
        const verify = await ring.cli(['verify', '--all'])
        expect(verify.exitCode, verify.stdout + verify.stderr).toBe(0)
        console.log(
          `fault injection on ${store.name}: ${faults.length} faults, ${messages} messages, none lost, ${((Date.now() - started) / 1000).toFixed(0)} s (seed ${SEED})\n  ${faults.join('\n  ')}`,
        )
      },
      60 * 60_000,
    )
  })
}

faultRun(mariadbStore())
faultRun(sqliteStore('2.3', Number(process.env.MAILRING_FAULT_POINTS_SQLITE ?? 15)))
// Dovecot 2.4 (no replication of its own): the same faults on fewer points, where the root exists.
if (dovecot24Missing() === undefined || process.env.CI)
  faultRun(sqliteStore('2.4', Number(process.env.MAILRING_FAULT_POINTS_24 ?? 10)))
