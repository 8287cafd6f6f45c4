/**
 * Config push benchmark: `config push` (the engine behind it) to 20 servers, each a real OpenSSH sshd on
 * its own loopback address 127.0.0.N, one server at a time against --parallel 10, in the same run, at 0, 5
 * and 25 ms one way between mailring and every server (a latency relay in front of each sshd, the TCP
 * handshake modelled: bench/latency-relay.ts; servers in another room, in another data centre). Every
 * server's file differs before each run (so every server is written, chowned, "validated" and "reloaded";
 * doveconf and doveadm are `true` here, since no Dovecot runs), and each sshd's log is read to count the
 * SSH connections: one per server per run, however many steps.
 *
 * Per run: time, speed-up, SSH connections per server, mailring's own CPU per server push (user + system
 * time of this process; the relays run in a child process), the sshd servers' CPU, and round trips per
 * server push, two ways: turns counted in the relay (the client speaking again after hearing from the
 * server: an upper bound), and the time one at a time takes beyond the 0 ms run divided by the round trip
 * time (the round trips the push waits for, one after the other).
 */
import {spawnSync} from 'node:child_process'
import * as fs from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'

import {DEFAULT_DOVEADM_SETTINGS} from '../src/remote/doveadm-settings.js'
import {DEFAULT_DOVECOT_SETTINGS} from '../src/dovecot/settings.js'
import type {DovecotContext} from '../src/engine/context.js'
import {pushConfig} from '../src/engine/dovecot-config/push.js'
import {SqliteStore} from '../src/store/sqlite.js'
import {claimLoopbackIp, type LoopbackClaim} from '../test/support/ports.js'
import {makeTempDir, removeDir} from '../test/support/proc.js'
import {startSshd, type SshServer} from '../test/support/sshd.js'
import {startRelayProcess} from './latency-relay.js'
import {collectGarbage, ownCpuMs, wakeUpCost} from './measure.js'
import {checkTarget, printTable, seconds} from './report.js'

const SUITE = 'config-push'
const SERVERS = 20
const PARALLEL = 10
const USERS = 400
const TARGET_SPEEDUP = 5
const TARGET_CPU_MS = 20
const LATENCIES_MS = [0, 5, 25]

interface Run {
  oneWayMs: number
  parallel: number
  ms: number
  /** mailring's own CPU (this process). */
  cpuMs: number
  /** The sshd servers' CPU, with what they ran. */
  sshdCpuMs: number
  /** SSH connections per server (sshd logs) and connections per server through its relay. */
  connections: number[]
  relayed: number[]
  /** Turns per server, counted by its relay. */
  turns: number[]
}

/**
 * The test sshd servers' own options: `-r` (no re-exec of sshd for every connection) where OpenSSH still has
 * it (before 9.8, which split sshd into sshd and sshd-session). The re-exec is sshd's own per-connection CPU,
 * not mailring's; on 2 loopback cores it cut the CPU per server of --parallel 10 by about an eighth.
 */
function sshdOptions(): {extraArgs?: string[]} {
  const version = spawnSync('/usr/sbin/sshd', ['-V'], {encoding: 'utf8'})
  const match = /OpenSSH_(\d+)\.(\d+)/.exec(`${version.stderr ?? ''}${version.stdout ?? ''}`)
  if (!match) return {}
  const [major, minor] = [Number(match[1]), Number(match[2])]
  return major < 9 || (major === 9 && minor < 8) ? {extraArgs: ['-r']} : {}
}

/**
 * CPU time (user + system) in ms of the sshd servers and everything they ran (their finished children count
 * through cutime/cstime). Linux only; 0 elsewhere.
 */
function serversCpuMs(servers: SshServer[]): number {
  let ticks = 0
  for (const server of servers) {
    try {
      const stat = fs.readFileSync(`/proc/${server.pid}/stat`, 'utf8')
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
      // fields[0] is field 3 (state): utime, stime, cutime, cstime are fields 14..17.
      for (let i = 11; i <= 14; i++) ticks += Number(fields[i])
    } catch {
      // not on Linux
    }
  }
  return (ticks * 1000) / 100 // USER_HZ = 100 on Linux
}

function accepted(server: SshServer): number {
  return (fs.readFileSync(server.logPath, 'utf8').match(/Accepted publickey for /g) ?? []).length
}

