/**
 * A ring of real Dovecot servers (2.3, or with `version: '2.4'` the test bed's 2.4) for end-to-end tests,
 * configured the way an operator would with mailring: a mailring store (SQLite, or with `mariadb` a MySQL
 * store on a real MariaDB) holds the servers and users with their copies; each Dovecot's userdb is the SQL
 * file `mailring config render` produces for it in its version's form (Dovecot's sqlite driver reads the
 * store file, which 2.4's chroot sees at the same path; its mysql driver connects as a read-only user);
 * passwords come from a passwd-file (the operator's passdb). Every server listens on its own 127.0.0.N
 * with the same doveadm port (doveadm sync tcp:HOST:PORT) and the same doveadm HTTP API port, as servers
 * of one cluster do. A mailring config file points the CLI at all of it.
 */
import * as fs from 'node:fs'
import * as path from 'node:path'
import {randomBytes} from 'node:crypto'

import {stringify} from 'yaml'

import {renderNotifyConfig} from '../../src/dovecot/notify.js'
import {loadDovecotContext} from '../../src/engine/context.js'
import {DoveadmFleet} from '../../src/engine/sync/fleet.js'
import {MysqlStore} from '../../src/store/mysql.js'
import type {MysqlSettings} from '../../src/store/mysql-settings.js'
import {SqliteStore} from '../../src/store/sqlite.js'
import type {Store} from '../../src/store/store.js'
import type {StoreLocation} from '../../src/store/open.js'
import {freshDatabase, settingsFor} from './mysql-databases.js'
import type {MariaDb} from './mariadb.js'
import {contextFor, fillStore, renderedUserdb} from './store-cluster.js'
import {reserveDovecotAddress, startDovecot, type DovecotHost} from './dovecot.js'
import {ImapClient} from './mailclients.js'
import {commonFreePort} from './ports.js'
import {writeOnServer} from './on-server.js'
import {startSshd, type SshServer} from './sshd.js'
import type {DovecotVersion} from './dovecot24.js'
import {makeTempDir, removeDir} from './proc.js'
import {runCli, startCli, type CliOptions, type CliResult} from './cli.js'

export const PASSWORD = 'pw-secret'
const DOVECOT_DB_PASSWORD = 'dovecot-db-pw-1'

/** Three servers and three users with R = 3, each user's primary on another server: the usual test ring. */
export const RING_OF_THREE = {
  servers: ['mx-a', 'mx-b', 'mx-c'],
  users: [
    ['alice@example.com', ['mx-a', 'mx-b', 'mx-c']],
    ['bob@example.com', ['mx-b', 'mx-c', 'mx-a']],
    ['carol@example.org', ['mx-c', 'mx-a', 'mx-b']],
  ] as [string, string[]][],
  copies: 3,
}

/**
 * What docs/operators-guide.md tells operators to set so that the doveadm HTTP API of Dovecot 2.3 serves
 * several mail commands in one request (docs/dovecot-facts.md): auth-userdb owned by the mail user. 2.4.1
 * serves them with its default socket: a 2.4 ring does without.
 */
export const AUTH_USERDB_FOR_BATCHES = `service auth {
  unix_listener auth-userdb {
    mode = 0600
    user = vmail
  }
}
`

