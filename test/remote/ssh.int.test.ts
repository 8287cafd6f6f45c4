/**
 * SshConnection against a real OpenSSH sshd (test/support/sshd.ts), on 127.0.0.1 with its own host and
 * client keys. Every test reads only the known_hosts files and keys it names (no ~/.ssh, no ssh-agent).
 */
import {execFileSync, spawn} from 'node:child_process'
import * as fs from 'node:fs'
import * as net from 'node:net'
import * as path from 'node:path'

import {afterAll, afterEach, beforeAll, describe, expect, it} from 'vitest'

import {MailringError} from '../../src/core/errors.js'
import {failures, runPerServer} from '../../src/remote/pool.js'
import {SshConnection, type SshConnectOptions, SshRunCache} from '../../src/remote/ssh.js'
import {freePort} from '../support/ports.js'
import {makeTempDir, removeDir} from '../support/proc.js'
import {loseExitStatus} from '../support/lost-exit-status.js'
import {startSshd, type SshServer} from '../support/sshd.js'

let sshd: SshServer
let scratch: string
/** known_hosts holding exactly the server's line. */
let trusted: string
const opened: SshConnection[] = []

const RESOLVE = {configPath: false, systemConfigPath: false, env: {}} as const

function options(extra: Partial<SshConnectOptions> = {}): SshConnectOptions {
  return {
    host: sshd.host,
    port: sshd.port,
    user: sshd.user,
    identityFiles: [sshd.clientKeyPath],
    agent: false,
    knownHostsFiles: [trusted],
    connectAttempts: 1,
    resolve: RESOLVE,
    ...extra,
  }
}

async function connect(extra: Partial<SshConnectOptions> = {}): Promise<SshConnection> {
  const c = await SshConnection.connect(options(extra))
  opened.push(c)
  return c
}

/** The error a connection attempt fails with (the test fails if it connects). */
async function connectError(extra: Partial<SshConnectOptions> = {}): Promise<MailringError> {
  try {
    const c = await connect(extra)
    throw new Error(`connected to ${c.label} unexpectedly`)
  } catch (error) {
    expect(error).toBeInstanceOf(MailringError)
    return error as MailringError
  }
}

function file(name: string, content?: string): string {
  const p = path.join(scratch, name)
  if (content !== undefined) fs.writeFileSync(p, content)
  return p
}

function keygen(name: string, passphrase = ''): string {
  const p = path.join(scratch, name)
  execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', passphrase, '-C', name, '-f', p])
  return p
}

/** "Accepted publickey" lines in sshd's log: one per authenticated connection. */
function acceptedLogins(): number {
  return (fs.readFileSync(sshd.logPath, 'utf8').match(/Accepted publickey for /g) ?? []).length
}

async function waitFor(check: () => Promise<boolean>, timeoutMs: number): Promise<boolean> {
  const end = Date.now() + timeoutMs
  while (Date.now() < end) {
    if (await check()) return true
    await new Promise((r) => setTimeout(r, 100))
  }
  return check()
}

beforeAll(async () => {
  sshd = await startSshd()
  scratch = makeTempDir('mr-ssh-test')
  trusted = file('known_hosts', sshd.knownHostsLine + '\n')
})

afterEach(async () => {
  await Promise.all(opened.splice(0).map((c) => c.close()))
})

afterAll(async () => {
  await sshd?.stop()
  if (scratch) removeDir(scratch)
})

