/**
 * Smoke tests of the test-bed helpers: each starts real servers on loopback (MariaDB, two Dovecot hosts,
 * OpenSSH) and checks them the way the integration tests will use them.
 */
import * as fs from 'node:fs'
import * as path from 'node:path'

import {afterAll, beforeAll, describe, expect, it} from 'vitest'

import {
  type DovecotAddress,
  type DovecotHost,
  REPLICATION_CONFIG,
  reserveDovecotAddress,
  startDovecotHosts,
} from './dovecot.js'
import {type MariaDb, startMariaDb} from './mariadb.js'
import {canConnect, claimLoopbackIp, freePort, freePorts, LOOPBACK_CLAIM_PORT, waitForPort} from './ports.js'
import {isAlive, makeTempDir, processesMatching, removeDir, requireExecutable, run} from './proc.js'
import {type SshServer, startSshd} from './sshd.js'

async function timed<T>(label: string, f: () => Promise<T>): Promise<T> {
  const t0 = performance.now()
  const result = await f()
  console.log(`[testbed] ${label}: ${Math.round(performance.now() - t0)} ms`)
  return result
}

describe('ports and processes', () => {
  it('fails, naming the package to install, when a server binary is missing', () => {
    expect(() => requireExecutable('mailring-no-such-daemon', 'apt-get install -y mariadb-server')).toThrow(
      'mailring-no-such-daemon is not installed on this machine; install it with `apt-get install -y mariadb-server`',
    )
  })

  it('hands out free ports and waits for a listener', async () => {
    const [a, b] = await freePorts(2)
    expect(a).not.toBe(b)
    const port = await freePort()
    expect(await canConnect(port)).toBe(false)
    await expect(waitForPort(port, '127.0.0.1', {timeoutMs: 200})).rejects.toThrow(/did not accept/)
  })

  it('lets one process at a time hold 127.0.0.N', async () => {
    const claim = await claimLoopbackIp()
    try {
      expect(claim.ip).toBe(`127.0.0.${claim.n}`)
      await expect(claimLoopbackIp(claim.n, {timeoutMs: 0})).rejects.toThrow(/already claimed/)
      // Another process can't take it either (same mechanism as claimLoopbackIp: listen on its claim port).
      const other = await run(process.execPath, [
        '-e',
        `require('net').createServer().listen({host: '${claim.ip}', port: ${LOOPBACK_CLAIM_PORT}, exclusive: true}, () => process.exit(0)).on('error', (e) => { console.log(e.code); process.exit(3) })`,
      ])
      expect(other.stdout.trim()).toBe('EADDRINUSE')
    } finally {
      await claim.release()
    }
    const again = await claimLoopbackIp(claim.n, {timeoutMs: 5000})
    await again.release()
  })
})

