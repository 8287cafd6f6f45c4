/**
 * A real OpenSSH server for a test: its own host key and a client key in a temp folder, root login with
 * that key only, on a free port of 127.0.0.1.
 *
 *   const ssh = await startSshd()
 *   afterAll(() => ssh.stop())
 *   await run('ssh', [...ssh.sshArgs(), 'echo', 'ok'])          // trusts exactly ssh.knownHostsLine
 *   const old = ssh.knownHostsLine; await ssh.rotateHostKey()    // "host key changed" tests
 */
import {createHash} from 'node:crypto'
import * as fs from 'node:fs'
import * as path from 'node:path'

import {freePort, waitForPort} from './ports.js'
import {
  type Daemon,
  isRoot,
  killGroup,
  makeTempDir,
  registerDaemon,
  removeDir,
  requireExecutable,
  runOk,
  startDaemon,
  stopDaemon,
  sweepOrphans,
  tailFile,
} from './proc.js'

const INSTALL_HINT = 'apt-get install -y openssh-server openssh-client'

export interface SshdOptions {
  /** Listen address (default 127.0.0.1); any 127.0.0.N works too. */
  host?: string
  /** Start with this host private key (copied; e.g. another server's hostKeyPath) instead of a new one. */
  hostKeyPath?: string
  /** More lines for authorized_keys, besides the generated client key. */
  authorizedKeys?: string[]
  /**
   * Let root's login shell read ~/.bashrc as it does for ssh commands (default false: sshd sets SHLVL=1 so
   * that bash skips it; this machine's .bashrc runs `pyenv init`, which costs about a second per command).
   */
  loadShellRc?: boolean
  /** Appended to sshd_config (sshd uses the first value it reads for most keywords, so this can't override). */
  extraConfig?: string
  /** Time allowed for the port to accept connections (default 20 s). */
  startTimeoutMs?: number
  /** More sshd command-line options (e.g. ['-r']: no re-exec per connection, OpenSSH < 9.8 only). */
  extraArgs?: string[]
}

export interface HostKeyInfo {
  /** 'ssh-ed25519 AAAA...' (no comment). */
  hostPublicKey: string
  /** '[127.0.0.1]:PORT ssh-ed25519 AAAA...', a known_hosts line for this server. */
  knownHostsLine: string
  /** 'SHA256:...' as `ssh-keygen -l` prints it. */
  hostKeyFingerprint: string
}

export interface SshServer extends HostKeyInfo {
  host: string
  port: number
  user: 'root'
  dir: string
  configPath: string
  logPath: string
  /** Private key that root's authorized_keys accepts (mode 0600). */
  clientKeyPath: string
  /** Its public half, 'ssh-ed25519 AAAA... comment'. */
  clientPublicKey: string
  /** The current host private key. */
  hostKeyPath: string
  /** A known_hosts file holding exactly knownHostsLine (rewritten by rotateHostKey()). */
  knownHostsPath: string
  /** The listening sshd. */
  pid: number
  /**
   * Arguments for `ssh` that log in as root with the client key and strict host key checking against
   * `knownHostsFile` (default knownHostsPath), ending with 'root@HOST': append the remote command.
   */
  sshArgs(options?: {knownHostsFile?: string}): string[]
  /** A new host key; sshd is restarted on the same port. Returns (and sets) the new key's facts. */
  rotateHostKey(): Promise<HostKeyInfo>
  /** Restarts sshd with the same configuration and port. */
  restart(): Promise<void>
  /** SIGTERM, wait for exit (SIGKILL after 10 s), remove the folder. Idempotent. */
  stop(): Promise<void>
}

function fingerprint(publicKeyLine: string): string {
  const blob = publicKeyLine.trim().split(/\s+/)[1] ?? ''
  return (
    'SHA256:' + createHash('sha256').update(Buffer.from(blob, 'base64')).digest('base64').replace(/=+$/, '')
  )
}

function keyInfo(hostKeyPath: string, host: string, port: number): HostKeyInfo {
  const [type, blob] = fs.readFileSync(`${hostKeyPath}.pub`, 'utf8').trim().split(/\s+/)
  const hostPublicKey = `${type} ${blob}`
  return {
    hostPublicKey,
    knownHostsLine: `${port === 22 ? host : `[${host}]:${port}`} ${hostPublicKey}`,
    hostKeyFingerprint: fingerprint(hostPublicKey),
  }
}

function ensurePrivsepDir(): void {
  if (fs.existsSync('/run/sshd')) return
  if (!isRoot())
    throw new Error('sshd needs the folder /run/sshd; create it as root: `mkdir -p -m 0755 /run/sshd`')
  fs.mkdirSync('/run/sshd', {recursive: true, mode: 0o755})
}

