/**
 * A real Dovecot 2.3 "host" for a test: its own loopback address 127.0.0.N, configuration, base_dir and mail
 * folder in a temp dir, and free ports for IMAP, LMTP, doveadm (TCP) and the doveadm HTTP API.
 *
 *   const a = await startDovecot({users: [{user: 'alice@example.com', password: 'pw'}]})
 *   afterAll(() => a.stop())
 *   await a.deliver('alice@example.com', 'Subject: hi\r\n\r\nbody\r\n')          // LMTP
 *   const box = await a.imapListMessages('alice@example.com', 'pw')              // IMAP
 *   await a.doveadm(['sync', '-u', 'alice@example.com', `tcp:${b.ip}:${b.doveadmPort}`])
 *
 * Two hosts that must know each other's address before they start (e.g. mail_replica in each other's
 * userdb) reserve their addresses first: `const ra = await reserveDovecotAddress()` and then
 * `startDovecot({address: ra, ...})`.
 */
import * as fs from 'node:fs'
import * as path from 'node:path'

import {type ImapMailbox, imapListMessages, lmtpDeliver} from './mailclients.js'
import {
  checkRootVmail,
  type DovecotVersion,
  requireDovecot24Root,
  rootHasProtocol,
  writeRootWrapper,
} from './dovecot24.js'
import {claimLoopbackIp, commonFreePort, freePorts, waitForPort} from './ports.js'
import {
  type CommandResult,
  type Daemon,
  isRoot,
  killGroup,
  makeTempDir,
  randomSecret,
  registerDaemon,
  removeDir,
  requireExecutable,
  run,
  sleep,
  startDaemon,
  stopDaemon,
  sweepOrphans,
  tailFile,
} from './proc.js'

const INSTALL_HINT = 'apt-get install -y dovecot-core dovecot-imapd dovecot-pop3d dovecot-lmtpd'

/** Shared by every host this test process starts unless told otherwise, so that `doveadm sync` between them works. */
const PROCESS_DOVEADM_PASSWORD = randomSecret()

export type DovecotProtocol = 'imap' | 'pop3' | 'lmtp'

export interface DovecotUser {
  /** The login name, e.g. alice@example.com. */
  user: string
  /** Plain-text password (stored as {PLAIN}...), or a '{SCHEME}...' hash used as is. No ':' or newline. */
  password: string
  /** Userdb fields, e.g. {mail_replica: 'tcp:127.0.0.3:12345'} (written as userdb_KEY=VALUE). No spaces. */
  userdbFields?: Record<string, string>
  /** Passdb extra fields, e.g. {proxy: 'y', host: '127.0.0.3'}. No spaces. */
  passdbFields?: Record<string, string>
  /** Home directory (default <dir>/home/<domain>/<local part>). */
  home?: string
}

/** A loopback address and ports set aside for a host that hasn't started yet. */
export interface DovecotAddress {
  n: number
  ip: string
  imapPort: number
  pop3Port: number
  lmtpPort: number
  doveadmPort: number
  httpPort: number
  /** Gives the address back; startDovecot() takes this over (stop() releases it). */
  release(): Promise<void>
}

/** What config-generating options get to see. */
export interface DovecotContext extends Omit<DovecotAddress, 'release'> {
  /** The host's temp folder. */
  dir: string
  baseDir: string
  mailDir: string
  /** The passwd-file written from `users`. */
  usersFile: string
  doveadmPassword: string
}

type Template<T> = T | ((ctx: DovecotContext) => T)

