/**
 * Rebalance benchmark: `mailring rebalance` (the engine behind it: runRebalance over a DoveadmFleet) moving
 * small mailboxes onto an added server, on five real Dovecot 2.3 servers (test/support/ring-cluster.ts: each on
 * its own 127.0.0.N, configured by mailring's rendered SQL over a SQLite store, doveadm through its HTTP
 * API, an sshd on each address for retiring old copies), R = 2. The users start where the ring of the first
 * four puts them, each with one message on both copies; the fifth server is in the topology, so the plan
 * moves about a fifth of all copies onto it.
 *
 * Runs, each on moves of its own (--max-moves): --parallel 1 and --parallel 8 with no latency, then the
 * same with 5 ms and 25 ms one way between mailring and every server's doveadm (a TCP relay in front of
 * each HTTP API port, in a child process, modelling the TCP handshake of each request's new connection:
 * servers in another room, in another data centre). Per run: moves/s, doveadm requests per move, mailring's own time per
 * move beyond the doveadm and SSH calls (--parallel 1: the run less the time waiting for them), mailring's
 * CPU per move, and the Dovecot servers' CPU per move. The run must end with no failed move, no open move
 * in the journal, and every moved user's new copies in agreement (verify), or the suite reports FAIL.
 * The wait before retiring (--retire-after) is 0: it is a safety margin, not work.
 *
 * BENCH_REBALANCE_USERS (default 1,000) sets the users; about 2 x users / 5 moves are available.
 */
import * as os from 'node:os'

import {loadDovecotContext, type DovecotContext} from '../src/engine/context.js'
import {DoveadmFleet} from '../src/engine/sync/fleet.js'
import {fleetMoves, runRebalance, type RebalanceRunResult} from '../src/engine/rebalance/run.js'
import {syncUsers} from '../src/engine/sync/sync.js'
import {verifyUsers} from '../src/engine/sync/verify.js'
import {Placement} from '../src/core/placement.js'
import {PLACEMENT_ALGORITHM_VERSION} from '../src/core/topology.js'
import {doveadmHttpCounters} from '../src/remote/doveadm-http.js'
import type {SshConnection} from '../src/remote/ssh.js'
import {SqliteStore} from '../src/store/sqlite.js'
import {startRingCluster, type RingCluster} from '../test/support/ring-cluster.js'
import {DOVEADM_REUSE_CONFIG, DOVEADM_REUSE_NOTE} from './doveadm-reuse.js'
import {lmtpDeliver} from '../test/support/mailclients.js'
import {startRelayProcess, type RelayProcess} from './latency-relay.js'
import {collectGarbage, dovecotCpuMs, ownCpuMs} from './measure.js'
import {checkTarget, count, printTable, seconds, times} from './report.js'

const SUITE = 'rebalance'
const OLD_SERVERS = ['mx-a', 'mx-b', 'mx-c', 'mx-d']
const SERVERS = [...OLD_SERVERS, 'mx-e']
const COPIES = 2
const USERS = Number(process.env.BENCH_REBALANCE_USERS ?? 1_000)
const DOMAIN = 'bench.example'
const PARALLEL = 8
/** Moves per run: the warm-up, and each --parallel 1 and --parallel 8 run. */
const WARM_MOVES = 16
const SERIAL_MOVES = 24
const PARALLEL_MOVES = 96
const LATENCIES_MS = [0, 5, 25]
const OVERHEAD_TARGET_MS = 50
const SPEEDUP_TARGET = 3

/** A fleet that adds up the time its SSH commands take (the retire step), beside doveadm's counters. */
class TimedFleet extends DoveadmFleet {
  sshMs = 0
  private readonly timed = new WeakSet<SshConnection>()

  override async ssh(name: string): Promise<SshConnection> {
    const connection = await super.ssh(name)
    if (!this.timed.has(connection)) {
      this.timed.add(connection)
      const exec = connection.exec.bind(connection)
      connection.exec = async (...args: Parameters<SshConnection['exec']>) => {
        const started = performance.now()
        try {
          return await exec(...args)
        } finally {
          this.sshMs += performance.now() - started
        }
      }
    }
    return connection
  }
}

interface Measured {
  label: string
  latencyMs: number
  parallel: number
  moves: number
  ms: number
  waitMs: number
  sshMs: number
  requests: number
  cpuMs: number
  dovecotCpuMs: number
  run: RebalanceRunResult
}