describe('MariaDB test server', () => {
  let db: MariaDb

  beforeAll(async () => {
    db = await timed('MariaDB start', () => startMariaDb())
  })
  afterAll(async () => {
    await db?.stop()
  })

  it('lets its user in over TCP with its password (mariadb CLI, MYSQL_PWD), and nobody without', async () => {
    expect(db.url).toBe(`mysql://mailring@127.0.0.1:${db.port}/mailring`)
    expect(db.url).not.toContain(db.password)
    const cli = (password: string) =>
      run(
        'mariadb',
        [
          '--no-defaults',
          '--protocol=tcp',
          '-h',
          '127.0.0.1',
          '-P',
          String(db.port),
          '-u',
          db.user,
          '-N',
          '-B',
          db.database,
          '-e',
          'SELECT CURRENT_USER(), DATABASE(), 1',
        ],
        {env: {MYSQL_PWD: password}},
      )
    const ok = await cli(db.password)
    expect(ok.stderr).toBe('')
    expect(ok.stdout).toBe(`mailring@127.0.0.1\tmailring\t1\n`)
    const denied = await cli('wrong')
    expect(denied.exitCode).not.toBe(0)
    expect(denied.stderr).toMatch(/Access denied/)
    const rootOverTcp = await db.exec('SELECT 1', {user: 'root', password: ''})
    expect(rootOverTcp.stderr).toMatch(/Access denied/)
  })

  it('runs SQL as root over the socket and creates restricted users', async () => {
    await db.rootExec(
      'CREATE TABLE mailring.t (id INT PRIMARY KEY, name VARCHAR(50)); INSERT INTO mailring.t VALUES (1, "ä")',
    )
    expect(await db.rootExec('SELECT name FROM mailring.t')).toBe('ä\n')
    const reader = await db.createUser('reader', 'SELECT ON `mailring`.*')
    const read = await db.exec('SELECT id FROM t', reader)
    expect(read.stdout).toBe('1\n')
    const write = await db.exec('INSERT INTO t VALUES (2, "x")', reader)
    expect(write.exitCode).not.toBe(0)
    expect(write.stderr).toMatch(/INSERT command denied/)
    // The main user also works over the socket as 'mailring'@'localhost'.
    const overSocket = await run(
      'mariadb',
      ['--no-defaults', '-S', db.socketPath, '-u', db.user, '-N', '-e', 'SELECT CURRENT_USER()'],
      {
        env: {MYSQL_PWD: db.password},
      },
    )
    expect(overSocket.stdout).toBe('mailring@localhost\n')
  })

  it("kills a user's connections, and restarts on the same port with the same data", async () => {
    // A client that holds its connection open: killed, it ends.
    const holding = db.exec('SELECT SLEEP(30)')
    const users = `SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE USER = '${db.user}'`
    for (let i = 0; i < 100 && (await db.rootExec(users)).trim() === '0'; i++)
      await new Promise((resolve) => setTimeout(resolve, 50))
    expect(await db.killConnections(db.user)).toBe(1)
    expect((await holding).exitCode).not.toBe(0)
    expect(await db.killConnections(db.user)).toBe(0)
    const pid = db.pid
    await timed('MariaDB restart', () => db.restart(200))
    expect(isAlive(pid)).toBe(false)
    expect(db.pid).not.toBe(pid)
    expect((await db.exec('SELECT name FROM t')).stdout).toBe('ä\n')
  })

  it('stop() ends the server and removes its folder', async () => {
    await timed('MariaDB stop', () => db.stop())
    expect(isAlive(db.pid)).toBe(false)
    expect(fs.existsSync(db.dir)).toBe(false)
    expect(await canConnect(db.port)).toBe(false)
  })
})

