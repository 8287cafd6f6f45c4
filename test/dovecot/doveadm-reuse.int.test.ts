/**
 * `service doveadm { service_count = 0 }` on REAL Dovecot 2.3: doveadm-server processes that serve many
 * requests instead of one each (Dovecot's default, service_count = 1, forks one per doveadm HTTP request and
 * per dsync connection, the replicator's main cost: see docs/status.md, "Benchmark (issue 11)"). Two servers
 * with process_limit = 1 (every request on a server goes to its one doveadm-server process) and auth-userdb
 * owned by the mail user (as the operator's guide says for batches); syncs both ways through the doveadm
 * HTTP API with mailring's transport, each running in the source's process and talking to the destination's.
 * - One mail uid (the usual virtual-user setup): every sync succeeds, one process per server serves them
 *   all, every file is the mail user's.
 *   But a kick in a process that served a mail command dies (it may no longer reach anvil): a rebalance's
 *   retire closes the old copy's sessions with it, so reuse is not for a cluster mailring rebalances.
 * - Users on two uids (alice as vmail, bob as nobody): a process that served one user refuses the next
 *   user's command with 75 (its passdb lookup is made with the last user's uid), and no file is ever written
 *   with the wrong owner. Reuse does not work there; it loses nothing either.
 */
import * as fs from 'node:fs'
import * as path from 'node:path'

import {afterAll, beforeAll, describe, expect, it} from 'vitest'

import {kickCommand, kicked, mailboxStatusCommand, syncCommand} from '../../src/dovecot/doveadm.js'
import {HttpDoveadm} from '../../src/remote/doveadm-http.js'
import {startDovecotHosts, type DovecotHost, type DovecotUser} from '../support/dovecot.js'
import {run} from '../support/proc.js'

const REUSE =
  'service doveadm {\n  service_count = 0\n  process_limit = 1\n}\n' +
  'service auth {\n  unix_listener auth-userdb {\n    mode = 0600\n    user = vmail\n  }\n}\n'
const NOBODY = {uid: 65534, gid: 65534}
const ALICE = 'alice@example.com'
const BOB = 'bob@example.com'

let hosts: DovecotHost[]
let vmail: {uid: number; gid: number}

/** Every file and folder under `dir`, with its owner. */
function owners(dir: string): {file: string; uid: number; gid: number}[] {
  const out: {file: string; uid: number; gid: number}[] = []
  const walk = (d: string) => {
    for (const name of fs.readdirSync(d)) {
      const file = path.join(d, name)
      const st = fs.lstatSync(file)
      out.push({file, uid: st.uid, gid: st.gid})
      if (st.isDirectory()) walk(file)
    }
  }
  walk(dir)
  return out
}

/** The pids of this host's doveadm-server processes. */
async function doveadmServers(host: DovecotHost): Promise<string[]> {
  const ps = await run('ps', ['-o', 'pid=,args=', '--ppid', String(host.pid)])
  return ps.stdout
    .split('\n')
    .filter((l) => /doveadm-server/.test(l))
    .map((l) => l.trim().split(/\s+/)[0]!)
}

beforeAll(async () => {
  const users: DovecotUser[] = [
    {user: ALICE, password: 'pw-a'},
    {user: BOB, password: 'pw-b', userdbFields: {uid: String(NOBODY.uid), gid: String(NOBODY.gid)}},
  ]
  hosts = await startDovecotHosts([
    {extraConfig: REUSE, users},
    {extraConfig: REUSE, users},
  ])
  const st = fs.statSync(hosts[0]!.mailDir)
  vmail = {uid: st.uid, gid: st.gid}
  // Each user's mail folder and home, owned by the user (the domain folder is vmail's, as a shared mail
  // root would be, and writable by neither user: Dovecot must not need to create anything there).
  for (const host of hosts) {
    for (const [user, ids] of [
      [ALICE, vmail],
      [BOB, NOBODY],
    ] as const) {
      const local = user.split('@')[0]!
      for (const root of [host.mailDir, path.join(host.dir, 'home')]) {
        const domain = path.join(root, 'example.com')
        fs.mkdirSync(path.join(domain, local), {recursive: true})
        fs.chownSync(domain, vmail.uid, vmail.gid)
        fs.chmodSync(domain, 0o755)
        fs.chownSync(path.join(domain, local), ids.uid, ids.gid)
      }
    }
  }
}, 60_000)

afterAll(async () => {
  await Promise.all((hosts ?? []).map((h) => h.stop()))
})