async function runConfigPushBench(): Promise<void> {
  const dir = makeTempDir('mr-bench-push')
  fs.chmodSync(dir, 0o755)
  const claims: LoopbackClaim[] = []
  const servers: SshServer[] = []
  let store: SqliteStore | undefined
  try {
    for (let i = 0; i < SERVERS; i++) claims.push(await claimLoopbackIp())
    const sshd = sshdOptions()
    const first = await startSshd({host: claims[0]!.ip, ...sshd})
    servers.push(first)
    // One client key for all: the others authorise the first one's key.
    const rest = await Promise.all(
      claims.slice(1).map((c) => startSshd({host: c.ip, authorizedKeys: [first.clientPublicKey], ...sshd})),
    )
    servers.push(...rest)
    const dbPath = path.join(dir, 'cluster.db')
    store = (await SqliteStore.init(dbPath)).store
    const names = servers.map((_, i) => `mx${String(i + 1).padStart(2, '0')}`)
    await store.writeTopology({
      ...(await store.readTopology()),
      servers: names.map((name, i) => ({name, address: servers[i]!.host, weight: 1, state: 'active'})),
    })
    const users = Array.from({length: USERS}, (_, i) => `user${i}@example.com`)
    await store.insertUsers(
      [
        {
          users,
          domains: users.map(() => 'example.com'),
          copyStart: Int32Array.from({length: USERS + 1}, (_, i) => 2 * i),
          copyServers: Int32Array.from(
            {length: 2 * USERS},
            (_, k) => (Math.floor(k / 2) + (k % 2)) % SERVERS,
          ),
          servers: names,
        },
      ],
      {skipExisting: false},
    )
    const files = path.join(dir, 'servers')
    for (const name of names) fs.mkdirSync(path.join(files, name), {recursive: true})
    const topologyServers = (await store.readTopology()).servers
    const ctx = (home: string): DovecotContext => ({
      store: store!,
      location: {kind: 'sqlite', path: dbPath, source: 'bench'},
      settings: {
        ...DEFAULT_DOVECOT_SETTINGS,
        versions: {},
        configPath: path.join(files, '{server}', 'dovecot-sql.conf.ext'),
        doveconf: 'true',
        doveadm: 'true',
        verifyLookup: false,
        home,
      },
      ssh: {},
      doveadm: {...DEFAULT_DOVEADM_SETTINGS, transports: {}, httpPorts: {}},
      servers: topologyServers,
      env: {},
    })

    // One relay per sshd for each latency, in a child process (its CPU and timers are not mailring's), and
    // an ssh config (and known_hosts) that sends each server's connection through its relay: mailring is
    // pointed at the relays the way an operator points it at any port, by the ssh config's Port.
    const throughRelays = async (oneWayMs: number) => {
      const relays = await startRelayProcess(
        servers.map((s) => ({host: s.host, targetPort: s.port, oneWayMs, tcpHandshake: true})),
      )
      const config = path.join(dir, `ssh_config_${oneWayMs}`)
      const hosts = path.join(dir, `known_hosts_${oneWayMs}`)
      fs.writeFileSync(
        config,
        servers
          .map(
            (s, i) =>
              `Host ${s.host}\n  Port ${relays.ports[i]!}\n  User root\n  IdentityFile ${first.clientKeyPath}\n  IdentitiesOnly yes\n`,
          )
          .join(''),
      )
      fs.writeFileSync(
        hosts,
        servers
          .map(
            (s, i) =>
              `[${s.host}]:${relays.ports[i]!} ${s.knownHostsLine.slice(s.knownHostsLine.indexOf(' ') + 1)}`,
          )
          .join('\n') + '\n',
      )
      return {relays, ssh: {configFile: config, knownHostsFiles: [hosts]}}
    }

    const runOnce = async (
      label: string,
      oneWayMs: number,
      parallel: number,
      home: string,
      via: Awaited<ReturnType<typeof throughRelays>>,
    ): Promise<Run> => {
      const before = servers.map(accepted)
      const turnsBefore = await via.relays.counters()
      collectGarbage()
      const serversCpuBefore = serversCpuMs(servers)
      const cpuBefore = ownCpuMs()
      const started = performance.now()
      const results = await pushConfig({...ctx(home), ssh: via.ssh}, {parallel, agent: false})
      const ms = performance.now() - started
      const cpuMs = ownCpuMs() - cpuBefore
      // sshd logs (and reaps its children) asynchronously: give it a moment before counting.
      await new Promise((resolve) => setTimeout(resolve, 300))
      const sshdCpuMs = serversCpuMs(servers) - serversCpuBefore
      const connections = servers.map((s, i) => accepted(s) - before[i]!)
      const turnsAfter = await via.relays.counters()
      const turns = turnsAfter.map((c, i) => c.turns - turnsBefore[i]!.turns)
      const relayed = turnsAfter.map((c, i) => c.connections - turnsBefore[i]!.connections)
      const bad = results.filter((r) => r.status !== 'updated')
      if (bad.length > 0)
        throw new Error(`${label}: ${bad.map((r) => `${r.server}: ${r.status} ${r.message}`).join('; ')}`)
      return {oneWayMs, parallel, ms, cpuMs, sshdCpuMs, connections, relayed, turns}
    }

    const runs: Run[] = []
    for (const oneWayMs of LATENCIES_MS) {
      const via = await throughRelays(oneWayMs)
      try {
        // Warm-up (first connections, JIT) once, then each mode against files that differ.
        if (oneWayMs === LATENCIES_MS[0])
          await runOnce('warm-up', oneWayMs, PARALLEL, '/var/vmail/warm/%d/%n', via)
        runs.push(await runOnce('serial', oneWayMs, 1, `/var/vmail/serial-${oneWayMs}/%d/%n`, via))
        runs.push(await runOnce('parallel', oneWayMs, PARALLEL, `/var/vmail/parallel-${oneWayMs}/%d/%n`, via))
      } finally {
        await via.relays.close()
      }
    }
    reportRuns(runs, sshd, await wakeUpCost(LATENCIES_MS[LATENCIES_MS.length - 1]!))
  } finally {
    await store?.close()
    await Promise.all(servers.map((s) => s.stop()))
    await Promise.all(claims.map((c) => c.release()))
    removeDir(dir)
  }
}

