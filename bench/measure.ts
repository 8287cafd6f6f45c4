/** What the benchmarks on real Dovecot servers measure besides wall time: CPU of mailring and of Dovecot. */
import * as fs from 'node:fs'

import type {RingCluster} from '../test/support/ring-cluster.js'

/**
 * CPU time (user + system) in ms of the Dovecot servers: each master, its live children (every Dovecot
 * service is a child of the master), and the children it has reaped (cutime, cstime). Linux only; 0
 * elsewhere.
 */
export function dovecotCpuMs(ring: RingCluster): number {
  const masters = new Set([...ring.hosts.values()].map((h) => h.pid))
  let pids: string[]
  try {
    pids = fs.readdirSync('/proc').filter((name) => /^\d+$/.test(name))
  } catch {
    return 0
  }
  let ticks = 0
  for (const pid of pids) {
    let stat: string
    try {
      stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8')
    } catch {
      continue // gone meanwhile: a child's time is in its master's cutime once reaped
    }
    // After "pid (comm) ": fields[0] is field 3 (state), fields[1] the ppid, utime..cstime are fields 14..17.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
    if (masters.has(Number(pid))) for (let i = 11; i <= 14; i++) ticks += Number(fields[i])
    else if (masters.has(Number(fields[1]))) ticks += Number(fields[11]) + Number(fields[12])
  }
  return (ticks * 1000) / 100 // USER_HZ = 100 on Linux
}

/** This process's CPU time (user + system) in ms. */
export function ownCpuMs(): number {
  const usage = process.cpuUsage()
  return (usage.user + usage.system) / 1000
}

export function collectGarbage(): void {
  ;(globalThis as {gc?: () => void}).gc?.()
}

/**
 * What waking up costs this process on this machine, which is why mailring's CPU per server push grows with
 * the latency when servers are worked on one at a time (every round trip is a sleep and a wake-up or
 * more): the CPU time of an empty timer wake-up after `sleepMs` of idleness, and how much more CPU the same
 * small unit of work (8 Ed25519 signatures and SHA-256 hashes of 16 KiB, SSH-like work) takes right
 * after such a sleep than back to back (cold caches, a parked CPU, a virtual CPU's halt and wake).
 */
export async function wakeUpCost(
  sleepMs: number,
  rounds = 40,
): Promise<{wakeMs: number; workMs: number; workAfterSleepMs: number}> {
  const {createHash, generateKeyPairSync, sign} = await import('node:crypto')
  const {privateKey} = generateKeyPairSync('ed25519')
  const data = Buffer.alloc(16 * 1024, 7)
  const unit = () => {
    for (let i = 0; i < 8; i++) {
      sign(null, data.subarray(0, 64), privateKey)
      createHash('sha256').update(data).digest()
    }
  }
  const pause = (ms: number) =>
    new Promise<void>((resolve) => (ms > 0 ? setTimeout(resolve, ms) : setImmediate(resolve)))
  for (let i = 0; i < rounds; i++) unit() // warm up
  const perRound = async (work: boolean, ms: number): Promise<number> => {
    const before = ownCpuMs()
    for (let i = 0; i < rounds; i++) {
      if (work) unit()
      await pause(ms)
    }
    return (ownCpuMs() - before) / rounds
  }
  const idle = await perRound(false, 0)
  const wakeMs = (await perRound(false, sleepMs)) - idle
  const workMs = (await perRound(true, 0)) - idle
  const workAfterSleepMs = (await perRound(true, sleepMs)) - idle - wakeMs
  return {wakeMs, workMs, workAfterSleepMs}
}
