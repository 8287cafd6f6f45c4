/** What the benchmarks on real Dovecot servers measure besides wall time: CPU of mailring and of Dovecot. */
import * as fs from 'node:fs'

import type {RingCluster} from '../test/e2e/ring-cluster.js'

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
