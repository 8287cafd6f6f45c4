/**
 * The stock Dovecot 2.3 replicator, configured only through the SQL file mailring renders, between two REAL
 * Dovecot instances (test/support/dovecot.ts) that read a mailring store (SQLite or MySQL, see the two test
 * files that call this) through Dovecot's own SQL driver: servers A and B, every user with R = 2 copies on exactly A and B, so that `mail_replica` (from
 * user_query) always names the other instance and `iterate_query` lists exactly the users each one holds.
 *
 * The replicator runs on A only (B is the replica target): two replicators that start together run their
 * start-up full syncs of the same users against each other under the dsync user lock, which made a mail
 * delivered right after start miss its fast sync (see REPLICATION_CONFIG in test/support/dovecot.ts).
 *
 * Deterministic order: the test waits until A's replicator has listed every user of A through the userdb
 * iteration (iterate_query) and has finished their start-up full syncs with success; only then is a mail
 * delivered to A over LMTP. B's maildir is then watched on disk (without opening B's mailbox, see below)
 * until the mail is there, the replicator must report that sync as successful, and B's copy is read over
 * IMAP. Nothing triggers a replication by hand (no `doveadm replicator add|replicate`, no `doveadm sync`):
 * the notify/replication plugins and the replicator carry the mail on their own.
 */
import * as fs from 'node:fs'
import * as path from 'node:path'

import {afterAll, beforeAll, describe, expect, it} from 'vitest'

import {renderFor} from '../../src/engine/dovecot-config/render.js'
import {type DovecotContext} from '../../src/engine/context.js'
import type {Store} from '../../src/store/store.js'
import {
  REPLICATION_CONFIG,
  reserveReplicaPair,
  startDovecot,
  type DovecotAddress,
  type DovecotHost,
} from '../support/dovecot.js'
import {makeTempDir, removeDir, sleep} from '../support/proc.js'
import {fillStore} from '../support/store-cluster.js'

const PASSWORD = 'pw-secret'
/** R = 2, every copy on A and B: A's replicator always has a reachable peer. */
const USERS: [string, string[]][] = [
  ['alice@example.com', ['mx-a', 'mx-b']],
  ['bob@example.com', ['mx-b', 'mx-a']],
]
const READY_TIMEOUT_MS = 30_000
const REPLICATION_TIMEOUT_MS = 20_000

/** The store the two Dovecot instances read, and how they read it. */
export interface ReplicationBackend {
  store: Store
  /** The rendering context for this store, with mail_replica on `doveadmPort`. */
  context(doveadmPort: number): Promise<DovecotContext>
  /** Throws when a rendered file is not of this backend's kind (proves which driver Dovecot uses). */
  checkFile?(text: string): void
  stop(): Promise<void>
}