export interface DovecotOptions {
  /**
   * '2.3' (default): the host's Debian 12 Dovecot. '2.4': Debian 13's, chrooted in the root that
   * scripts/build-dovecot24-root.sh builds (test/support/dovecot24.ts); passdb, userdb and extraConfig
   * must then be in 2.4's syntax, and pop3 is not available.
   */
  version?: DovecotVersion
  /** A reservation from reserveDovecotAddress(); otherwise one is made (with `n`, if given). */
  address?: DovecotAddress
  /** Host number N of 127.0.0.N (2..250). Default: the lowest one no test process holds. */
  n?: number
  /** Users of the default passwd-file passdb/userdb (default none). */
  users?: DovecotUser[]
  /** Replaces the default passdb block(s) (write whole `passdb { ... }` text). */
  passdb?: Template<string>
  /** Replaces the default userdb block(s). */
  userdb?: Template<string>
  /** Appended to the configuration, e.g. replication settings or `!include` lines. */
  extraConfig?: Template<string>
  /** Files written into the host's folder before start, by relative path (e.g. dovecot-sql.conf.ext). */
  files?: Template<Record<string, string>>
  /** Default: one random password per test process, shared by its hosts (so doveadm sync between them works). */
  doveadmPassword?: string
  /** Default ['imap', 'lmtp']. */
  protocols?: DovecotProtocol[]
  /** Sets DOVECOT_HOSTNAME (what %{hostname} expands to) for the server and for doveadm() calls. */
  hostname?: string
  /** mail_location (2.3 only); default maildir:<mailDir>/%d/%n (outside the home). */
  mailLocation?: string
  /**
   * mail_path (2.4 only; the driver is maildir), e.g. `~/Maildir` for mail in the home as 2.3's
   * maildir:~/Maildir; default <mailDir>/%{user|domain}/%{user|username} (outside the home).
   */
  mailPath?: string
  /** auth_debug, mail_debug and auth_verbose. */
  debug?: boolean
  /** Time allowed for all listeners to come up (default 30 s). */
  startTimeoutMs?: number
}

export interface DoveadmOptions {
  /** Standard input, e.g. a message for `save`. */
  input?: string
  env?: Record<string, string>
  timeoutMs?: number
}

export interface DovecotHost extends DovecotContext {
  version: DovecotVersion
  /**
   * The command line that runs one of this host's Dovecot programs, e.g. command('doveadm') is `doveadm`
   * for 2.3 and `<dir>/dovecot-2.4 doveadm` (the chroot wrapper) for 2.4. Append `-c configPath ...`.
   */
  command(program: 'doveadm' | 'doveconf' | 'dovecot'): string
  instanceName: string
  configPath: string
  /** Dovecot's log_path. */
  logPath: string
  /** The master process. */
  pid: number
  /** Runs `doveadm -c configPath ARGS...`. Never throws for a non-zero exit. */
  doveadm(args: string[], options?: DoveadmOptions): Promise<CommandResult>
  /** POSTs commands to the doveadm HTTP API, e.g. [['sync', {user, destination: [..]}, 'tag1']]. */
  doveadmHttp(commands: unknown[]): Promise<unknown>
  /** Delivers a message to one user over LMTP; throws if refused. */
  deliver(user: string, rfc822: string, options?: {from?: string}): Promise<void>
  /** Saves a message with `doveadm save` (no LMTP); throws on failure. */
  save(user: string, rfc822: string, mailbox?: string): Promise<void>
  /** Logs in over IMAP, EXAMINEs the mailbox, returns its EXISTS count and messages' UID/flags/Subject/Message-ID. */
  imapListMessages(user: string, password: string, mailbox?: string): Promise<ImapMailbox>
  /** Rewrites the passwd-file (picked up by Dovecot without a reload). */
  setUsers(users: DovecotUser[]): void
  /**
   * Rewrites the configuration with new passdb/userdb/extraConfig text, then reload(). If Dovecot rejects
   * it, the previous configuration file is put back and the error thrown.
   */
  reconfigure(changes: Pick<DovecotOptions, 'passdb' | 'userdb' | 'extraConfig'>): Promise<void>
  /** `doveadm reload`; waits until the master has re-read the configuration; throws if it kept the old one. */
  reload(): Promise<void>
  /** Dovecot's log so far. */
  readLog(): string
  /** Stops Dovecot as `doveadm stop` does, keeping its folder, mail and configuration (resume() starts it again). */
  halt(): Promise<void>
  /** Starts a halted Dovecot again with the same configuration; waits for its listeners. */
  resume(): Promise<void>
  /** `doveadm stop`, waits for the master to exit (SIGKILLs the process group after 15 s), removes the folder. */
  stop(): Promise<void>
}

