/**
 * Config push benchmark: `config push` (the engine behind it) to 20 servers, each a real OpenSSH sshd on
 * its own loopback address 127.0.0.N, one server at a time against --parallel 10, in the same run.
 * Every server's file differs before each run (so every server is written, chowned, "validated" and
 * "reloaded"; doveconf and doveadm are `true` here, since no Dovecot runs), and each sshd's log is read
 * to count the SSH connections: one per server per run, however many steps.
 */
import {spawnSync} from 'node:child_process'
import * as fs from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'

import {DEFAULT_DOVEADM_SETTINGS} from '../src/remote/doveadm-settings.js'
import {DEFAULT_DOVECOT_SETTINGS} from '../src/dovecot/settings.js'
import type {DovecotContext} from '../src/engine/config-render.js'
import {connectOptions, pushConfig, type ServerPushResult} from '../src/engine/config-push.js'
import {SshConnection} from '../src/remote/ssh.js'
import {SqliteStore} from '../src/store/sqlite.js'
import {claimLoopbackIp, type LoopbackClaim} from '../test/support/ports.js'
import {makeTempDir, removeDir} from '../test/support/proc.js'
import {startSshd, type SshServer} from '../test/support/sshd.js'
import {checkTarget, printTable, seconds} from './report.js'

const SUITE = 'config-push'
const SERVERS = 20
const PARALLEL = 10
const USERS = 400
const TARGET_SPEEDUP = 5

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
 * CPU time (user + system) in ms of this process plus the sshd servers and everything they ran (their
 * finished children count through cutime/cstime): the machine may be busy with other work meanwhile.
 */
