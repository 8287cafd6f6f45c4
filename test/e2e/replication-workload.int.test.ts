/**
 * Replication as the world uses it (issue 20): `mailring replicator run`, the built CLI, on three real
 * Dovecot servers (2.3, then 2.4), R = 3, configured by mailring (rendered SQL, the notify snippet), while
 * mail changes on two copies of every user at once:
 * - two IMAP sessions per user, one on its primary and one on its second copy (as clients see it after a
 *   failover, or with a proxy that spreads sessions), each a seeded mixed workload: APPEND with flags,
 *   flags set and cleared, deletes and expunges, COPY to a second folder, FETCHes and NOOPs between
 *   (test/support/imap-workload.ts);
 * - LMTP deliveries to the primary and to the second copy at the same moment (the split that evens out);
 * - flag changes on the third copy with doveadm.
 * Nothing is queued by hand: Dovecot's notifications alone drive the replicator. Once its queue has
 * drained, `mailring verify --all` must find every copy of every user equal: the same mailboxes, the same
 * message GUIDs, the same flags on every message. Then health under load, with the probes at their
 * defaults: every Dovecot paused at once for several probe rounds (a loaded machine) marks no server down;
 * one stopped is still taken out, and comes back after a catch-up of only what it missed (nothing here).
 *
 * MAILRING_WORKLOAD_SEED replays a run (`random` draws one; the seed is printed).
 */
import {afterAll, beforeAll, describe, expect, it} from 'vitest'

import type {VerifyResult} from '../../src/commands/verify.js'
import type {ReplicatorStatus} from '../../src/engine/replicator/status.js'
import {startCli, type CliResult, type JsonEnvelope} from '../support/cli.js'
import {runImapWorkload} from '../support/imap-workload.js'
import {ImapClient, lmtpDeliver} from '../support/mailclients.js'
import {freePort} from '../support/ports.js'
import {killGroup, sleep} from '../support/proc.js'
import {PASSWORD, RING_OF_THREE, startRingCluster, type RingCluster} from '../support/ring-cluster.js'
import {randomness, seedFrom} from '../support/seeded.js'

const SEED = seedFrom('MAILRING_WORKLOAD_SEED', 20_261_208)
const CHANGES_PER_SESSION = 12
const FOLDER = 'Archive'

const message = (subject: string) =>
  `From: s@example.net\r\nSubject: ${subject}\r\nMessage-ID: <${subject.replace(/\W/g, '.')}@lmtp>\r\n\r\n${subject}\r\n`