// ---------------------------------------------------------------------------------------------------------

interface Binaries {
  dovecot: string
  doveadm: string
}

function check24(protocols: DovecotProtocol[]): void {
  requireDovecot24Root()
  for (const p of protocols) {
    if (!rootHasProtocol(p))
      throw new Error(`Dovecot 2.4's ${p} server is not in the test bed's root (it has imap and lmtp only)`)
  }
}

function binaries(protocols: DovecotProtocol[]): Binaries {
  const bin = {
    dovecot: requireExecutable('dovecot', INSTALL_HINT),
    doveadm: requireExecutable('doveadm', INSTALL_HINT),
  }
  const pkg: Record<DovecotProtocol, string> = {
    imap: 'dovecot-imapd',
    pop3: 'dovecot-pop3d',
    lmtp: 'dovecot-lmtpd',
  }
  for (const p of protocols) {
    if (!fs.existsSync(`/usr/lib/dovecot/${p}`)) {
      throw new Error(
        `Dovecot's ${p} server is not installed; install it with \`apt-get install -y ${pkg[p]}\`.`,
      )
    }
  }
  return bin
}

async function accountExists(name: string): Promise<boolean> {
  return (await run('getent', ['passwd', name])).exitCode === 0
}

let vmailReady: Promise<void> | undefined

/** Makes sure the system accounts Dovecot needs exist: creates `vmail` (as root) if missing. */
function ensureAccounts(): Promise<void> {
  vmailReady ??= (async () => {
    for (const account of ['dovecot', 'dovenull']) {
      if (!(await accountExists(account))) {
        throw new Error(
          `system user ${account} is missing (it comes with dovecot-core): reinstall it with ` +
            '`apt-get install --reinstall -y dovecot-core`',
        )
      }
    }
    if (await accountExists('vmail')) return
    if (!isRoot())
      throw new Error(
        'user vmail is missing; create it as root with `useradd -r -U -M -s /usr/sbin/nologin vmail`',
      )
    // Another test process may be creating it at the same moment: useradd then fails (user exists, or
    // /etc/passwd locked), so retry and trust getent.
    let last: CommandResult | undefined
    for (let i = 0; i < 20; i++) {
      last = await run('useradd', [
        '-r',
        '-U',
        '-M',
        '-d',
        '/nonexistent',
        '-s',
        '/usr/sbin/nologin',
        'vmail',
      ])
      if (await accountExists('vmail')) return
      await sleep(100)
    }
    throw new Error(`could not create user vmail (useradd -r vmail): ${last?.stderr ?? ''}`)
  })()
  vmailReady.catch(() => {
    vmailReady = undefined
  })
  return vmailReady
}

async function vmailIds(): Promise<{uid: number; gid: number}> {
  const r = await run('getent', ['passwd', 'vmail'])
  const fields = r.stdout.trim().split(':')
  return {uid: Number(fields[2]), gid: Number(fields[3])}
}

/** Dovecot's unprivileged processes must be able to reach the base_dir and mail folders. */
function checkTraversable(dir: string): void {
  for (let d = path.dirname(dir); d !== path.dirname(d); d = path.dirname(d)) {
    const mode = fs.statSync(d).mode
    if ((mode & 0o001) === 0) {
      throw new Error(
        `${d} is not world-executable (mode ${(mode & 0o777).toString(8)}); Dovecot's login and mail processes could not reach ${dir}. Use a TMPDIR whose parents are o+x.`,
      )
    }
  }
}

/**
 * Claims 127.0.0.N (exclusive across test processes) and free ports on it, for a host to be started later
 * with startDovecot({address}). Use it when hosts must know each other's address before they start.
 */