async function measure(
  ring: RingCluster,
  store: SqliteStore,
  ctx: DovecotContext,
  label: string,
  latencyMs: number,
  parallel: number,
  maxMoves: number,
): Promise<Measured> {
  const fleet = new TimedFleet(ctx, {perServer: 16})
  collectGarbage()
  const dovecotBefore = dovecotCpuMs(ring)
  const counters = doveadmHttpCounters()
  const cpuBefore = ownCpuMs()
  const started = performance.now()
  let run: RebalanceRunResult
  try {
    run = await runRebalance(fleetMoves(fleet, store), store, {
      parallel,
      perServer: PARALLEL,
      maxMoves,
      retireAfterMs: 0,
    })
  } finally {
    await fleet.close()
  }
  const ms = performance.now() - started
  return {
    label,
    latencyMs,
    parallel,
    moves: run.summary.moved,
    ms,
    waitMs: doveadmHttpCounters().waitMs - counters.waitMs,
    sshMs: fleet.sshMs,
    requests: doveadmHttpCounters().requests - counters.requests,
    cpuMs: ownCpuMs() - cpuBefore,
    dovecotCpuMs: dovecotCpuMs(ring) - dovecotBefore,
    run,
  }
}

function message(n: number): string {
  return `From: sender@example.net\r\nSubject: bench ${n}\r\nMessage-ID: <rebalance-${n}-${process.pid}@example.net>\r\n\r\nA small mailbox.\r\n`
}