/**
 * The fewest round trips a push can take over SSH (the file changed, so it is read, then installed): TCP
 * handshake 1; key exchange 2 (version and KEXINIT both ways at once, then ECDH); service request and
 * public key authentication 2 (a signed request at once, no query first); a channel open 1; reading the
 * file 1; one command that keeps the backup and installs the new file (its content on stdin) 1. Closing
 * need not be waited for. mailring now takes exactly these (src/engine/dovecot-config/push.ts: the read and the
 * install are the two halves of one command, the new file its answer on stdin).
 */
const PROTOCOL_MIN_ROUND_TRIPS = 8

function reportRuns(
  runs: Run[],
  sshd: {extraArgs?: string[]},
  wake: Awaited<ReturnType<typeof wakeUpCost>>,
): void {
  const find = (oneWayMs: number, parallel: number) =>
    runs.find((r) => r.oneWayMs === oneWayMs && r.parallel === parallel)!
  const base = find(LATENCIES_MS[0]!, 1)
  /** Round trips waited for one after the other, per server: one at a time, beyond the 0 ms run. */
  const waited = (r: Run) => (r.oneWayMs === 0 ? undefined : (r.ms - base.ms) / SERVERS / (2 * r.oneWayMs))
  const per = (list: number[]) => list.reduce((a, b) => a + b, 0) / list.length
  const rows = runs.map((r) => {
    const serial = find(r.oneWayMs, 1)
    const rt = r.parallel === 1 ? waited(r) : undefined
    return [
      `${r.oneWayMs} ms`,
      r.parallel === 1 ? 'one at a time' : `--parallel ${r.parallel}`,
      seconds(r.ms),
      ms(r.ms / SERVERS),
      r.parallel === 1 ? '' : `${(serial.ms / r.ms).toFixed(1)}x`,
      rangeText(r.connections),
      rangeText(r.turns),
      rt === undefined ? '' : rt.toFixed(1),
      ms(r.cpuMs / SERVERS),
      ms(r.sshdCpuMs / SERVERS),
    ]
  })
  printTable(
    `config push to ${SERVERS} sshd servers through latency relays (every file changed; ${USERS} users, R = 2)`,
    [
      'one way',
      'mode',
      'time',
      'per server',
      'speed-up',
      'SSH connections per server',
      'turns per server (relay)',
      'round trips waited per server',
      'mailring CPU per server',
      'sshd CPU per server',
    ],
    rows,
    [],
    2,
  )
  const far = LATENCIES_MS[LATENCIES_MS.length - 1]!
  const speedup = find(far, 1).ms / find(far, PARALLEL).ms
  const oneConnection = runs.every(
    (r) => r.connections.every((c) => c === 1) && r.relayed.every((c) => c === 1),
  )
  const worstCpu = Math.max(...runs.map((r) => r.cpuMs / SERVERS))
  const turns = Math.max(...runs.map((r) => per(r.turns)))
  const farWaited = waited(find(far, 1))!
  const cores = os.cpus().length
  printTable(
    'config push targets',
    ['target', 'value', 'wanted', 'result'],
    [
      targetRow(
        `--parallel ${PARALLEL} speed-up at ${far} ms one way`,
        `${speedup.toFixed(1)}x`,
        `>= ${TARGET_SPEEDUP}x`,
        speedup >= TARGET_SPEEDUP,
      ),
      targetRow('SSH connections per server push', oneConnection ? '1' : 'more than 1', '1', oneConnection),
      targetRow(
        'mailring CPU per server push (worst run)',
        ms(worstCpu),
        `<= ${TARGET_CPU_MS} ms`,
        worstCpu <= TARGET_CPU_MS,
      ),
      targetRow(
        `round trips waited per server push (${far} ms)`,
        farWaited.toFixed(1),
        `protocol minimum, about ${PROTOCOL_MIN_ROUND_TRIPS}`,
        farWaited <= PROTOCOL_MIN_ROUND_TRIPS + 0.5,
      ),
    ],
    [
      'round trips waited: (time of one at a time at this latency - at 0 ms) / servers / round trip time; ' +
        'the TCP handshake is modelled by the relay (3 one-way times before the server accepts) and counts as one.',
      `turns (relay): the client speaking again after hearing from the server, at most ${turns.toFixed(1)} per ` +
        'server push; an upper bound (a reply the client did not wait for, e.g. a window adjust, counts too).',
      `protocol minimum (about ${PROTOCOL_MIN_ROUND_TRIPS}): TCP 1, key exchange 2, service request and ` +
        'authentication 2, channel open 1, read 1, one install command 1 (see PROTOCOL_MIN_ROUND_TRIPS).',
      `mailring CPU: user + system time of this process (the relays run in a child process), divided by ` +
        `${SERVERS} servers; ${cores} cores, shared with the sshd servers and the relays.`,
      `waking up costs CPU here: an empty timer wake-up after ${LATENCIES_MS[LATENCIES_MS.length - 1]} ms idle ` +
        `${wake.wakeMs.toFixed(2)} ms, and a unit of SSH-like work ${wake.workMs.toFixed(2)} ms back to back but ` +
        `${wake.workAfterSleepMs.toFixed(2)} ms right after such a sleep (bench/measure.ts wakeUpCost): so ` +
        'mailring CPU per push grows with the latency one at a time (a wake-up or more per round trip), and ' +
        'less with --parallel (one wake-up serves several connections).',
      'doveconf and doveadm are `true` (no Dovecot here); real validation adds its own time per server.',
      `the test sshd servers run ${sshd.extraArgs ? 'with -r (no re-exec per connection)' : 'with their defaults'}.`,
    ],
  )
}

/** A row of the targets table, the target recorded (checkTarget). */
function targetRow(metric: string, value: string, wanted: string, pass: boolean): string[] {
  return [metric, value, wanted, checkTarget(SUITE, metric, value, wanted, pass)]
}

function ms(value: number): string {
  return `${Math.round(value)} ms`
}

function rangeText(list: number[]): string {
  const min = Math.min(...list)
  const max = Math.max(...list)
  return min === max ? String(min) : `${min}-${max}`
}

export const configPushBench = {
  name: SUITE,
  description: `config push to ${SERVERS} sshd servers at ${LATENCIES_MS.join(', ')} ms one way: --parallel ${PARALLEL} against one at a time`,
  run: runConfigPushBench,
}