const transport = (h: DovecotHost) =>
  new HttpDoveadm({
    name: h.instanceName,
    host: h.ip,
    port: h.httpPort,
    password: h.doveadmPassword,
    retries: 0,
  })

/** Mail on each side, then a sync each way, for each user in turn; the outcomes, and the pids seen. */
async function syncRounds(users: readonly string[], rounds: number) {
  const [a, b] = hosts as [DovecotHost, DovecotHost]
  const outcomes: {user: string; way: string; outcome: string}[] = []
  const pids = new Map<string, Set<string>>(hosts.map((h) => [h.instanceName, new Set()]))
  for (let round = 1; round <= rounds; round++) {
    for (const user of users) {
      for (const [from, to] of [
        [a, b],
        [b, a],
      ] as const) {
        await from.deliver(user, `Subject: ${user} on ${from.instanceName}, round ${round}\r\n\r\nbody\r\n`)
        const reply = await transport(from).run(
          syncCommand({user, destination: `tcp:${to.ip}:${to.doveadmPort}`}),
        )
        outcomes.push({user, way: `${from.instanceName} -> ${to.instanceName}`, outcome: reply.outcome})
        for (const h of hosts) for (const pid of await doveadmServers(h)) pids.get(h.instanceName)!.add(pid)
      }
    }
  }
  return {outcomes, pids}
}

async function messages(host: DovecotHost, user: string): Promise<number> {
  const status = await transport(host).run(mailboxStatusCommand(user, ['messages']))
  expect(status.outcome, `${user} on ${host.instanceName}`).toBe('ok')
  return (status.rows as Record<string, string>[]).reduce((n, r) => n + Number(r.messages), 0)
}

/** Files of the user on any server not owned by the user's uid. */
function misowned(user: string, uid: number): string[] {
  return hosts.flatMap((h) =>
    owners(path.join(h.mailDir, 'example.com', user.split('@')[0]!))
      .filter((f) => f.uid !== uid)
      .map((f) => f.file),
  )
}

describe('doveadm-server processes reused (service_count = 0)', () => {
  it('with one mail uid: every sync both ways succeeds through one process per server', async () => {
    const {outcomes, pids} = await syncRounds([ALICE], 4)
    expect(outcomes.filter((o) => o.outcome !== 'ok')).toEqual([])
    for (const h of hosts) {
      expect(await messages(h, ALICE)).toBe(8)
      // One doveadm-server process served every request on this server: reuse, not a fork per request.
      expect(pids.get(h.instanceName)!.size, h.instanceName).toBe(1)
    }
    expect(misowned(ALICE, vmail.uid)).toEqual([])
  })

  it("a kick (the retire of a rebalance closes the old copy's sessions with it) fails in a process that served a mail command", async () => {
    const [a] = hosts as [DovecotHost]
    const before = a.readLog().length
    // The process dropped root for the mail user; kick must reach anvil, which only root may.
    // The process dies on it: the request ends without an answer.
    const done = await transport(a)
      .run(kickCommand(ALICE))
      .then(kicked, () => false)
    expect(done).toBe(false)
    // The log process writes it a moment later (read at once, it was missing once in CI).
    const fatal = /Fatal: net_connect_unix\(\S+\/anvil\) failed: Permission denied/
    for (let i = 0; i < 50 && !fatal.test(a.readLog().slice(before)); i++)
      await new Promise((resolve) => setTimeout(resolve, 100))
    expect(a.readLog().slice(before)).toMatch(fatal)
  })

  it("with users on two uids: a process that served one refuses the next one's command (75), and writes nothing as the wrong user", async () => {
    const {outcomes} = await syncRounds([BOB, ALICE], 2)
    // Dovecot switches the effective uid per user, but does the next user's passdb lookup ("to see if user
    // is proxied, because doveadm_port is set") as the last one: auth refuses it unless that uid owns
    // auth-userdb (a socket open to several uids allows them USER lookups only).
    const refused = outcomes.filter((o) => o.outcome !== 'ok')
    expect(refused.length).toBeGreaterThan(0)
    expect(refused.every((o) => o.outcome === 'temporary')).toBe(true)
    expect(hosts.map((h) => h.readLog()).join('')).toMatch(/passdb lookup failed \(to see if user is proxied/)
    expect(misowned(BOB, NOBODY.uid)).toEqual([])
    expect(misowned(ALICE, vmail.uid)).toEqual([])
  })
})