export function describeReplication(
  title: string,
  openBackend: (dir: string) => Promise<ReplicationBackend>,
): void {
  let dir: string
  let backend: ReplicationBackend | undefined
  let a: DovecotHost
  let b: DovecotHost

  beforeAll(async () => {
    dir = makeTempDir('mr-replication')
    fs.chmodSync(dir, 0o755)
    const [ra, rb, port] = await reserveReplicaPair()

    backend = await openBackend(dir)
    await fillStore(
      backend.store,
      [
        {name: 'mx-a', address: ra.ip},
        {name: 'mx-b', address: rb.ip},
      ],
      USERS,
    )
    const ctx = await backend.context(port)
    const users = USERS.map(([user]) => ({user, password: PASSWORD}))
    const sqlFile = (home: string, server: string) => {
      const text = renderFor({...ctx, settings: {...ctx.settings, home: `${home}/%d/%n`}}, server).rendered
        .text
      backend!.checkFile?.(text)
      return text
    }
    const start = (address: DovecotAddress, server: string, extraConfig: string) =>
      startDovecot({
        address,
        users, // passwords (passdb); the userdb is the rendered SQL file
        files: (c) => ({'dovecot-sql.conf.ext': sqlFile(path.join(c.dir, 'home'), server)}),
        userdb: (c) => `userdb {\n  driver = sql\n  args = ${path.join(c.dir, 'dovecot-sql.conf.ext')}\n}`,
        extraConfig,
      })
    // B first: A's replicator starts syncing as soon as A is up, and B's doveadm server must answer it.
    b = await start(rb, 'mx-b', '')
    a = await start(ra, 'mx-a', REPLICATION_CONFIG)
  })

  afterAll(async () => {
    await Promise.all([a?.stop(), b?.stop()])
    await backend?.stop()
    if (dir) removeDir(dir)
  })

  function diagnostics(): string {
    return `\n--- A's log:\n${a.readLog().slice(-4000)}\n--- B's log:\n${b.readLog().slice(-2500)}`
  }

  describe(title, () => {
    it('lists the users of A through iterate_query and finishes their start-up full syncs', async () => {
      const want = USERS.filter(([, copies]) => copies.includes('mx-a'))
        .map(([user]) => user)
        .sort()
      const deadline = Date.now() + READY_TIMEOUT_MS
      let last = await replicatorStatus(a)
      for (;;) {
        const listed = last.users.map((u) => u.user).sort()
        const done = last.users.every((u) => u.priority === 'none' && u.success !== '-' && !u.failed)
        if (done && JSON.stringify(listed) === JSON.stringify(want)) break
        if (Date.now() > deadline) {
          expect.fail(
            `A's replicator is not ready after ${READY_TIMEOUT_MS} ms:\n${last.raw}${diagnostics()}`,
          )
        }
        await sleep(200)
        last = await replicatorStatus(a)
      }
    })

    it('carries a mail delivered over LMTP on A to the copy on B', async () => {
      const subject = `replicate-${Date.now()}`
      await a.deliver('alice@example.com', `Subject: ${subject}\r\nFrom: x@example.net\r\n\r\nbody\r\n`)
      const deliveredAt = Date.now()
      // Wait on B's maildir, not on B's Dovecot: an IMAP (or doveadm) session on B opens, and so creates,
      // alice's INBOX there while the replicator's dsync is creating it too; dsync then sees "changes during
      // sync", exits 2 (silently, when run by the replicator), and the replicator marks the sync failed and
      // retries the user only after 5 minutes. That was this test's old flakiness.
      const maildir = path.join(b.mailDir, 'example.com', 'alice')
      const deadline = deliveredAt + REPLICATION_TIMEOUT_MS
      while (!maildirHas(maildir, subject)) {
        if (Date.now() > deadline) {
          const status = (await replicatorStatus(a)).raw
          expect.fail(
            `not replicated to B within ${REPLICATION_TIMEOUT_MS} ms (nothing in ${maildir});\n` +
              `A's replicator:\n${status}${diagnostics()}`,
          )
        }
        await sleep(100)
      }
      // Let the replicator finish that sync (it reports success), then read B's copy as the user would.
      for (;;) {
        const alice = (await replicatorStatus(a)).users.find((u) => u.user === 'alice@example.com')
        if (alice && alice.priority === 'none' && !alice.failed) break
        if (Date.now() > deadline || alice?.failed) {
          expect.fail(
            `A's replicator did not finish alice's sync:\n${(await replicatorStatus(a)).raw}${diagnostics()}`,
          )
        }
        await sleep(100)
      }
      const box = await b.imapListMessages('alice@example.com', PASSWORD)
      expect(box.messages.map((m) => m.subject)).toContain(subject)
      // And A still has it (nothing was lost either way).
      expect(
        (await a.imapListMessages('alice@example.com', PASSWORD)).messages.map((m) => m.subject),
      ).toContain(subject)
    })
  })
}

interface ReplicatorUser {
  user: string
  priority: string
  fastSync: string
  fullSync: string
  success: string
  failed: boolean
}

/** `doveadm replicator status '*'` parsed (username, priority, fast sync, full sync, success sync, failed). */
async function replicatorStatus(host: DovecotHost): Promise<{users: ReplicatorUser[]; raw: string}> {
  const r = await host.doveadm(['replicator', 'status', '*'])
  const users: ReplicatorUser[] = []
  for (const line of r.stdout.split('\n').slice(1)) {
    const f = line.trim().split(/\s+/)
    if (f.length < 6) continue
    users.push({
      user: f[0]!,
      priority: f[1]!,
      fastSync: f[2]!,
      fullSync: f[3]!,
      success: f[4]!,
      failed: f[5] === 'y',
    })
  }
  return {users, raw: `exit ${r.exitCode}\n${r.stdout}${r.stderr}`}
}

/** Whether a message file in a maildir (new/ or cur/) contains `text`. Reads files only. */
function maildirHas(maildir: string, text: string): boolean {
  for (const sub of ['new', 'cur']) {
    let names: string[]
    try {
      names = fs.readdirSync(path.join(maildir, sub))
    } catch {
      continue
    }
    for (const name of names) {
      try {
        if (fs.readFileSync(path.join(maildir, sub, name), 'utf8').includes(text)) return true
      } catch {
        // renamed from new/ to cur/ meanwhile: seen on the next look
      }
    }
  }
  return false
}