describe('exec', () => {
  /** A command with output on both streams and an exit status, and what exec reports of it. */
  const EXITS_3 = {
    command: `echo "it's out"; echo err >&2; exit 3`,
    result: {stdout: "it's out\n", stderr: 'err\n', exitCode: 3},
  }

  it('returns stdout, stderr and the exit code; passes stdin; reports signals', async () => {
    const c = await connect()
    expect(c.label).toBe(`127.0.0.1:${sshd.port}`)
    expect(c.hostKey).toEqual({type: 'ssh-ed25519', fingerprint: sshd.hostKeyFingerprint})
    expect(await c.exec(EXITS_3.command)).toEqual(EXITS_3.result)
    expect(await c.exec('true')).toEqual({stdout: '', stderr: '', exitCode: 0})
    expect(await c.exec('tr a-z A-Z', {stdin: 'hello\nworld'})).toMatchObject({
      stdout: 'HELLO\nWORLD',
      exitCode: 0,
    })
    // A command that does not read its stdin does not hang or fail.
    expect(await c.exec('echo ignored', {stdin: Buffer.alloc(1 << 20, 1)})).toMatchObject({
      stdout: 'ignored\n',
    })
    expect(await c.exec('kill -TERM $$')).toMatchObject({exitCode: null, signal: 'SIGTERM'})
    // The same strings, without the server-side timeout wrapper.
    expect(await c.exec(`echo "it's out"; exit 4`, {remoteKill: false})).toEqual({
      stdout: "it's out\n",
      stderr: '',
      exitCode: 4,
    })
  })

  it('a channel that loses the exit status still reports it: the status the shell printed stands in', async () => {
    const c = await connect()
    const restore = loseExitStatus()
    try {
      expect(await c.exec(EXITS_3.command)).toEqual(EXITS_3.result)
      expect(await c.exec('printf no-newline >&2')).toEqual({stdout: '', stderr: 'no-newline', exitCode: 0})
      expect(await c.exec('cat', {stdin: 'fed on stdin\n'})).toEqual({
        stdout: 'fed on stdin\n',
        stderr: '',
        exitCode: 0,
      })
      expect(await c.exec('false', {remoteKill: false})).toEqual({stdout: '', stderr: '', exitCode: 1})
      // Output over the limit: the line is found all the same, and never kept.
      const capped = await c.exec('head -c 5000 /dev/zero >&2; exit 4', {maxOutputBytes: 1000})
      expect(capped).toMatchObject({exitCode: 4, truncated: true})
      expect(capped.stderr.length).toBe(1000)
      // A shell killed by a signal prints nothing: with the signal lost too, nothing is known.
      expect(await c.exec('kill -KILL $$')).toMatchObject({exitCode: null})
    } finally {
      restore()
    }
  })

  it('respond: what is written to stdin depends on what the command printed first (one command)', async () => {
    const c = await connect()
    const seen: string[] = []
    const script = `printf 'question: '; sleep 0.2; echo 'what is 6 times 7?'; IFS= read -r answer; echo "got $answer"`
    const r = await c.exec(script, {
      respond: (stdout) => {
        seen.push(stdout.toString())
        return stdout.toString().endsWith('?\n') ? '42\n' : undefined
      },
    })
    expect(r).toMatchObject({stdout: 'question: what is 6 times 7?\ngot 42\n', exitCode: 0})
    // Called as the output grew, until it answered.
    expect(seen.at(-1)).toBe('question: what is 6 times 7?\n')
    expect(seen.length).toBeGreaterThanOrEqual(2)
    // An error from respond rejects, and stdin is closed (the command sees its end).
    await expect(
      c.exec('echo go; cat; echo done', {
        respond: () => {
          throw new Error('no answer')
        },
      }),
    ).rejects.toThrow('no answer')
    expect((await c.exec('echo still usable')).stdout).toBe('still usable\n')
  })

  it('reads both streams completely when a command writes megabytes to each', async () => {
    const c = await connect()
    const r = await c.exec(
      "head -c 3000000 /dev/zero | tr '\\0' o; head -c 3000000 /dev/zero | tr '\\0' e >&2",
    )
    expect(r.exitCode).toBe(0)
    expect(r.stdout.length).toBe(3_000_000)
    expect(r.stderr.length).toBe(3_000_000)
    expect(r.stdout.replace(/o/g, '')).toBe('')
    const capped = await c.exec('head -c 100000 /dev/zero', {maxOutputBytes: 1000})
    expect(capped).toMatchObject({exitCode: 0, truncated: true})
    expect(capped.stdout.length).toBe(1000)
  })

  it('kills a command that outlives its timeout; the connection stays usable', async () => {
    const c = await connect()
    const started = Date.now()
    await expect(c.exec('sleep 41.5; echo never', {timeoutMs: 500})).rejects.toThrow(
      new RegExp(
        `^Command \`sleep\` on 127\\.0\\.0\\.1:${sshd.port} timed out after 0\\.5 s and was killed\\.$`,
      ),
    )
    expect(Date.now() - started).toBeLessThan(5000) // not the 41.5 s of the command
    const gone = await waitFor(
      async () => (await c.exec('pgrep -f "^sleep 41.5" || true')).stdout === '',
      5000,
    )
    expect(gone).toBe(true)
    expect(await c.exec('echo still here')).toMatchObject({stdout: 'still here\n'})
  })

  it('without remoteKill, a timeout only closes the channel (OpenSSH refuses signals in root sessions)', async () => {
    const c = await connect()
    await expect(c.exec('sleep 42.5', {timeoutMs: 300, remoteKill: false, label: 'nap'})).rejects.toThrow(
      /^Command `nap` on .* timed out after 0\.3 s/,
    )
    const left = (await c.exec('pgrep -f "^sleep 42.5" || true')).stdout.split(/\s+/).filter(Boolean)
    // This documents OpenSSH's behaviour that makes remoteKill the default; clean up by pid.
    for (const pid of left) process.kill(Number(pid), 'SIGKILL')
    expect(left.length).toBe(1)
  })

  it('runs at most maxChannels commands at once on one connection', async () => {
    const c = await connect({maxChannels: 2})
    const started = Date.now()
    const results = await Promise.all(Array.from({length: 6}, () => c.exec('sleep 0.4; echo done')))
    const elapsed = Date.now() - started
    expect(results.every((r) => r.stdout === 'done\n')).toBe(true)
    expect(elapsed).toBeGreaterThanOrEqual(1150) // three waves of two
    // Many more commands than OpenSSH's MaxSessions (10) at once: they queue instead of failing.
    const d = await connect()
    const many = await Promise.all(Array.from({length: 25}, (_, i) => d.exec(`echo ${i}`)))
    expect(many.map((r) => r.stdout)).toEqual(Array.from({length: 25}, (_, i) => `${i}\n`))
    await expect(connect({maxChannels: 10})).rejects.toThrow(/maxChannels must be between 1 and 9/)
  })
})