export async function reserveDovecotAddress(options: {n?: number} = {}): Promise<DovecotAddress> {
  const claim = await claimLoopbackIp(options.n)
  try {
    const [imapPort, pop3Port, lmtpPort, doveadmPort, httpPort] = (await freePorts(5, claim.ip)) as [
      number,
      number,
      number,
      number,
      number,
    ]
    return {
      n: claim.n,
      ip: claim.ip,
      imapPort,
      pop3Port,
      lmtpPort,
      doveadmPort,
      httpPort,
      release: claim.release,
    }
  } catch (e) {
    await claim.release()
    throw e
  }
}

/**
 * Two addresses for hosts that are each other's mail_replica, with one doveadm port free on both: the
 * rendered mail_replica names a host and the cluster's one doveadm port.
 */
export async function reserveReplicaPair(): Promise<[DovecotAddress, DovecotAddress, doveadmPort: number]> {
  const a = await reserveDovecotAddress()
  const b = await reserveDovecotAddress()
  const doveadmPort = await commonFreePort([a.ip, b.ip])
  a.doveadmPort = doveadmPort
  b.doveadmPort = doveadmPort
  return [a, b, doveadmPort]
}

function resolve<T>(t: Template<T> | undefined, ctx: DovecotContext): T | undefined {
  return typeof t === 'function' ? (t as (ctx: DovecotContext) => T)(ctx) : t
}

function passwdFileLine(u: DovecotUser, ctx: DovecotContext): string {
  const at = u.user.lastIndexOf('@')
  const home =
    u.home ??
    path.join(ctx.dir, 'home', at >= 0 ? u.user.slice(at + 1) : '', at >= 0 ? u.user.slice(0, at) : u.user)
  const password = u.password.startsWith('{') ? u.password : `{PLAIN}${u.password}`
  const extra = [
    ...Object.entries(u.passdbFields ?? {}).map(([k, v]) => `${k}=${v}`),
    ...Object.entries(u.userdbFields ?? {}).map(([k, v]) => `userdb_${k}=${v}`),
  ]
  for (const [what, value] of [
    ['user', u.user],
    ['password', password],
    ['home', home],
  ] as const) {
    if (/[:\n]/.test(value))
      throw new Error(`passwd-file ${what} must not contain ':' or a newline: ${JSON.stringify(value)}`)
  }
  for (const field of extra) {
    if (/[\s]/.test(field))
      throw new Error(`passwd-file extra field must not contain white space: ${JSON.stringify(field)}`)
  }
  return `${u.user}:${password}::::${home}::${extra.join(' ')}`
}

function writeAtomically(file: string, content: string): void {
  const tmp = `${file}.tmp-${process.pid}`
  fs.writeFileSync(tmp, content)
  fs.renameSync(tmp, file)
}

interface ConfigParts {
  passdb?: Template<string>
  userdb?: Template<string>
  extraConfig?: Template<string>
}

/**
 * The service blocks of a host: IMAP, POP3 (2.3 only: the 2.4 root has no pop3d), LMTP, doveadm (TCP and
 * HTTP) on the host's address, login processes not chrooted. 2.4 calls a listener's address `listen` and
 * gets every listener named (unnamed ones not tried on 2.4).
 */
function services(ctx: DovecotContext, version: DovecotVersion): string[] {
  const listener = (name: string, port: number) => [
    `  inet_listener ${name}${name ? ' ' : ''}{`,
    ...(port === 0 ? [] : [`    ${version === '2.4' ? 'listen' : 'address'} = ${ctx.ip}`]),
    `    port = ${port}`,
    '  }',
  ]
  const login = (protocol: string, port: number) => [
    `service ${protocol}-login {`,
    '  chroot =',
    ...listener(protocol, port),
    ...listener(`${protocol}s`, 0),
    '}',
  ]
  return [
    ...login('imap', ctx.imapPort),
    ...(version === '2.3' ? login('pop3', ctx.pop3Port) : []),
    'service lmtp {',
    ...listener('lmtp', ctx.lmtpPort),
    '}',
    'service doveadm {',
    ...listener('http', ctx.httpPort),
    ...listener(version === '2.4' ? 'doveadm' : '', ctx.doveadmPort),
    '}',
    'service anvil {',
    '  chroot =',
    '}',
  ]
}