/** Starts an sshd (see SshdOptions). Fails, naming the packages to install, if OpenSSH is missing. */
export async function startSshd(options: SshdOptions = {}): Promise<SshServer> {
  const sshd = requireExecutable('/usr/sbin/sshd', INSTALL_HINT)
  const keygen = requireExecutable('ssh-keygen', INSTALL_HINT)
  requireExecutable('ssh', INSTALL_HINT) // the client the tests log in with
  ensurePrivsepDir()
  sweepOrphans()
  const host = options.host ?? '127.0.0.1'
  const timeoutMs = options.startTimeoutMs ?? 20_000
  const dir = makeTempDir('mr-sshd')
  const configPath = path.join(dir, 'sshd_config')
  const logPath = path.join(dir, 'sshd.log')
  const clientKeyPath = path.join(dir, 'id_ed25519')
  const authorizedKeysPath = path.join(dir, 'authorized_keys')
  const knownHostsPath = path.join(dir, 'known_hosts')
  let hostKeyPath = path.join(dir, 'ssh_host_ed25519_key')
  let keyGeneration = 0
  let daemon: Daemon | undefined
  let unregister: (() => void) | undefined
  let port = 0

  const newHostKey = async (): Promise<string> => {
    const file = path.join(dir, `ssh_host_ed25519_key${keyGeneration++ ? `.${keyGeneration}` : ''}`)
    await runOk(keygen, ['-q', '-t', 'ed25519', '-N', '', '-C', 'mailring-testbed-host', '-f', file])
    return file
  }

  const writeConfig = () =>
    fs.writeFileSync(
      configPath,
      [
        '# Written by test/support/sshd.ts',
        `Port ${port}`,
        `ListenAddress ${host}`,
        `HostKey ${hostKeyPath}`,
        `AuthorizedKeysFile ${authorizedKeysPath}`,
        `PidFile ${path.join(dir, 'sshd.pid')}`,
        'UsePAM no',
        'PermitRootLogin prohibit-password',
        'PubkeyAuthentication yes',
        'PasswordAuthentication no',
        'KbdInteractiveAuthentication no',
        // The key files live under /tmp, which StrictModes would reject as world-writable.
        'StrictModes no',
        'UseDNS no',
        'PrintMotd no',
        'LogLevel VERBOSE',
        'Subsystem sftp internal-sftp',
        ...(options.loadShellRc ? [] : ['SetEnv SHLVL=1']),
        options.extraConfig ?? '',
        '',
      ].join('\n'),
    )

  const launch = async (): Promise<void> => {
    writeConfig()
    const d = startDaemon(sshd, ['-D', '-e', ...(options.extraArgs ?? []), '-f', configPath], {
      logPath,
      cwd: dir,
    })
    daemon = d
    unregister = registerDaemon(d.pid, dir)
    try {
      await waitForPort(port, host, {
        timeoutMs,
        check: () => {
          if (!d.running()) throw new Error(`sshd exited during start-up:\n${tailFile(logPath)}`)
        },
        describe: () => tailFile(logPath),
      })
    } catch (e) {
      await halt()
      throw e
    }
  }

  const halt = async (): Promise<void> => {
    const d = daemon
    if (d) await stopDaemon(d, () => killGroup(d.pid, 'SIGTERM'), 10_000)
    unregister?.()
    unregister = undefined
  }

  try {
    if (options.hostKeyPath) {
      fs.copyFileSync(options.hostKeyPath, hostKeyPath)
      fs.chmodSync(hostKeyPath, 0o600)
      const pub = await runOk(keygen, ['-y', '-f', hostKeyPath])
      fs.writeFileSync(`${hostKeyPath}.pub`, pub)
      keyGeneration = 1
    } else {
      hostKeyPath = await newHostKey()
    }
    await runOk(keygen, [
      '-q',
      '-t',
      'ed25519',
      '-N',
      '',
      '-C',
      'mailring-testbed-client',
      '-f',
      clientKeyPath,
    ])
    const clientPublicKey = fs.readFileSync(`${clientKeyPath}.pub`, 'utf8').trim()
    fs.writeFileSync(
      authorizedKeysPath,
      [clientPublicKey, ...(options.authorizedKeys ?? [])].join('\n') + '\n',
    )

    for (let attempt = 1; ; attempt++) {
      port = await freePort(host)
      fs.writeFileSync(logPath, '')
      try {
        await launch()
        break
      } catch (e) {
        if (attempt < 3 && /Address already in use/.test(tailFile(logPath))) continue
        throw e
      }
    }

    let stopping: Promise<void> | undefined
    const server: SshServer = {
      host,
      port,
      user: 'root',
      dir,
      configPath,
      logPath,
      clientKeyPath,
      clientPublicKey,
      hostKeyPath,
      knownHostsPath,
      pid: daemon!.pid,
      ...keyInfo(hostKeyPath, host, port),
      sshArgs: (o = {}) => [
        '-F',
        '/dev/null',
        '-i',
        clientKeyPath,
        '-p',
        String(port),
        '-o',
        'IdentitiesOnly=yes',
        '-o',
        'BatchMode=yes',
        '-o',
        `UserKnownHostsFile=${o.knownHostsFile ?? knownHostsPath}`,
        '-o',
        'GlobalKnownHostsFile=/dev/null',
        '-o',
        'StrictHostKeyChecking=yes',
        '-o',
        'ConnectTimeout=10',
        `root@${host}`,
      ],
      restart: async () => {
        await halt()
        await launch()
        server.pid = daemon!.pid
      },
      rotateHostKey: async () => {
        hostKeyPath = await newHostKey()
        await server.restart()
        const info = keyInfo(hostKeyPath, host, port)
        Object.assign(server, info, {hostKeyPath})
        fs.writeFileSync(knownHostsPath, info.knownHostsLine + '\n')
        return info
      },
      stop: () =>
        (stopping ??= (async () => {
          await halt()
          removeDir(dir)
        })()),
    }
    fs.writeFileSync(knownHostsPath, server.knownHostsLine + '\n')
    return server
  } catch (e) {
    await halt()
    removeDir(dir)
    throw e
  }
}