describe('reading a file over SFTP', () => {
  it('readFile: the content, or undefined when there is no such file', async () => {
    const c = await connect()
    const a = file('a.txt', 'A\n')
    expect((await c.readFile(a))?.toString('utf8')).toBe('A\n')
    expect(await c.readFile(path.join(scratch, 'missing'))).toBeUndefined()
  })

  it('fails with one clear line when access is denied', async () => {
    // An unprivileged user (nologin shell, but SFTP runs inside sshd): denied in a root-owned folder.
    const locked = path.join(scratch, 'locked')
    fs.mkdirSync(locked, {mode: 0o755})
    const secret = path.join(locked, 'secret.conf')
    fs.writeFileSync(secret, 'secret', {mode: 0o600})
    const nobody = await connect({user: 'nobody'})
    const who = `nobody@127.0.0.1:${sshd.port}`
    await expect(nobody.readFile(secret)).rejects.toMatchObject({
      message: `Permission denied: cannot read ${secret} on ${who}.`,
      code: 'ssh_permission_denied',
    })
  })
})

describe('host keys', () => {
  it('refuses an unknown host key, naming its fingerprint and how to trust it', async () => {
    const empty = file('empty_known_hosts', '')
    const error = await connectError({knownHostsFiles: [empty]})
    expect(error.code).toBe('ssh_host_key_unknown')
    expect(error.message).toBe(
      `The host key of 127.0.0.1:${sshd.port} is unknown (ssh-ed25519 ${sshd.hostKeyFingerprint}): check that fingerprint on the server (ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub), then run \`ssh-keyscan -p ${sshd.port} 127.0.0.1 >> ${empty}\`, or connect with --accept-new.`,
    )
    expect(fs.readFileSync(empty, 'utf8')).toBe('')
  })

  it('accept-new records an unknown key (creating the folder 0700) and trusts it from then on', async () => {
    const home = path.join(scratch, 'home-accept')
    const kh = path.join(home, '.ssh', 'known_hosts')
    const notes: string[] = []
    const c = await connect({
      knownHostsFiles: [kh],
      hostKeyPolicy: 'accept-new',
      onNote: (n) => notes.push(n),
    })
    expect(await c.exec('echo ok')).toMatchObject({stdout: 'ok\n'})
    expect(fs.statSync(path.dirname(kh)).mode & 0o777).toBe(0o700)
    expect(fs.readFileSync(kh, 'utf8')).toBe(sshd.knownHostsLine + '\n')
    expect(notes).toContain(
      `added the host key of 127.0.0.1:${sshd.port} (ssh-ed25519 ${sshd.hostKeyFingerprint}) to ${kh}`,
    )
    // strict now works, and OpenSSH's own client trusts the file we wrote.
    await connect({knownHostsFiles: [kh]})
    const r = execFileSync('ssh', [...sshd.sshArgs({knownHostsFile: kh}), 'echo', 'openssh ok'], {
      encoding: 'utf8',
    })
    expect(r).toBe('openssh ok\n')
  })

  it('refuses a changed host key loudly, even with accept-new, and leaves known_hosts alone', async () => {
    const other = keygen('other_host_key')
    const otherPub = fs.readFileSync(`${other}.pub`, 'utf8').split(' ').slice(0, 2).join(' ')
    const content = `# servers\n[127.0.0.1]:${sshd.port} ${otherPub}\n`
    const kh = file('changed_known_hosts', content)
    for (const hostKeyPolicy of ['strict', 'accept-new'] as const) {
      const error = await connectError({knownHostsFiles: [kh], hostKeyPolicy})
      expect(error.code).toBe('ssh_host_key_changed')
      expect(error.message).toMatch(/^WARNING: the host key of 127\.0\.0\.1:\d+ changed: /)
      expect(error.message).toContain(`it presented ssh-ed25519 ${sshd.hostKeyFingerprint}`)
      expect(error.message).toContain('possible man-in-the-middle attack')
      expect(error.message).toContain(`remove the old line 2 of ${kh}`)
      expect(error.message).toContain(`ssh-keygen -R '[127.0.0.1]:${sshd.port}' -f ${kh}`)
      expect(error.message).not.toContain('\n')
    }
    expect(fs.readFileSync(kh, 'utf8')).toBe(content)
  })

  it('refuses a revoked host key even when another line trusts it', async () => {
    const kh = file('revoked_known_hosts', `@revoked * ${sshd.hostPublicKey}\n${sshd.knownHostsLine}\n`)
    const error = await connectError({knownHostsFiles: [kh], hostKeyPolicy: 'accept-new'})
    expect(error.code).toBe('ssh_host_key_revoked')
    expect(error.message).toBe(
      `The host key of 127.0.0.1:${sshd.port} (ssh-ed25519 ${sshd.hostKeyFingerprint}) is revoked by line 1 of ${kh}: connection refused.`,
    )
  })

  it('trusts hashed known_hosts entries written by ssh-keygen -H', async () => {
    const kh = file('hashed_known_hosts', `${sshd.knownHostsLine}\n`)
    execFileSync('ssh-keygen', ['-H', '-f', kh], {stdio: 'ignore'})
    expect(fs.readFileSync(kh, 'utf8')).toMatch(/^\|1\|/)
    const c = await connect({knownHostsFiles: [kh]})
    expect(await c.exec('echo hashed')).toMatchObject({stdout: 'hashed\n'})
  })

  it('prefers the host key type known_hosts has, as OpenSSH does, when the server has several', async () => {
    const rsa = path.join(scratch, 'ssh_host_rsa_key')
    execFileSync('ssh-keygen', ['-q', '-t', 'rsa', '-b', '2048', '-N', '', '-f', rsa])
    const two = await startSshd({extraConfig: `HostKey ${rsa}`}) // HostKey adds to the ed25519 one
    try {
      const rsaLine = `[127.0.0.1]:${two.port} ${fs.readFileSync(`${rsa}.pub`, 'utf8').split(' ').slice(0, 2).join(' ')}`
      const onlyRsa = file('rsa_known_hosts', rsaLine + '\n')
      const c = await connect({
        port: two.port,
        knownHostsFiles: [onlyRsa],
        identityFiles: [two.clientKeyPath],
      })
      expect(c.hostKey.type).toBe('ssh-rsa')
      await c.close()
      const onlyEd = file('ed_known_hosts', two.knownHostsLine + '\n')
      const d = await connect({port: two.port, knownHostsFiles: [onlyEd], identityFiles: [two.clientKeyPath]})
      expect(d.hostKey).toEqual({type: 'ssh-ed25519', fingerprint: two.hostKeyFingerprint})
      await d.close()
    } finally {
      await two.stop()
    }
  })

  it('refuses a key of another type than the one known, even with accept-new', async () => {
    const rsa = path.join(scratch, 'known_rsa_key')
    execFileSync('ssh-keygen', ['-q', '-t', 'rsa', '-b', '2048', '-N', '', '-f', rsa])
    const rsaPub = fs.readFileSync(`${rsa}.pub`, 'utf8').split(' ').slice(0, 2).join(' ')
    // known_hosts has an RSA key for the server, which only offers ed25519.
    const kh = file('other_type_known_hosts', `[127.0.0.1]:${sshd.port} ${rsaPub}\n`)
    const error = await connectError({knownHostsFiles: [kh], hostKeyPolicy: 'accept-new'})
    expect(error.code).toBe('ssh_host_key_changed')
    expect(error.message).toBe(
      `WARNING: 127.0.0.1:${sshd.port} presented a ssh-ed25519 ${sshd.hostKeyFingerprint} host key, but known_hosts has a ssh-rsa key for it (line 1 of ${kh}) and no ssh-ed25519 key: possible man-in-the-middle attack, connection refused even with --accept-new; if the server's keys changed, check the fingerprint and replace that line.`,
    )
  })

  it('with @cert-authority only, refuses and says host certificates are not verified', async () => {
    const kh = file('ca_known_hosts', `@cert-authority * ${sshd.hostPublicKey}\n`)
    const error = await connectError({knownHostsFiles: [kh]})
    expect(error.code).toBe('ssh_host_key_unknown')
    expect(error.message).toContain('mailring does not verify host certificates')
  })

  it('follows ~/.ssh/config: alias, HostName, Port, User, IdentityFile, accept-new with hashed names', async () => {
    const home = path.join(scratch, 'home-config')
    fs.mkdirSync(path.join(home, '.ssh'), {recursive: true, mode: 0o700})
    const kh = path.join(home, '.ssh', 'known_hosts')
    fs.writeFileSync(
      path.join(home, '.ssh', 'config'),
      [
        'Host testbox',
        '  HostName 127.0.0.1',
        `  Port ${sshd.port}`,
        '  User root',
        `  IdentityFile ${sshd.clientKeyPath}`,
        '  StrictHostKeyChecking accept-new',
        '  HashKnownHosts yes',
        '',
      ].join('\n'),
    )
    const resolve = {home, systemConfigPath: false as const, env: {}}
    const c = await SshConnection.connect({host: 'testbox', resolve})
    opened.push(c)
    expect(c.label).toBe(`testbox (127.0.0.1):${sshd.port}`)
    expect(await c.exec('whoami')).toMatchObject({stdout: 'root\n'})
    const text = fs.readFileSync(kh, 'utf8')
    expect(text).toMatch(/^\|1\|\S+ ssh-ed25519 \S+\n$/)
    expect(
      execFileSync('ssh-keygen', ['-F', `[127.0.0.1]:${sshd.port}`, '-f', kh], {encoding: 'utf8'}),
    ).toContain(sshd.hostPublicKey)
  })
})