function pushCpuMs(servers: SshServer[]): number {
  const own = process.cpuUsage()
  let ticks = 0
  for (const server of servers) {
    try {
      const stat = fs.readFileSync(`/proc/${server.pid}/stat`, 'utf8')
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
      // fields[0] is field 3 (state): utime, stime, cutime, cstime are fields 14..17.
      for (let i = 11; i <= 14; i++) ticks += Number(fields[i])
    } catch {
      // not on Linux: count this process only
    }
  }
  return (own.user + own.system) / 1000 + (ticks * 1000) / 100 // USER_HZ = 100 on Linux
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
    const knownHosts = path.join(dir, 'known_hosts')
    fs.writeFileSync(knownHosts, servers.map((s) => s.knownHostsLine).join('\n') + '\n')
    const sshConfig = path.join(dir, 'ssh_config')
    fs.writeFileSync(
      sshConfig,
      servers
        .map(
          (s) =>
            `Host ${s.host}\n  Port ${s.port}\n  User root\n  IdentityFile ${first.clientKeyPath}\n  IdentitiesOnly yes\n`,
        )
        .join(''),
    )
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
      ssh: {configFile: sshConfig, knownHostsFiles: [knownHosts]},
      doveadm: {...DEFAULT_DOVEADM_SETTINGS, transports: {}, httpPorts: {}},
      servers: topologyServers,
      env: {},
    })

    const runOnce = async (parallel: number, home: string) => {
      const before = servers.map(accepted)
      const cpuBefore = pushCpuMs(servers)
      const started = performance.now()
      const results = await pushConfig(ctx(home), {parallel, agent: false})
      const ms = performance.now() - started
      // sshd logs (and reaps its children) asynchronously: give it a moment before counting.
      await new Promise((resolve) => setTimeout(resolve, 300))
      const cpuMs = pushCpuMs(servers) - cpuBefore
      const connections = servers.map((s, i) => accepted(s) - before[i]!)
      return {ms, cpuMs, results, connections}
    }
    // The SSH connection alone (handshake, authentication, close), one server at a time: the part of a push
    // no change to the steps can remove.
    const connectOnly = async () => {
      const c = ctx('/unused')
      const cpuBefore = pushCpuMs(servers)
      const started = performance.now()
      for (const server of topologyServers) {
        const conn = await SshConnection.connect(connectOptions(c, server.address, {agent: false}))
        await conn.close()
      }
      const wallMs = performance.now() - started
      await new Promise((resolve) => setTimeout(resolve, 300)) // let sshd reap its children
      return {ms: wallMs, cpuMs: pushCpuMs(servers) - cpuBefore}
    }
    const check = (label: string, results: ServerPushResult[]) => {
      const bad = results.filter((r) => r.status !== 'updated')
      if (bad.length > 0)
        throw new Error(`${label}: ${bad.map((r) => `${r.server}: ${r.status} ${r.message}`).join('; ')}`)
    }
    // Warm-up (first connections, JIT), then each mode against files that differ.
    check('warm-up', (await runOnce(PARALLEL, '/var/vmail/warm/%d/%n')).results)
    const serial = await runOnce(1, '/var/vmail/serial/%d/%n')
    check('serial', serial.results)
    const parallel = await runOnce(PARALLEL, '/var/vmail/parallel/%d/%n')
    check('parallel', parallel.results)
    const handshake = await connectOnly()
    const speedup = serial.ms / parallel.ms
    const cores = os.cpus().length
    const oneConnection = [...serial.connections, ...parallel.connections].every((c) => c === 1)
    printTable(
      `config push to ${SERVERS} sshd servers on loopback (every file changed; ${USERS} users, R = 2)`,
      ['mode', 'time', 'per server', 'SSH connections per server', 'target', 'result'],
      [
        [
          'one server at a time',
          seconds(serial.ms),
          seconds(serial.ms / SERVERS),
          connectionsText(serial.connections),
          '',
          '',
        ],
        [
          `--parallel ${PARALLEL}`,
          seconds(parallel.ms),
          seconds(parallel.ms / SERVERS),
          connectionsText(parallel.connections),
          `>= ${TARGET_SPEEDUP}x faster`,
          checkTarget(
            SUITE,
            `--parallel ${PARALLEL} speed-up`,
            `${speedup.toFixed(1)}x`,
            `>= ${TARGET_SPEEDUP}x`,
            speedup >= TARGET_SPEEDUP,
          ),
        ],
        [
          'connections',
          '',
          '',
          '',
          '1 per server',
          checkTarget(
            SUITE,
            'SSH connections per server per push',
            oneConnection ? '1' : 'more than 1',
            '1',
            oneConnection,
          ),
        ],
      ],
      [
        `speed-up ${speedup.toFixed(1)}x; steps per server: read (with stat), backup write, upload of the new file, ` +
          'one remote command (chown, rename, doveconf, reload).',
        `CPU per server (mailring + sshd + remote commands): one at a time ${ms(serial.cpuMs / SERVERS)}, ` +
          `--parallel ${PARALLEL} ${ms(parallel.cpuMs / SERVERS)}; SSH connection alone (handshake, auth, close): ` +
          `${ms(handshake.ms / SERVERS)} wall, ${ms(handshake.cpuMs / SERVERS)} CPU per server.`,
        `with ${cores} cores the CPU bounds --parallel ${PARALLEL} at ${seconds(parallel.cpuMs / cores)} for ${SERVERS} ` +
          `servers, i.e. a speed-up of at most ${(serial.ms / (parallel.cpuMs / cores)).toFixed(1)}x over one at a time.`,
        'doveconf and doveadm are `true` (no Dovecot here); real validation adds its own time per server.',
        `the test sshd servers run ${sshd.extraArgs ? 'with -r (no re-exec per connection)' : 'with their defaults'}.`,
      ],
    )
  } finally {
    await store?.close()
    await Promise.all(servers.map((s) => s.stop()))
    await Promise.all(claims.map((c) => c.release()))
    removeDir(dir)
  }
}

function ms(value: number): string {
  return `${Math.round(value)} ms`
}

function connectionsText(list: number[]): string {
  const min = Math.min(...list)
  const max = Math.max(...list)
  return min === max ? String(min) : `${min}-${max}`
}

export const configPushBench = {
  name: SUITE,
  description: `config push to ${SERVERS} sshd servers: --parallel ${PARALLEL} against one at a time`,
  run: runConfigPushBench,
}