export interface RingCluster {
  dir: string
  /** The SQLite store's file ('' on MariaDB: use openStore). */
  dbPath: string
  /** Opens the cluster's store (SQLite or MySQL), as the CLI would; close it after use. */
  openStore(): Promise<Store>
  /** On MariaDB: how mailring reaches the store (its database user, the database); undefined on SQLite. */
  mysql?: MysqlSettings
  configPath: string
  /** The CLI's environment: HOME, MAILRING_CONFIG and, on MariaDB, the database passwords. */
  env: Record<string, string>
  /** Dovecot hosts by server name. */
  hosts: Map<string, DovecotHost>
  host(name: string): DovecotHost
  /** With `ssh`: an OpenSSH server on each server's address (the config's ssh section reaches them). */
  sshds: Map<string, SshServer>
  /** The doveadm password of every server (also in the password file the config names). */
  doveadmPassword: string
  cli<T = unknown>(args: string[], env?: Record<string, string | undefined>): Promise<CliResult<T>>
  /** The same, started: the process (to signal it) and its result to come. */
  startCli(args: string[], env?: Record<string, string | undefined>): ReturnType<typeof startCli>
  /** Subjects (sorted) and the flags of each, read over IMAP as a mail client would. */
  mailbox(server: string, user: string): Promise<{subject: string; flags: string[]}[]>
  /**
   * Messages in a user's INBOX on a server, read without creating it (-1: none). An IMAP login, or a
   * doveadm command naming INBOX, on a copy whose INBOX does not exist yet creates one there: a twin that
   * dsync never reconciles once both hold mail (docs/dovecot-facts.md). Tests wait with this until an
   * INBOX is replicated before they look with IMAP.
   */
  inboxCount(server: string, user: string): Promise<number>
  /** Sets a flag on every message of the user's INBOX on one server, over IMAP as a mail client would. */
  flagAll(server: string, user: string, flag: string): Promise<void>
  stop(): Promise<void>
}