describe('authentication and connection errors', () => {
  it('names the methods tried when authentication fails', async () => {
    const wrong = keygen('wrong_client_key')
    const error = await connectError({identityFiles: [wrong]})
    expect(error.code).toBe('ssh_auth')
    expect(error.message).toBe(
      `Authentication failed for root@127.0.0.1:${sshd.port}: tried key ${wrong} (ssh-ed25519); the server accepts: publickey. Add your public key to ~root/.ssh/authorized_keys on the server, or use the right key (IdentityFile, ssh-agent).`,
    )
  })

  it('logs in through ssh-agent, and goes on to key files when the agent is unusable', async () => {
    const socket = path.join(scratch, 'agent.sock')
    const agent = spawn('ssh-agent', ['-D', '-a', socket], {stdio: 'ignore'})
    try {
      expect(await waitFor(async () => fs.existsSync(socket), 5000)).toBe(true)
      execFileSync('ssh-add', [sshd.clientKeyPath], {
        env: {...process.env, SSH_AUTH_SOCK: socket},
        stdio: 'ignore',
      })
      // The agent alone (no key files), found through SSH_AUTH_SOCK as ssh would.
      const c = await connect({
        identityFiles: [],
        agent: true,
        resolve: {...RESOLVE, env: {SSH_AUTH_SOCK: socket}},
      })
      expect(await c.exec('echo via agent')).toMatchObject({stdout: 'via agent\n'})
      // An agent without the right key, then a wrong key: both are named.
      execFileSync('ssh-add', ['-D'], {env: {...process.env, SSH_AUTH_SOCK: socket}, stdio: 'ignore'})
      const wrong = keygen('wrong_key_2')
      const error = await connectError({identityFiles: [wrong], agent: socket})
      expect(error.message).toContain(`tried ssh-agent, key ${wrong} (ssh-ed25519)`)
    } finally {
      agent.kill()
    }
    // A stale SSH_AUTH_SOCK does not stop the key files from being tried.
    const notes: string[] = []
    const c = await connect({agent: path.join(scratch, 'stale.sock'), onNote: (n) => notes.push(n)})
    expect(await c.exec('echo via key')).toMatchObject({stdout: 'via key\n'})
    expect(notes.join()).toMatch(/ssh-agent .*stale\.sock is not usable/)
  })

  it('skips an encrypted key with a note and logs in with the next one', async () => {
    const encrypted = keygen('encrypted_key', 'a passphrase')
    const notes: string[] = []
    const c = await connect({identityFiles: [encrypted, sshd.clientKeyPath], onNote: (n) => notes.push(n)})
    expect(await c.exec('echo in')).toMatchObject({stdout: 'in\n'})
    expect(notes).toEqual([
      `skipping key ${encrypted}: it is encrypted (add it to ssh-agent with ssh-add to use it)`,
    ])
    expect(notes.join()).not.toContain('a passphrase')
  })

  it('says so when there is no key at all', async () => {
    const error = await connectError({identityFiles: [path.join(scratch, 'nonexistent_key')]})
    expect(error.code).toBe('ssh_no_key')
    expect(error.message).toMatch(/^No SSH key to log in to 127\.0\.0\.1:\d+ as root: /)
  })

  it('reports a refused connection on a closed port in one line', async () => {
    const port = await freePort()
    const error = await connectError({port})
    expect(error.code).toBe('ssh_connection_refused')
    expect(error.message).toBe(
      `Connection to 127.0.0.1:${port} refused: is sshd running there, and listening on port ${port}?`,
    )
  })

  it('times out a server that never speaks SSH, retrying once when asked to', async () => {
    const silent = net.createServer(() => {}) // accepts and says nothing
    await new Promise<void>((r) => silent.listen(0, '127.0.0.1', r))
    const port = (silent.address() as net.AddressInfo).port
    let accepted = 0
    silent.on('connection', (s) => {
      accepted++
      s.on('error', () => {})
    })
    try {
      const notes: string[] = []
      const started = Date.now()
      const error = await connectError({
        port,
        readyTimeoutMs: 400,
        connectAttempts: 2,
        retryDelayMs: 50,
        onNote: (n) => notes.push(n),
      })
      expect(Date.now() - started).toBeLessThan(8000) // not the default 20 s
      expect(error.code).toBe('ssh_timeout')
      expect(error.message).toBe(
        `Timed out after 0.4 s connecting to 127.0.0.1:${port} over SSH: check the address, the port and firewalls.`,
      )
      expect(accepted).toBe(2)
      expect(notes).toHaveLength(1)
      expect(notes[0]).toMatch(/Retrying \(attempt 2 of 2\)/)
    } finally {
      silent.close()
    }
  })

  it('reports a host name that does not resolve', async () => {
    const error = await connectError({host: 'no-such-host.invalid', readyTimeoutMs: 10_000})
    expect(error.code).toBe('ssh_dns')
    expect(error.message).toMatch(
      /^Cannot resolve the host name no-such-host\.invalid \(E\w+\): check the server's address and DNS\.$/,
    )
  })
})