/**
 * A host's dovecot.conf, in its version's syntax. 2.4 (accepted by Debian 13's 2.4.1): the version
 * settings first, mail_driver/mail_path for mail_location, named passdb/userdb blocks with driver-prefixed
 * settings, auth_allow_cleartext, import_environment as a block (and the listener differences of
 * services()). `dovecot_config_version` may be set once only, and only as the first setting of dovecot.conf
 * itself (an `!include` first does not count): included files must not set it.
 */
function buildConfig(
  ctx: DovecotContext,
  instanceName: string,
  protocols: DovecotProtocol[],
  parts: ConfigParts,
  options: DovecotOptions,
): string {
  const {ip, dir} = ctx
  const v24 = options.version === '2.4'
  if (v24 && options.mailLocation !== undefined)
    throw new Error('mailLocation is a Dovecot 2.3 setting; give a 2.4 host mailPath')
  if (!v24 && options.mailPath !== undefined)
    throw new Error('mailPath is a Dovecot 2.4 setting; give a 2.3 host mailLocation')
  const passdb =
    resolve(parts.passdb, ctx) ??
    (v24
      ? `passdb passwd-file {\n  passwd_file_path = ${ctx.usersFile}\n  default_password_scheme = PLAIN\n}`
      : `passdb {\n  driver = passwd-file\n  args = scheme=PLAIN username_format=%u ${ctx.usersFile}\n}`)
  const userdb =
    resolve(parts.userdb, ctx) ??
    (v24
      ? `userdb passwd-file {\n  passwd_file_path = ${ctx.usersFile}\n}`
      : `userdb {\n  driver = passwd-file\n  args = username_format=%u ${ctx.usersFile}\n}`)
  const hostname = options.hostname
  const lines = [
    ...(v24
      ? [
          `dovecot_config_version = ${DOVECOT24_CONFIG_VERSION}`,
          `dovecot_storage_version = ${DOVECOT24_CONFIG_VERSION}`,
        ]
      : []),
    '# Written by test/support/dovecot.ts',
    `base_dir = ${ctx.baseDir}`,
    `state_dir = ${path.join(dir, 'state')}`,
    `instance_name = ${instanceName}`,
    `listen = ${ip}`,
    `protocols = ${protocols.join(' ')}`,
    ...(v24
      ? [
          'mail_driver = maildir',
          `mail_path = ${options.mailPath ?? `${ctx.mailDir}/%{user|domain}/%{user|username}`}`,
        ]
      : [`mail_location = ${options.mailLocation ?? `maildir:${ctx.mailDir}/%d/%n`}`]),
    'mail_uid = vmail',
    'mail_gid = vmail',
    'first_valid_uid = 100',
    'ssl = no',
    v24 ? 'auth_allow_cleartext = yes' : 'disable_plaintext_auth = no',
    `log_path = ${path.join(dir, 'dovecot.log')}`,
    'auth_mechanisms = plain',
    `doveadm_password = ${ctx.doveadmPassword}`,
    `doveadm_port = ${ctx.doveadmPort}`,
    ...(hostname === undefined
      ? []
      : v24
        ? ['import_environment {', `  DOVECOT_HOSTNAME = ${hostname}`, '}']
        : [`import_environment = $import_environment DOVECOT_HOSTNAME=${hostname}`]),
    ...(options.debug ? ['auth_debug = yes', 'auth_verbose = yes', 'mail_debug = yes'] : []),
    '',
    passdb,
    userdb,
    '',
    ...services(ctx, v24 ? '2.4' : '2.3'),
    '',
    resolve(parts.extraConfig, ctx) ?? '',
    '',
  ]
  return lines.join('\n')
}

/** What test 2.4 hosts set dovecot_config_version and dovecot_storage_version to. */
export const DOVECOT24_CONFIG_VERSION = '2.4.1'