describe.each(['2.3', '2.4'] as const)('replication under a concurrent workload on Dovecot %s', (version) => {
  let ring: RingCluster
  let service: {result: Promise<CliResult>; stderr: () => string; kill(signal: NodeJS.Signals): void}

  async function until(what: string, check: () => Promise<boolean>, timeoutMs = 60_000): Promise<void> {
    const deadline = Date.now() + timeoutMs
    while (!(await check())) {
      if (Date.now() > deadline)
        throw new Error(`timed out waiting until ${what}; the replicator said:\n${service.stderr()}`)
      await sleep(200)
    }
  }

  async function queueDrained(): Promise<boolean> {
    const r = await ring.cli<JsonEnvelope<ReplicatorStatus>>(['replicator', 'status', '--json'])
    const queue = r.json?.result?.queue
    return queue !== undefined && queue.waiting === 0 && queue.inFlight === 0
  }

  const mailboxNames = async (server: string, user: string) => {
    const r = await ring.host(server).doveadm(['-f', 'tab', 'mailbox', 'status', '-u', user, 'messages', '*'])
    return r.stdout
      .split('\n')
      .slice(1)
      .filter(Boolean)
      .map((line) => line.split('\t')[0])
  }

  beforeAll(async () => {
    ring = await startRingCluster({
      ...RING_OF_THREE,
      version,
      replicator: {
        port: await freePort('127.0.0.1'),
        // The probes at their defaults (every 0.5 s, 1 s time-out, down after 2), as the guide sets them.
        settings: {debounce: '100ms', max_delay: '1s'},
      },
    })
    const started = startCli(['replicator', 'run'], {
      cwd: ring.dir,
      env: {HOME: ring.dir, MAILRING_CONFIG: ring.configPath, ...ring.env},
      timeoutMs: 900_000,
    })
    let text = ''
    started.child.stderr?.on('data', (chunk: Buffer) => (text += chunk.toString()))
    service = {result: started.result, stderr: () => text, kill: (signal) => started.child.kill(signal)}
    await until('the replicator listens', async () => text.includes('listening on'))
    // Each user's INBOX and folder are made once, on its primary, and replicated before any session on
    // another copy: a login there first would make twin mailboxes (docs/dovecot-facts.md).
    for (const [user, copies] of RING_OF_THREE.users) {
      await ring.host(copies[0]!).deliver(user, message(`welcome ${user}`))
      const client = await ImapClient.connect(ring.host(copies[0]!).ip, ring.host(copies[0]!).imapPort)
      await client.login(user, PASSWORD)
      // Seen once on 2.4: already there (a client takes that as done).
      await client.command(`CREATE "${FOLDER}"`).catch((error: unknown) => {
        if (!String(error).includes('[ALREADYEXISTS]')) throw error
      })
      await client.logout()
    }
    for (const [user, copies] of RING_OF_THREE.users)
      for (const server of copies)
        await until(`${user}'s mailboxes are on ${server}`, async () =>
          (await mailboxNames(server, user)).includes(FOLDER),
        )
  }, 180_000)

  afterAll(async () => {
    service?.kill('SIGKILL')
    await service?.result
    await ring?.stop()
  })

  it(`leaves every copy equal once the queue drains (seed ${SEED})`, async () => {
    console.log(
      `replication workload on Dovecot ${version}: seed ${SEED} (MAILRING_WORKLOAD_SEED=${SEED} replays it)`,
    )
    const random = randomness(SEED)
    const began = Date.now()
    const work: Promise<unknown>[] = []
    const refused: string[] = []
    for (const [user, copies] of RING_OF_THREE.users) {
      for (const [i, server] of copies.slice(0, 2).entries()) {
        const host = ring.host(server)
        work.push(
          runImapWorkload({
            host: host.ip,
            port: host.imapPort,
            user,
            password: PASSWORD,
            folder: FOLDER,
            changes: CHANGES_PER_SESSION,
            random: randomness(Math.floor(random.rnd() * 2 ** 31)),
            label: `${server} session ${i}`,
          }).then((r) => refused.push(...r.refused)),
        )
      }
      // The split: one delivery to each of two copies at the same moment, twice.
      for (const round of [1, 2])
        work.push(
          ...copies.slice(0, 2).map((server) => {
            const host = ring.host(server)
            return lmtpDeliver(host.ip, host.lmtpPort, {
              to: [user],
              message: message(`lmtp ${round} to ${server}`),
            })
          }),
        )
      // And a flag set on the third copy meanwhile.
      work.push(
        ring.host(copies[2]!).doveadm(['flags', 'add', '-u', user, '\\Flagged', 'mailbox', 'INBOX', 'all']),
      )
    }
    await Promise.all(work)
    console.log(`workload done after ${Date.now() - began} ms`)
    // Dovecot posts its notifications within a second; then the queue must drain.
    await sleep(1_500)
    await until('the queue has drained', queueDrained, 120_000)
    const verified = await ring.cli<JsonEnvelope<VerifyResult>>(['verify', '--all', '--json'])
    const differences = (verified.json?.result?.users ?? []).flatMap((u) =>
      u.differences.map((d) => `${u.user}: ${d}`),
    )
    console.log(`refused by the servers (races a client meets too): ${refused.length}`)
    expect(differences, `the copies differ; the replicator said:\n${service.stderr()}`).toEqual([])
    expect(verified.exitCode, verified.stderr + verified.stdout).toBe(0)
    expect(verified.json?.result?.summary).toMatchObject({users: 3, agree: 3, differ: 0, unchecked: 0})
  }, 300_000)

  it('marks no server down while every server is slow at once, and still takes a stopped one out and back', async () => {
    const health = async () => {
      const r = await ring.cli<JsonEnvelope<ReplicatorStatus>>(['replicator', 'status', '--json'])
      return Object.fromEntries((r.json?.result?.servers ?? []).map((h) => [h.server, h.health]))
    }
    const logBefore = service.stderr().length
    // A loaded machine at its worst: every Dovecot paused for several probe rounds (connections accepted,
    // nothing answered, every probe timing out at once).
    const pids = RING_OF_THREE.servers.map((server) => ring.host(server).pid)
    for (const pid of pids) killGroup(pid, 'SIGSTOP')
    try {
      await sleep(5_000)
    } finally {
      for (const pid of pids) killGroup(pid, 'SIGCONT')
    }
    await sleep(2_000)
    const said = service.stderr().slice(logBefore)
    expect(said, 'the replicator took a server down').not.toMatch(/ is down /)
    expect(await health()).toEqual({'mx-a': 'up', 'mx-b': 'up', 'mx-c': 'up'})

    // A real stop is still seen, and the server comes back once caught up.
    await ring.host('mx-c').halt()
    const stopped = Date.now()
    await until('mx-c is down', async () => (await health())['mx-c'] === 'down')
    console.log(
      `Dovecot ${version}: mx-c down in the store ${Date.now() - stopped} ms after its Dovecot had stopped`,
    )
    await ring.host('mx-c').resume()
    await until('mx-c is up again', async () => (await health())['mx-c'] === 'up')
    expect(service.stderr().slice(logBefore)).toContain(
      'mx-c returned: catching up its 0 users with changes it missed',
    )
    expect(service.stderr()).not.toContain('replicator: replicator:')
  }, 120_000)
})