describe('Dovecot test hosts', () => {
  const alice = {user: 'alice@example.com', password: 'alice-secret'}
  let a: DovecotHost
  let b: DovecotHost

  beforeAll(async () => {
    const users = [{...alice, userdbFields: {mail_replica: 'tcp:127.0.0.250:12345'}}]
    ;[a, b] = (await timed('two Dovecot hosts start', () => startDovecotHosts([{users}, {users}]))) as [
      DovecotHost,
      DovecotHost,
    ]
  })
  afterAll(async () => {
    await Promise.all([a?.stop(), b?.stop()])
  })

  it('run on two loopback addresses with their own ports', () => {
    expect(a.ip).not.toBe(b.ip)
    expect(a.ip).toMatch(/^127\.0\.0\.\d+$/)
    expect(new Set([a.imapPort, a.lmtpPort, a.doveadmPort, a.httpPort]).size).toBe(4)
  })

  it('finds a passwd-file user with doveadm user, userdb fields included', async () => {
    const r = await a.doveadm(['user', '-f', 'mail_replica', alice.user])
    expect(r.stderr).toBe('')
    expect(r.stdout.trim()).toBe('tcp:127.0.0.250:12345')
    const unknown = await a.doveadm(['user', 'nobody@example.com'])
    expect(unknown.exitCode).toBe(67)
  })

  it('delivers over LMTP, reads over IMAP, and doveadm sync copies the mail to the other host', async () => {
    const message = [
      'From: sender@example.org',
      `To: ${alice.user}`,
      'Subject: Smoke test',
      'Message-ID: <smoke-1@example.org>',
      '',
      'Hello.',
      '.a line starting with a dot',
      '',
    ].join('\r\n')
    await timed('LMTP delivery', () => a.deliver(alice.user, message))
    const onA = await timed('IMAP listing', () => a.imapListMessages(alice.user, alice.password))
    expect(onA.exists).toBe(1)
    expect(onA.messages.map((m) => [m.subject, m.messageId])).toEqual([
      ['Smoke test', '<smoke-1@example.org>'],
    ])
    // Not looked at on b before the sync: an IMAP login there would create a second INBOX with its own
    // GUID, and the first sync would then end with "Mailbox changes caused a desync" (exit 2).
    expect(fs.existsSync(path.join(b.mailDir, 'example.com', 'alice'))).toBe(false)

    const sync = await timed('doveadm sync', () =>
      a.doveadm(['sync', '-u', alice.user, `tcp:${b.ip}:${b.doveadmPort}`]),
    )
    expect(sync.stderr).toBe('')
    expect(sync.exitCode).toBe(0)
    const onB = await b.imapListMessages(alice.user, alice.password)
    expect(onB.messages.map((m) => m.subject)).toEqual(['Smoke test'])
    const status = async (h: DovecotHost) =>
      (await h.doveadm(['-f', 'tab', 'mailbox', 'status', '-u', alice.user, 'messages guid', 'INBOX'])).stdout
    expect(await status(b)).toBe(await status(a))
    const text = await b.doveadm(['fetch', '-u', alice.user, 'text', 'all'])
    expect(text.stdout).toContain('\n.a line starting with a dot\n')

    await expect(a.imapListMessages(alice.user, 'wrong')).rejects.toThrow(/LOGIN \.\.\. failed/)
  })

  it('answers the doveadm HTTP API and reloads', async () => {
    const answer = await b.doveadmHttp([['user', {userMask: alice.user}, 'tag1']])
    expect(answer).toMatchObject([
      ['doveadmResponse', {[alice.user]: {mail_replica: 'tcp:127.0.0.250:12345'}}, 'tag1'],
    ])
    await timed('Dovecot reload', () => b.reload())
    expect((await b.doveadm(['user', alice.user])).exitCode).toBe(0)
  })

  it('stop() ends every Dovecot process and gives the address back', async () => {
    await timed('Dovecot stop', () => a.stop())
    expect(isAlive(a.pid)).toBe(false)
    expect(fs.existsSync(a.dir)).toBe(false)
    expect(await canConnect(a.imapPort, a.ip)).toBe(false)
    expect(processesMatching(a.instanceName)).toEqual([])
    const claim = await claimLoopbackIp(a.n, {timeoutMs: 5000})
    await claim.release()
  })
})

describe('Dovecot hosts that know each other before they start', () => {
  let hosts: DovecotHost[] = []

  afterAll(async () => {
    await Promise.all(hosts.map((h) => h.stop()))
  })

  it('replicate a delivered mail with the stock 2.3 replicator (reserved addresses)', async () => {
    const addresses = await Promise.all([reserveDovecotAddress(), reserveDovecotAddress()])
    const carol = (peer: DovecotAddress) => [
      {
        user: 'carol@example.com',
        password: 'c',
        userdbFields: {mail_replica: `tcp:${peer.ip}:${peer.doveadmPort}`},
      },
    ]
    // Only a replicates (to b): with the replicator on both, started together, this was flaky (see
    // REPLICATION_CONFIG).
    hosts = await startDovecotHosts([
      {address: addresses[0], users: carol(addresses[1]), extraConfig: REPLICATION_CONFIG},
      {address: addresses[1], users: carol(addresses[0])},
    ])
    const [a, b] = hosts as [DovecotHost, DovecotHost]
    await a.deliver('carol@example.com', 'Subject: replicated\r\n\r\nx\r\n')
    // Counted on disk: a doveadm or IMAP look at b before the first sync would create b's INBOX with a
    // GUID of its own, and the sync would end in a desync warning.
    const filesOnB = () =>
      ['new', 'cur']
        .map((d) => path.join(b.mailDir, 'example.com', 'carol', d))
        .reduce((n, d) => n + (fs.existsSync(d) ? fs.readdirSync(d).length : 0), 0)
    await timed('replication to the peer', () =>
      expect.poll(filesOnB, {timeout: 15_000, interval: 50}).toBe(1),
    )
    const onB = await b.imapListMessages('carol@example.com', 'c')
    expect(onB.messages.map((m) => m.subject)).toEqual(['replicated'])
  })
})