/**
 * extraConfig that turns on the stock Dovecot 2.3 replicator; each user then needs a `mail_replica` userdb
 * field (tcp:IP:DOVEADM_PORT of the peer). Note `user = vmail` on replicator-doveadm: without it the
 * doveadm server (running as vmail) cannot report back to the replicator and every sync counts as failed.
 * Seen here: with this on two hosts that replicate the same user to each other and start at the same
 * moment, a mail delivered right after start was not replicated within 10 s in 1 run of 4 (status: priority
 * high, no success) — most likely both start-up full syncs waiting on the dsync user lock (`-l 30`). With
 * the replicator on one host only, it replicated within 0.7 s in 9 runs of 9.
 * Also seen here: do not open the user's mailbox on the replica (IMAP, `doveadm fetch`) while waiting for a
 * replicated mail there. Before the first sync that carries mail the replica has no INBOX; opening it
 * creates one while dsync creates it too, dsync exits 2 ("changes during sync", not logged when run by
 * the replicator), and the replicator marks the user failed and retries only after 5 minutes (1 run of 4).
 * Watch the replica's maildir on disk instead (test/dovecot/replication.int.test.ts).
 */
export const REPLICATION_CONFIG = `mail_plugins = $mail_plugins notify replication
service replicator {
  process_min_avail = 1
  unix_listener replicator-doveadm {
    mode = 0600
    user = vmail
  }
}
service aggregator {
  fifo_listener replication-notify-fifo {
    user = vmail
  }
  unix_listener replication-notify {
    user = vmail
  }
}
replication_max_conns = 10
`