export async function startRingCluster(options: {
  servers: string[]
  users: [string, string[]][]
  copies: number
  /**
   * The servers' Dovecot (default 2.3). '2.4': the test bed's 2.4 on every server, the config file's
   * `dovecot.version` "2.4", so that the SQL file, the notification snippet and anything else mailring
   * renders are in 2.4's form.
   */
  version?: DovecotVersion
  /**
   * Start an sshd (root, host key in known_hosts) on each server's address, as a rebalance needs to retire
   * old copies; the config file's ssh section points at them.
   */
  ssh?: boolean
  /**
   * A replicator for the cluster: its section in the config file (listen on 127.0.0.1:`port`, the secret in
   * a file, fast probes), and on every server the event-exporter snippet `config render --notify` gives,
   * with DOVECOT_HOSTNAME set to the server's name (all servers share this machine's host name).
   */
  replicator?: {port: number; settings?: Record<string, string | number>}
  /** More Dovecot configuration for every server. */
  extraConfig?: string
  /** The store in a fresh database on this MariaDB (a MySQL store) instead of a SQLite file. */
  mariadb?: MariaDb
}): Promise<RingCluster> {
  const dir = makeTempDir('mr-ring')
  let dovecotDbUser: string | undefined
  fs.chmodSync(dir, 0o755)
  const dbPath = path.join(dir, 'cluster.db')
  const hosts = new Map<string, DovecotHost>()
  const sshds = new Map<string, SshServer>()
  const stop = async () => {
    await Promise.all([...hosts.values(), ...sshds.values()].map((h) => h.stop()))
    removeDir(dir)
  }
  try {
    const addresses = await Promise.all(options.servers.map(() => reserveDovecotAddress()))
    const doveadmPort = await commonFreePort(addresses.map((a) => a.ip))
    const httpPort = await commonFreePort(addresses.map((a) => a.ip))
    // With a replicator, every server listens on the standard IMAP and LMTP ports of its own address, as in
    // a real cluster: the probes and a proxy in front reach them there (the proxy passdb names no port).
    const imapPort = options.replicator ? 143 : undefined
    const lmtpPort = options.replicator ? 24 : undefined
    for (const a of addresses) {
      a.doveadmPort = doveadmPort
      a.httpPort = httpPort
      if (imapPort !== undefined && lmtpPort !== undefined) {
        a.imapPort = imapPort
        a.lmtpPort = lmtpPort
      }
    }
    const maria = options.mariadb
    const mysql = maria ? settingsFor(maria, await freshDatabase(maria, 'ring')) : undefined
    if (maria && mysql) {
      // Dovecot reads the store as a user that may only read it, as the operator's guide says.
      const dovecotUser = `dovecot_${mysql.database.replace(/[^a-z0-9_]/gi, '_')}`.slice(0, 60)
      await maria.rootExec(
        `CREATE USER '${dovecotUser}'@'127.0.0.1' IDENTIFIED BY '${DOVECOT_DB_PASSWORD}';
         GRANT SELECT ON \`${mysql.database}\`.* TO '${dovecotUser}'@'127.0.0.1';`,
      )
      dovecotDbUser = dovecotUser
    }
    const store: Store = mysql
      ? (await MysqlStore.init(mysql, {copies: options.copies})).store
      : (await SqliteStore.init(dbPath, {copies: options.copies})).store
    await fillStore(
      store,
      options.servers.map((name, i) => ({name, address: addresses[i]!.ip})),
      options.users,
      options.copies,
    )
    const location: StoreLocation = mysql
      ? ({kind: 'mysql', settings: mysql, source: 'test'} as never)
      : {kind: 'sqlite', path: dbPath, source: 'test'}
    const version = options.version ?? '2.3'
    const ctx = await contextFor(store, location, {
      version,
      doveadmPort,
      ...(dovecotDbUser ? {dbUser: dovecotDbUser} : {}),
    })
    if (mysql) ctx.env = {MAILRING_DOVECOT_DB_PASSWORD: DOVECOT_DB_PASSWORD}
    const replicator = options.replicator
    const secret = randomBytes(24).toString('hex')
    const notify = (name: string) =>
      replicator === undefined
        ? ''
        : renderNotifyConfig({
            server: name,
            version,
            url: `http://127.0.0.1:${replicator.port}`,
            secret,
          }).text
    const started = await Promise.all(
      options.servers.map((name, i) =>
        startDovecot({
          version,
          address: addresses[i]!,
          users: options.users.map(([user]) => ({user, password: PASSWORD})),
          ...renderedUserdb(ctx, name),
          extraConfig: [
            ...(version === '2.3' ? [AUTH_USERDB_FOR_BATCHES] : []),
            notify(name),
            options.extraConfig ?? '',
          ].join('\n'),
          ...(replicator ? {hostname: name} : {}),
          // As the operator's guide says: the mail lives in the home, which a rebalance retires as a whole.
          ...(version === '2.3' ? {mailLocation: 'maildir:~/Maildir'} : {mailPath: '~/Maildir'}),
        }),
      ),
    )
    await store.close()
    options.servers.forEach((name, i) => hosts.set(name, started[i]!))
    const doveadmPassword = started[0]!.doveadmPassword
    const passwordFile = path.join(dir, 'doveadm-password')
    fs.writeFileSync(passwordFile, `${doveadmPassword}\n`, {mode: 0o600})
    let sshSection: {config_file: string; known_hosts: string} | undefined
    let onServer: string | undefined
    if (options.ssh) {
      const started = await Promise.all(options.servers.map((_, i) => startSshd({host: addresses[i]!.ip})))
      options.servers.forEach((name, i) => sshds.set(name, started[i]!))
      const knownHosts = path.join(dir, 'known_hosts')
      fs.writeFileSync(knownHosts, started.map((s) => `${s.knownHostsLine}\n`).join(''))
      const sshConfig = path.join(dir, 'ssh_config')
      fs.writeFileSync(
        sshConfig,
        started
          .map((s) => `Host ${s.host}\n  Port ${s.port}\n  User root\n  IdentityFile ${s.clientKeyPath}\n`)
          .join(''),
      )
      sshSection = {config_file: sshConfig, known_hosts: knownHosts}
      // doveadm on a server's command line (a retire's last catch-up) is that server's test Dovecot.
      onServer = writeOnServer(dir, [...hosts.values()])
    }
    let replicatorSection: Record<string, unknown> | undefined
    if (replicator) {
      const secretFile = path.join(dir, 'replicator-secret')
      fs.writeFileSync(secretFile, `${secret}\n`, {mode: 0o600})
      replicatorSection = {
        listen: `127.0.0.1:${replicator.port}`,
        secret_file: secretFile,
        probe_interval: '200ms',
        probe_timeout: '500ms',
        ...replicator.settings,
        probe_ports: {imap: addresses[0]!.imapPort, lmtp: addresses[0]!.lmtpPort},
      }
    }
    // The config file as an operator writes it.
    const config = {
      db: mysql ? mysql.location : `sqlite:${dbPath}`,
      dovecot: {
        ...(version === '2.3' ? {} : {version}),
        doveadm_port: doveadmPort,
        ...(onServer ? {doveadm: `${onServer} doveadm`} : {}),
        ...(dovecotDbUser ? {db_user: dovecotDbUser} : {}),
      },
      doveadm: {transport: 'http', http_port: httpPort, password_file: passwordFile, retries: 1},
      ...(sshSection ? {ssh: sshSection} : {}),
      ...(replicatorSection ? {replicator: replicatorSection} : {}),
    }
    const configPath = path.join(dir, 'mailring.yaml')
    fs.writeFileSync(configPath, stringify(config))
    const host = (name: string) => {
      const h = hosts.get(name)
      if (!h) throw new Error(`no server ${name}`)
      return h
    }
    const cliEnv: Record<string, string> = {
      HOME: dir,
      MAILRING_CONFIG: configPath,
      ...(mysql
        ? {MAILRING_DB_PASSWORD: mysql.password!, MAILRING_DOVECOT_DB_PASSWORD: DOVECOT_DB_PASSWORD}
        : {}),
    }
    const cliOptions = (env: Record<string, string | undefined>): CliOptions => ({
      cwd: dir,
      env: {...cliEnv, ...env},
      timeoutMs: 120_000,
    })
    return {
      dir,
      dbPath: mysql ? '' : dbPath,
      openStore: async () => (mysql ? await MysqlStore.open(mysql) : await SqliteStore.open(dbPath)),
      ...(mysql ? {mysql} : {}),
      configPath,
      env: cliEnv,
      hosts,
      host,
      sshds,
      doveadmPassword,
      cli: (args, env = {}) => runCli(args, cliOptions(env)),
      startCli: (args, env = {}) => startCli(args, cliOptions(env)),
      mailbox: async (server, user) => {
        const box = await host(server).imapListMessages(user, PASSWORD)
        return box.messages
          .map((m) => ({subject: m.subject ?? '', flags: m.flags.filter((f) => f !== '\\Recent').sort()}))
          .sort((x, y) => x.subject.localeCompare(y.subject))
      },
      flagAll: async (server, user, flag) => {
        const imap = await ImapClient.connect(host(server).ip, host(server).imapPort)
        await imap.login(user, PASSWORD)
        await imap.select('INBOX')
        await imap.command(`STORE 1:* +FLAGS (${flag})`)
        await imap.logout()
      },
      inboxCount: async (server, user) => {
        // The mask '*' names only mailboxes that exist: naming INBOX itself would create it on maildir.
        const r = await host(server).doveadm(['mailbox', 'status', '-u', user, 'messages', '*'])
        const m = /^INBOX messages=(\d+)/m.exec(r.stdout)
        return m ? Number(m[1]) : -1
      },
      stop,
    }
  } catch (error) {
    await stop()
    throw error
  }
}

/**
 * Whether a retired home is fenced: no mail folder any more, a file in its place (engine/rebalance/retire.ts), so
 * that a delivery ending there late fails instead of making the home anew.
 */
export function isFenced(home: string): boolean {
  return (
    fs.existsSync(home) &&
    fs.statSync(home).isFile() &&
    fs.readFileSync(home, 'utf8').startsWith('mailring-retired ')
  )
}

/** A doveadm fleet over a ring on the SQLite store, configured as the CLI would be (engine-level tests). */
export async function ringFleet(ring: RingCluster, store: Store): Promise<DoveadmFleet> {
  return new DoveadmFleet(
    await loadDovecotContext({
      store,
      location: {kind: 'sqlite', path: ring.dbPath, source: 'test'},
      config: ring.configPath,
      env: {},
    }),
  )
}