describe('authentication without a query', () => {
  it('logs in with a key file in one request: the signed one, no query first', async () => {
    // sshd logs "Postponed publickey" for a query it answered with PK_OK; a signed request at once is
    // accepted without it.
    const before = fs.readFileSync(sshd.logPath, 'utf8')
    const c = await connect()
    expect((await c.exec('echo in')).stdout).toBe('in\n')
    const log = fs.readFileSync(sshd.logPath, 'utf8').slice(before.length)
    expect(log).toMatch(/Accepted publickey for root/)
    expect(log).not.toMatch(/Postponed publickey/)
  })
})

describe('a run cache', () => {
  it('reads the ssh config, known_hosts and key files once for all the connections of a run', async () => {
    const key = path.join(scratch, 'run-cache-key')
    fs.copyFileSync(sshd.clientKeyPath, key)
    fs.chmodSync(key, 0o600)
    const hosts = file('run-cache-known-hosts', sshd.knownHostsLine + '\n')
    const config = file('run-cache-config', `Host cached\n  HostName ${sshd.host}\n  Port ${sshd.port}\n`)
    const cache = new SshRunCache()
    const opts = options({
      host: 'cached',
      port: undefined,
      identityFiles: [key],
      knownHostsFiles: [hosts],
      resolve: {...RESOLVE, configPath: config},
      cache,
    })
    const first = await SshConnection.connect(opts)
    opened.push(first)
    // Emptied or spoilt after the first connection: the run goes on with what it read.
    fs.writeFileSync(config, '')
    fs.writeFileSync(hosts, '')
    fs.writeFileSync(key, 'not a key\n')
    const second = await SshConnection.connect(opts)
    opened.push(second)
    expect((await second.exec('echo again')).stdout).toBe('again\n')
    // Without the cache, the files are read again.
    await expect(SshConnection.connect({...opts, cache: undefined})).rejects.toThrow(MailringError)
  })
})