describe('OpenSSH test server', () => {
  let sshd: SshServer
  let scratch: string

  beforeAll(async () => {
    sshd = await timed('sshd start', () => startSshd())
    scratch = makeTempDir('mr-ssh-test')
  })
  afterAll(async () => {
    await sshd?.stop()
    if (scratch) removeDir(scratch)
  })

  const ssh = (knownHosts: string, ...command: string[]) =>
    run('ssh', [
      '-F',
      '/dev/null',
      '-i',
      sshd.clientKeyPath,
      '-o',
      'IdentitiesOnly=yes',
      '-o',
      'BatchMode=yes',
      '-o',
      `UserKnownHostsFile=${knownHosts}`,
      '-o',
      'GlobalKnownHostsFile=/dev/null',
      '-o',
      'StrictHostKeyChecking=yes',
      '-p',
      String(sshd.port),
      'root@127.0.0.1',
      ...command,
    ])

  it('logs root in with the client key when known_hosts holds knownHostsLine', async () => {
    expect(sshd.knownHostsLine).toBe(`[127.0.0.1]:${sshd.port} ${sshd.hostPublicKey}`)
    expect(sshd.hostPublicKey).toMatch(/^ssh-ed25519 AAAA[\w+/=]+$/)
    const file = path.join(scratch, 'known_hosts')
    fs.writeFileSync(file, sshd.knownHostsLine + '\n')
    const r = await timed('ssh command', () => ssh(file, 'echo', 'ok'))
    expect(r.stderr).toBe('')
    expect(r.stdout).toBe('ok\n')
    expect((await run('ssh', [...sshd.sshArgs(), 'id', '-u'])).stdout).toBe('0\n')
  })

  it('is refused with an empty known_hosts and strict checking', async () => {
    const empty = path.join(scratch, 'empty_known_hosts')
    fs.writeFileSync(empty, '')
    const r = await ssh(empty, 'echo', 'ok')
    expect(r.exitCode).toBe(255)
    expect(r.stdout).toBe('')
    expect(r.stderr).toMatch(/Host key verification failed/)
  })

  it('reports the fingerprint ssh-keygen -l prints', async () => {
    const r = await run('ssh-keygen', ['-l', '-f', `${sshd.hostKeyPath}.pub`])
    expect(r.stdout.split(' ')[1]).toBe(sshd.hostKeyFingerprint)
  })

  it('rotates its host key: the old known_hosts line is then refused as a changed key', async () => {
    const old = path.join(scratch, 'old_known_hosts')
    fs.writeFileSync(old, sshd.knownHostsLine + '\n')
    const before = sshd.hostKeyFingerprint
    const info = await timed('sshd host key rotation', () => sshd.rotateHostKey())
    expect(info.hostKeyFingerprint).not.toBe(before)
    expect(sshd.hostKeyFingerprint).toBe(info.hostKeyFingerprint)
    const refused = await ssh(old, 'echo', 'ok')
    expect(refused.exitCode).toBe(255)
    expect(refused.stderr).toMatch(/REMOTE HOST IDENTIFICATION HAS CHANGED/)
    const accepted = await ssh(sshd.knownHostsPath, 'echo', 'ok')
    expect(accepted.stdout).toBe('ok\n')
  })

  it('stop() ends sshd and removes its folder', async () => {
    await timed('sshd stop', () => sshd.stop())
    expect(isAlive(sshd.pid)).toBe(false)
    expect(fs.existsSync(sshd.dir)).toBe(false)
    expect(await canConnect(sshd.port)).toBe(false)
  })
})