/** Starts one Dovecot host (see DovecotOptions). Fails, naming the packages to install, if Dovecot is missing. */
export async function startDovecot(options: DovecotOptions = {}): Promise<DovecotHost> {
  const protocols = options.protocols ?? ['imap', 'lmtp']
  const version = options.version ?? '2.3'
  const bin = version === '2.3' ? binaries(protocols) : undefined
  if (version === '2.4') check24(protocols)
  await ensureAccounts()
  sweepOrphans()
  const vmail = await vmailIds()
  if (version === '2.4') checkRootVmail(vmail.uid, vmail.gid)
  let address = options.address ?? (await reserveDovecotAddress({n: options.n}))
  const timeoutMs = options.startTimeoutMs ?? 30_000

  let dir: string | undefined
  let daemon: Daemon | undefined
  let unregister: (() => void) | undefined
  try {
    dir = makeTempDir(`mr-dc-h${address.n}`)
    checkTraversable(dir)
    const instanceName = path.basename(dir)
    const mailDir = path.join(dir, 'mail')
    const homeDir = path.join(dir, 'home')
    for (const d of [mailDir, homeDir]) {
      fs.mkdirSync(d, {mode: 0o755})
      fs.chownSync(d, vmail.uid, vmail.gid)
    }
    const configPath = path.join(dir, 'dovecot.conf')
    const logPath = path.join(dir, 'dovecot.log')
    const stderrPath = path.join(dir, 'dovecot.stderr')
    const env = options.hostname ? {DOVECOT_HOSTNAME: options.hostname} : undefined
    // A program of this host: the host's binary (2.3), or the root's through the chroot wrapper (2.4).
    const wrapper = path.join(dir, 'dovecot-2.4')
    if (version === '2.4') writeRootWrapper(wrapper)
    const program = (name: 'doveadm' | 'doveconf' | 'dovecot'): [string, string[]] =>
      version === '2.4'
        ? [wrapper, [name]]
        : [name === 'doveadm' ? bin!.doveadm : name === 'dovecot' ? bin!.dovecot : name, []]
    const startMaster = () => {
      const [command, prefix] = program('dovecot')
      return startDaemon(command, [...prefix, '-F', '-c', configPath], {
        logPath: stderrPath,
        env,
        cwd: path.dirname(configPath),
      })
    }
    const parts: ConfigParts = {
      passdb: options.passdb,
      userdb: options.userdb,
      extraConfig: options.extraConfig,
    }
    const makeContext = (a: DovecotAddress): DovecotContext => ({
      n: a.n,
      ip: a.ip,
      imapPort: a.imapPort,
      pop3Port: a.pop3Port,
      lmtpPort: a.lmtpPort,
      doveadmPort: a.doveadmPort,
      httpPort: a.httpPort,
      dir: dir!,
      baseDir: path.join(dir!, 'run'),
      mailDir,
      usersFile: path.join(dir!, 'users'),
      doveadmPassword: options.doveadmPassword ?? PROCESS_DOVEADM_PASSWORD,
    })
    let ctx = makeContext(address)
    const writeUsers = (users: DovecotUser[]) =>
      writeAtomically(ctx.usersFile, users.map((u) => passwdFileLine(u, ctx) + '\n').join(''))
    writeUsers(options.users ?? [])
    for (const [rel, content] of Object.entries(resolve(options.files, ctx) ?? {})) {
      const file = path.resolve(dir, rel)
      fs.mkdirSync(path.dirname(file), {recursive: true})
      fs.writeFileSync(file, content)
    }

    // The master binds every listener before it starts any service, so one accepting port means all are
    // bound. Only one is probed: a probe of the doveadm port logs an error ("client disconnected before
    // handshake"), one of IMAP or LMTP just an Info line.
    const listeners = () => {
      if (protocols.includes('lmtp')) return [ctx.lmtpPort]
      if (protocols.includes('imap')) return [ctx.imapPort]
      if (protocols.includes('pop3')) return [ctx.pop3Port]
      return [ctx.httpPort]
    }
    const describe = () =>
      `dovecot stderr:\n${tailFile(stderrPath)}\ndovecot log:\n${tailFile(logPath)}\nconfig: ${configPath}`

    for (let attempt = 1; ; attempt++) {
      fs.writeFileSync(configPath, buildConfig(ctx, instanceName, protocols, parts, options))
      daemon = startMaster()
      unregister = registerDaemon(daemon.pid, dir)
      const d = daemon
      try {
        for (const port of listeners()) {
          await waitForPort(port, ctx.ip, {
            timeoutMs,
            check: () => {
              if (!d.running()) throw new Error(`dovecot exited during start-up\n${describe()}`)
            },
            describe,
          })
        }
        break
      } catch (e) {
        await stopDaemon(d, () => killGroup(d.pid, 'SIGKILL'), 5_000)
        unregister()
        unregister = undefined
        // A port taken between reservation and bind: take fresh ports on the same address and try again.
        if (attempt < 3 && /Address already in use/.test(describe())) {
          const [imapPort, pop3Port, lmtpPort, doveadmPort, httpPort] = (await freePorts(5, ctx.ip)) as [
            number,
            number,
            number,
            number,
            number,
          ]
          address = {...address, imapPort, pop3Port, lmtpPort, doveadmPort, httpPort}
          ctx = makeContext(address)
          removeDir(ctx.baseDir)
          fs.writeFileSync(logPath, '')
          continue
        }
        throw e
      }
    }

    const doveadm = (args: string[], o: DoveadmOptions = {}) =>
      run(program('doveadm')[0], [...program('doveadm')[1], '-c', configPath, ...args], {
        input: o.input,
        env: {...env, ...o.env},
        timeoutMs: o.timeoutMs ?? 60_000,
      })

    const reload = async () => {
      const before = fs.statSync(logPath).size
      const r = await doveadm(['reload'])
      if (r.exitCode !== 0) throw new Error(`doveadm reload failed (exit ${r.exitCode}): ${r.stderr}`)
      const deadline = Date.now() + 10_000
      for (;;) {
        const log = fs.readFileSync(logPath, 'utf8').slice(before)
        if (/keeping old|Invalid configuration|Fatal/i.test(log))
          throw new Error(`dovecot rejected the new configuration:\n${log}`)
        if (/SIGHUP received/.test(log)) break
        if (Date.now() > deadline) throw new Error(`dovecot did not log the reload within 10 s:\n${log}`)
        await sleep(50)
      }
      for (const port of listeners()) await waitForPort(port, ctx.ip, {timeoutMs: 10_000, describe})
    }

    let running = daemon!
    let unregisterRunning: (() => void) | undefined = unregister
    const finalCtx = ctx
    const haltRunning = async () => {
      const current = running
      await stopDaemon(
        current,
        async () => {
          const r = await doveadm(['stop'], {timeoutMs: 10_000})
          if (r.exitCode !== 0) killGroup(current.pid, 'SIGTERM')
        },
        15_000,
      )
      unregisterRunning?.()
      unregisterRunning = undefined
    }
    let stopping: Promise<void> | undefined
    const host: DovecotHost = {
      ...finalCtx,
      version,
      command: (name) => [program(name)[0], ...program(name)[1]].join(' '),
      instanceName,
      configPath,
      logPath,
      // The master of now: resume() starts a new one.
      get pid() {
        return running.pid
      },
      doveadm,
      doveadmHttp: async (commands) => {
        const response = await fetch(`http://${finalCtx.ip}:${finalCtx.httpPort}/doveadm/v1`, {
          method: 'POST',
          headers: {
            'Content-Type': 'application/json',
            Authorization: `Basic ${Buffer.from(`doveadm:${finalCtx.doveadmPassword}`).toString('base64')}`,
          },
          body: JSON.stringify(commands),
        })
        const text = await response.text()
        if (!response.ok) throw new Error(`doveadm HTTP API answered ${response.status}: ${text}`)
        return JSON.parse(text) as unknown
      },
      deliver: async (user, rfc822, o = {}) => {
        await lmtpDeliver(finalCtx.ip, finalCtx.lmtpPort, {from: o.from, to: [user], message: rfc822})
      },
      save: async (user, rfc822, mailbox = 'INBOX') => {
        const r = await doveadm(['save', '-u', user, '-m', mailbox], {input: rfc822})
        if (r.exitCode !== 0)
          throw new Error(`doveadm save -u ${user} failed (exit ${r.exitCode}): ${r.stderr}`)
      },
      imapListMessages: (user, password, mailbox = 'INBOX') =>
        imapListMessages(finalCtx.ip, finalCtx.imapPort, user, password, mailbox),
      setUsers: writeUsers,
      reconfigure: async (changes) => {
        const previous = {config: fs.readFileSync(configPath, 'utf8'), parts: {...parts}}
        Object.assign(parts, changes)
        fs.writeFileSync(configPath, buildConfig(finalCtx, instanceName, protocols, parts, options))
        try {
          await reload()
        } catch (e) {
          // Put the working configuration back, so that doveadm (and stop()) keep working.
          Object.assign(parts, previous.parts)
          fs.writeFileSync(configPath, previous.config)
          throw e
        }
      },
      reload,
      readLog: () => {
        try {
          return fs.readFileSync(logPath, 'utf8')
        } catch {
          return ''
        }
      },
      halt: haltRunning,
      resume: async () => {
        running = startMaster()
        unregisterRunning = registerDaemon(running.pid, finalCtx.dir)
        for (const port of listeners()) await waitForPort(port, finalCtx.ip, {timeoutMs, describe})
      },
      stop: () =>
        (stopping ??= (async () => {
          await haltRunning()
          removeDir(finalCtx.dir)
          await address.release()
        })()),
    }
    return host
  } catch (e) {
    if (daemon) {
      const d = daemon
      await stopDaemon(d, () => killGroup(d.pid, 'SIGKILL'), 5_000)
    }
    unregister?.()
    if (dir) removeDir(dir)
    await address.release()
    throw e
  }
}

/**
 * Starts several hosts in parallel; if any fails, stops the others and throws the first error. Stop them
 * all in afterAll: `await Promise.all(hosts.map((h) => h.stop()))`.
 */
export async function startDovecotHosts(list: DovecotOptions[]): Promise<DovecotHost[]> {
  const results = await Promise.allSettled(list.map((o) => startDovecot(o)))
  const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected')
  if (failed) {
    await Promise.all(results.map((r) => (r.status === 'fulfilled' ? r.value.stop() : undefined)))
    throw failed.reason
  }
  return results.map((r) => (r as PromiseFulfilledResult<DovecotHost>).value)
}