async function runRebalanceBench(): Promise<void> {
  const placement = new Placement({
    algorithm: PLACEMENT_ALGORITHM_VERSION,
    copies: COPIES,
    servers: OLD_SERVERS.map((name) => ({name, address: '', weight: 1, state: 'active'})),
    domains: [],
  })
  const users = Array.from({length: USERS}, (_, i) => `u${String(i).padStart(5, '0')}@${DOMAIN}`)
  const setupStarted = performance.now()
  const ring = await startRingCluster({
    servers: SERVERS,
    users: users.map((u): [string, string[]] => [u, placement.serversFor(u)]),
    copies: COPIES,
    ssh: true,
    extraConfig: DOVEADM_REUSE_CONFIG,
  })
  const relays: RelayProcess[] = []
  let store: SqliteStore | undefined
  try {
    // One message on each user's first copy (50 recipients per LMTP transaction), then synced to the second.
    for (const server of OLD_SERVERS) {
      const mine = users.filter((u) => placement.serversFor(u)[0] === server)
      const host = ring.host(server)
      for (let i = 0; i < mine.length; i += 50)
        await lmtpDeliver(host.ip, host.lmtpPort, {
          to: mine.slice(i, i + 50),
          message: message(i),
          timeoutMs: 120_000,
        })
    }
    store = await SqliteStore.open(ring.dbPath)
    const location = {kind: 'sqlite' as const, path: ring.dbPath, source: 'bench'}
    const base = await loadDovecotContext({store, location, config: ring.configPath, env: {}})
    const setupFleet = new DoveadmFleet(base, {perServer: 16})
    const synced = await syncUsers(
      setupFleet,
      users.map((u) => ({user: u, copies: placement.serversFor(u)})),
      {parallel: PARALLEL},
    )
    await setupFleet.close()
    if (synced.summary.failed + synced.summary.partial > 0) throw new Error('the setup sync failed')
    const setupMs = performance.now() - setupStarted

    // The relays run in a child process (their CPU and timers are not mailring's), and model the TCP
    // handshake: every doveadm HTTP request is a new connection (Dovecot answers Connection: close).
    const withLatency = async (latencyMs: number): Promise<DovecotContext> => {
      if (latencyMs === 0) return base
      const hosts = SERVERS.map((server) => ring.host(server))
      const relay = await startRelayProcess(
        hosts.map((host) => ({
          host: host.ip,
          targetPort: host.httpPort,
          oneWayMs: latencyMs,
          tcpHandshake: true,
        })),
      )
      relays.push(relay)
      const httpPorts = Object.fromEntries(SERVERS.map((server, i) => [server, relay.ports[i]!]))
      return {...base, doveadm: {...base.doveadm, httpPorts}}
    }
    await measure(ring, store, base, 'warm-up', 0, PARALLEL, WARM_MOVES)
    const runs: Measured[] = []
    for (const latency of LATENCIES_MS) {
      const ctx = await withLatency(latency)
      runs.push(await measure(ring, store, ctx, 'moves', latency, 1, SERIAL_MOVES))
      runs.push(await measure(ring, store, ctx, 'moves', latency, PARALLEL, PARALLEL_MOVES))
    }

    // Right results: every run moved what it was given, none failed, the journal is empty, and every moved
    // user's copies agree and hold its message.
    const problems: string[] = []
    for (const r of runs) {
      const want = r.parallel === 1 ? SERIAL_MOVES : PARALLEL_MOVES
      if (r.moves !== want || r.run.summary.failed > 0)
        problems.push(
          `${r.latencyMs} ms, --parallel ${r.parallel}: ${r.moves} of ${want} moved, ${r.run.summary.failed} failed`,
        )
    }
    const open = await store.openMoves()
    if (open.length > 0) problems.push(`${open.length} moves still open in the journal`)
    const moved = [...new Set(runs.flatMap((r) => r.run.moves.map((m) => m.user)))]
    const records = await Promise.all(moved.map((u) => store!.getUser(u)))
    const verifyFleet = new DoveadmFleet(base, {perServer: 16})
    const verified = await verifyUsers(
      verifyFleet,
      records.map((r) => ({user: r!.user, copies: r!.copies})),
      {parallel: PARALLEL},
    )
    await verifyFleet.close()
    if (verified.summary.agree !== moved.length)
      problems.push(`verify: ${verified.summary.agree} of ${moved.length} moved users agree`)
    if (verified.results.some((r) => r.messages < 1)) problems.push('a moved user has no message')
    if (!records.every((r) => r!.copies.includes('mx-e'))) problems.push('a moved user is not on mx-e')
    const right = problems.length === 0

    const perMove = (value: number, r: Measured) => value / Math.max(1, r.moves)
    const ownMs = (r: Measured) => perMove(r.ms - r.waitMs - r.sshMs, r)
    const rate = (r: Measured) => r.moves / (r.ms / 1000)
    const rows = runs.map((r) => {
      const serial = runs.find((s) => s.latencyMs === r.latencyMs && s.parallel === 1)!
      const speedup = rate(r) / rate(serial)
      return [
        `${r.latencyMs} ms one way, --parallel ${r.parallel}`,
        count(r.moves),
        seconds(r.ms),
        rate(r).toFixed(2),
        r.parallel === 1 ? '1.00x' : times(speedup),
        (r.requests / Math.max(1, r.moves)).toFixed(1),
        `${perMove(r.sshMs, r).toFixed(1)} ms`,
        r.parallel === 1 ? `${ownMs(r).toFixed(1)} ms` : '-',
        `${perMove(r.cpuMs, r).toFixed(1)} ms`,
        `${perMove(r.dovecotCpuMs, r).toFixed(0)} ms`,
        r.parallel === 1 && r.latencyMs === 0
          ? checkTarget(
              SUITE,
              'own time per move beyond doveadm and SSH',
              `${ownMs(r).toFixed(1)} ms`,
              `<= ${OVERHEAD_TARGET_MS} ms`,
              right && ownMs(r) <= OVERHEAD_TARGET_MS,
            )
          : r.parallel > 1
            ? checkTarget(
                SUITE,
                `--parallel ${r.parallel} vs 1 at ${r.latencyMs} ms`,
                times(speedup),
                `>= ${SPEEDUP_TARGET}x`,
                right && speedup >= SPEEDUP_TARGET,
              )
            : '',
      ]
    })
    printTable(
      `${count(USERS)} users, R = ${COPIES}, moves onto an added fifth server (setup ${seconds(setupMs)})`,
      [
        'run',
        'moves',
        'time',
        'moves/s',
        'vs --parallel 1',
        'doveadm requests/move',
        'SSH/move',
        'own time/move',
        'mailring CPU/move',
        'Dovecot CPU/move',
        'target',
      ],
      rows,
      [
        `CPU ceiling on this machine: ${os.cpus().length} cores / (Dovecot + mailring CPU per move) = ${ceiling(runs).toFixed(2)} moves/s, whatever --parallel; --parallel 1 at 0 ms already keeps about one core busy, so no parallelism can give more than about ${(ceiling(runs) / rate(runs[0]!)).toFixed(1)}x there. Latency is what parallel moves hide.`,
        right
          ? 'Right results: every move done, journal empty, every moved user verified on its new copies.'
          : `FAIL: ${problems.join('; ')}`,
        "own time/move: the --parallel 1 run's time with no doveadm request and no SSH command waiting (store, planning, journal, comparing), per move.",
        'Dovecot CPU/move: every move syncs, verifies, catches up and retires: the two cores are the bound at 0 ms; with latency, round trips are, and parallel moves overlap them.',
        DOVEADM_REUSE_NOTE,
      ],
    )
  } finally {
    for (const relay of relays) await relay.close()
    await store?.close()
    await ring.stop()
  }
}

/** Moves per second that the machine's cores allow, from the CPU the --parallel 8 run at 0 ms spent per move. */
function ceiling(runs: readonly Measured[]): number {
  const r = runs.find((x) => x.latencyMs === 0 && x.parallel > 1)!
  return (os.cpus().length * 1000) / ((r.dovecotCpuMs + r.cpuMs) / Math.max(1, r.moves))
}

export const rebalanceBench = {
  name: SUITE,
  description:
    'rebalance moves on five real Dovecot servers: own time per move, --parallel 8 against 1, at 0 and 5 ms',
  run: runRebalanceBench,
}