describe('one connection per server', () => {
  it('runs many steps over one SSH connection', async () => {
    const before = acceptedLogins()
    const c = await connect()
    const target = path.join(scratch, 'steps.conf')
    for (let i = 0; i < 5; i++) await c.exec(`echo step ${i}`)
    await Promise.all([c.exec('true'), c.exec('true'), c.exec('true')])
    for (let i = 0; i < 3; i++) await c.exec(`echo version ${i} > ${target}`)
    expect((await c.readFile(target))?.toString()).toBe('version 2\n')
    await c.close()
    expect(c.isOpen).toBe(false)
    await expect(c.exec('true')).rejects.toThrow(/The SSH connection to 127\.0\.0\.1:\d+ is closed\./)
    // sshd logs each authenticated connection once.
    expect(acceptedLogins() - before).toBe(1)
  })

  it('runPerServer runs a task per server with a connection each, reporting each failure', async () => {
    const closed = await freePort()
    const servers = [
      {name: 'good', port: sshd.port},
      {name: 'down', port: closed},
      {name: 'good2', port: sshd.port},
    ]
    const results = await runPerServer(
      servers,
      async (server) => {
        const c = await connect({port: server.port})
        try {
          return (await c.exec('echo $((6 * 7))')).stdout.trim()
        } finally {
          await c.close()
        }
      },
      {parallel: 2, continueOnError: true},
    )
    expect(results.map((r) => r.status)).toEqual(['ok', 'failed', 'ok'])
    expect(results[0]).toMatchObject({status: 'ok', value: '42'})
    expect(String((failures(results)[0]?.error as Error).message)).toMatch(
      /^Connection to 127\.0\.0\.1:\d+ refused/,
    )
  })
})
