/**
 * A real MariaDB server for a test: its own data dir in a temp folder, its own socket, a free TCP port on
 * 127.0.0.1, and a real user with a random password — the way production connects.
 *
 *   const db = await startMariaDb()
 *   afterAll(() => db.stop())
 *   await db.rootExec('CREATE TABLE ...')            // as root over the socket
 *   const r = await db.exec('SELECT 1')              // as db.user over TCP with its password
 *   await db.killConnections(db.user)                // every connection of db.user, as a dropped network would
 */
import {createHash} from 'node:crypto'
import * as fs from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'

import {freePort} from './ports.js'
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
  runOk,
  sleep,
  startDaemon,
  stopDaemon,
  sweepOrphans,
  tailFile,
  TESTBED_STATE_DIR,
} from './proc.js'

const INSTALL_HINT = 'apt-get install -y mariadb-server'

export interface MariaDbOptions {
  /** Extra mariadbd arguments, appended after the defaults (so they win), e.g. ['--max-connections=5']. */
  serverArgs?: string[]
  /** The application user created on '127.0.0.1' and 'localhost' (default 'mailring'). */
  user?: string
  /** Its password (default: random). */
  password?: string
  /** The database created for it (default 'mailring'). */
  database?: string
  /** What the user is granted (default ['ALL PRIVILEGES ON `<database>`.*']). */
  grants?: string[]
  /** Time allowed for the server to answer (default 60 s). */
  startTimeoutMs?: number
  /**
   * Copy a data dir initialised once per machine and MariaDB version (default true; about 4 s saved per
   * server). false runs mariadb-install-db into this server's own folder.
   */
  useTemplate?: boolean
}

export interface CreatedUser {
  user: string
  password: string
}

export interface MariaDb {
  host: '127.0.0.1'
  port: number
  user: string
  password: string
  database: string
  socketPath: string
  /** mysql://user@127.0.0.1:port/database — no password in it. */
  url: string
  /** The server's temp folder (data dir, socket, log). Removed by stop(). */
  dir: string
  dataDir: string
  logPath: string
  /** The server's process (a new one after restart()). */
  pid: number
  /** Runs SQL as root over the Unix socket (batch mode, no column names); returns stdout, throws on error. */
  rootExec(sql: string): Promise<string>
  /**
   * Runs SQL with the `mariadb` client over TCP to 127.0.0.1:port, as db.user (or `as`), the password passed
   * in MYSQL_PWD. Never throws: look at exitCode/stderr (e.g. to check that a restricted user is denied).
   */
  exec(sql: string, as?: {user?: string; password?: string; database?: string | null}): Promise<CommandResult>
  /**
   * Creates another user on '127.0.0.1' and 'localhost' (or `hosts`) with a random password (or `password`)
   * and the given grants, each written as 'PRIVILEGES ON object', e.g. 'SELECT ON `mailring`.*'.
   */
  createUser(
    name: string,
    grants: string | string[],
    options?: {password?: string; hosts?: string[]},
  ): Promise<CreatedUser>
  /**
   * Kills every connection of a database user (`KILL CONNECTION` for each of its rows in
   * information_schema.PROCESSLIST, in one statement run as root); one that ended meanwhile is skipped.
   * Returns how many were killed.
   */
  killConnections(user: string): Promise<number>
  /**
   * Stops the server (SIGTERM, as a service restart does: every connection dropped), waits `downMs`, and
   * starts it again on the same port and data; resolves once it answers.
   */
  restart(downMs?: number): Promise<void>
  /** SIGTERM, wait for the server to exit (SIGKILL after 30 s), remove the folder. Idempotent. */
  stop(): Promise<void>
}

/** Options every test server gets: small, fast, not durable (a test server's data dies with it anyway). */
const FAST_ARGS = [
  '--innodb-buffer-pool-size=32M',
  '--innodb-log-file-size=4M',
  '--innodb-flush-log-at-trx-commit=0',
  '--innodb-doublewrite=0',
  '--innodb-flush-method=nosync',
  '--skip-sync-frm',
]

/** Like Debian's /etc/mysql/mariadb.conf.d/50-server.cnf, which --no-defaults skips. */
const SERVER_ARGS = [
  '--skip-name-resolve',
  '--character-set-server=utf8mb4',
  '--collation-server=utf8mb4_general_ci',
  '--skip-innodb-buffer-pool-dump-at-shutdown',
  '--skip-innodb-buffer-pool-load-at-startup',
]

interface Binaries {
  mariadbd: string
  installDb: string
  client: string
}

function binaries(): Binaries {
  return {
    mariadbd: requireExecutable('mariadbd', INSTALL_HINT),
    installDb: requireExecutable('mariadb-install-db', INSTALL_HINT),
    client: requireExecutable('mariadb', INSTALL_HINT),
  }
}

function userArgs(): string[] {
  return isRoot() ? ['--user=root'] : [`--user=${os.userInfo().username}`]
}

async function installDb(bin: Binaries, dataDir: string, logPath: string): Promise<void> {
  const r = await run(
    bin.installDb,
    [
      '--no-defaults',
      `--datadir=${dataDir}`,
      '--auth-root-authentication-method=normal',
      '--skip-test-db',
      ...userArgs(),
      ...FAST_ARGS,
    ],
    {timeoutMs: 120_000},
  )
  fs.appendFileSync(logPath, r.stdout + r.stderr)
  if (r.exitCode !== 0)
    throw new Error(`mariadb-install-db failed (exit ${r.exitCode}):\n${tailFile(logPath)}`)
}

let templatePromise: Promise<string> | undefined

/**
 * A data dir initialised by mariadb-install-db, shared by every test process on this machine and keyed by
 * the MariaDB version. Built in a private folder and renamed into place, so concurrent builders don't clash.
 */
function templateDataDir(bin: Binaries): Promise<string> {
  templatePromise ??= (async () => {
    const version = (await runOk(bin.mariadbd, ['--version'])).trim()
    const key = createHash('sha256')
      .update(version + FAST_ARGS.join(' '))
      .digest('hex')
      .slice(0, 16)
    const target = path.join(TESTBED_STATE_DIR, `mariadb-datadir-${key}`)
    if (fs.existsSync(path.join(target, 'mysql'))) return target
    fs.mkdirSync(TESTBED_STATE_DIR, {recursive: true})
    const work = makeTempDir('mr-mdb-tpl')
    try {
      const data = path.join(work, 'data')
      await installDb(bin, data, path.join(work, 'install.log'))
      try {
        fs.renameSync(data, target)
      } catch (e) {
        const code = (e as NodeJS.ErrnoException).code
        if (code !== 'ENOTEMPTY' && code !== 'EEXIST') throw e
        // another process finished first: use its copy
      }
      return target
    } finally {
      removeDir(work)
    }
  })()
  templatePromise.catch(() => {
    templatePromise = undefined
  })
  return templatePromise
}

function sqlString(value: string): string {
  return `'${value.replace(/\\/g, '\\\\').replace(/'/g, "\\'")}'`
}

function sqlIdent(name: string): string {
  return `\`${name.replace(/`/g, '``')}\``
}

function checkName(kind: string, name: string): void {
  if (!/^[A-Za-z0-9_]{1,64}$/.test(name)) throw new Error(`invalid ${kind} name ${JSON.stringify(name)}`)
}

function grantStatements(grants: string[], user: string, hosts: string[]): string[] {
  return grants.flatMap((g) => {
    if (!/\sON\s/i.test(g))
      throw new Error(`grant must look like 'PRIVILEGES ON object', got ${JSON.stringify(g)}`)
    return hosts.map((h) => `GRANT ${g} TO ${sqlString(user)}@${sqlString(h)};`)
  })
}

function createUserSql(user: string, password: string, hosts: string[], grants: string[]): string {
  return [
    ...hosts.map(
      (h) => `CREATE USER ${sqlString(user)}@${sqlString(h)} IDENTIFIED BY ${sqlString(password)};`,
    ),
    ...grantStatements(grants, user, hosts),
  ].join('\n')
}

/** Starts a MariaDB server (see MariaDbOptions). Fails, naming the package to install, if MariaDB is missing. */
export async function startMariaDb(options: MariaDbOptions = {}): Promise<MariaDb> {
  const bin = binaries()
  sweepOrphans()
  const user = options.user ?? 'mailring'
  const database = options.database ?? 'mailring'
  checkName('user', user)
  checkName('database', database)
  const password = options.password ?? randomSecret()
  const grants = options.grants ?? [`ALL PRIVILEGES ON ${sqlIdent(database)}.*`]
  const timeoutMs = options.startTimeoutMs ?? 60_000
  const template = options.useTemplate === false ? undefined : await templateDataDir(bin)

  const dir = makeTempDir('mr-mariadb')
  const dataDir = path.join(dir, 'data')
  const socketPath = path.join(dir, 'mysqld.sock')
  const logPath = path.join(dir, 'mariadbd.log')
  const pidPath = path.join(dir, 'mariadbd.pid')
  fs.mkdirSync(path.join(dir, 'tmp'))
  let daemon: Daemon | undefined
  let unregister: (() => void) | undefined

  const rootExec = (sql: string) =>
    runOk(
      bin.client,
      ['--no-defaults', '--protocol=socket', `--socket=${socketPath}`, '-uroot', '-B', '-N'],
      {
        input: sql,
        timeoutMs: 60_000,
      },
    )

  try {
    if (template) fs.cpSync(template, dataDir, {recursive: true})
    else await installDb(bin, dataDir, path.join(dir, 'install.log'))

    const launch = (port: number) =>
      startDaemon(
        bin.mariadbd,
        [
          '--no-defaults',
          `--datadir=${dataDir}`,
          `--socket=${socketPath}`,
          `--port=${port}`,
          '--bind-address=127.0.0.1',
          `--pid-file=${pidPath}`,
          `--tmpdir=${path.join(dir, 'tmp')}`,
          ...userArgs(),
          ...FAST_ARGS,
          ...SERVER_ARGS,
          ...(options.serverArgs ?? []),
        ],
        {logPath, cwd: dir},
      )
    let port = 0
    for (let attempt = 1; ; attempt++) {
      port = await freePort('127.0.0.1')
      fs.writeFileSync(logPath, '')
      daemon = launch(port)
      unregister = registerDaemon(daemon.pid, dir)
      const ready = await waitUntilAnswers(daemon, rootExec, timeoutMs)
      if (ready) break
      unregister()
      const log = tailFile(logPath)
      if (attempt < 3 && /Address already in use|Bind on TCP\/IP port/i.test(log)) continue
      throw new Error(
        daemon.running()
          ? `mariadbd did not answer within ${timeoutMs} ms:\n${log}`
          : `mariadbd exited during start-up:\n${log}`,
      )
    }

    await rootExec(
      [
        // As a production server would be: no anonymous accounts (they would shadow real users on
        // 'localhost'), and root only over the socket (mariadb-install-db also adds password-less
        // root@127.0.0.1, root@::1 and root@<hostname>).
        "DELETE FROM mysql.global_priv WHERE User='' OR (User='root' AND Host<>'localhost');",
        'FLUSH PRIVILEGES;',
        `CREATE DATABASE ${sqlIdent(database)} CHARACTER SET utf8mb4;`,
        createUserSql(user, password, ['127.0.0.1', 'localhost'], grants),
      ].join('\n'),
    )

    let running = daemon
    let stopping: Promise<void> | undefined
    const db: MariaDb = {
      host: '127.0.0.1',
      port,
      user,
      password,
      database,
      socketPath,
      url: `mysql://${user}@127.0.0.1:${port}/${database}`,
      dir,
      dataDir,
      logPath,
      get pid() {
        return running.pid
      },
      rootExec,
      exec: (sql, as = {}) => {
        const db = as.database === undefined ? database : as.database
        return run(
          bin.client,
          [
            '--no-defaults',
            '--protocol=tcp',
            '-h127.0.0.1',
            `-P${port}`,
            `-u${as.user ?? user}`,
            '-B',
            '-N',
            ...(db === null ? [] : [db]),
          ],
          {input: sql, env: {MYSQL_PWD: as.password ?? password}, timeoutMs: 60_000},
        )
      },
      createUser: async (name, grantList, opts = {}) => {
        checkName('user', name)
        const pw = opts.password ?? randomSecret()
        const list = typeof grantList === 'string' ? [grantList] : grantList
        await rootExec(createUserSql(name, pw, opts.hosts ?? ['127.0.0.1', 'localhost'], list))
        return {user: name, password: pw}
      },
      killConnections: async (name) => {
        checkName('user', name)
        const out = await rootExec(`DELIMITER //
BEGIN NOT ATOMIC
  DECLARE killed INT DEFAULT 0;
  FOR c IN (SELECT ID FROM information_schema.PROCESSLIST WHERE USER = ${sqlString(name)}) DO
    BEGIN
      DECLARE CONTINUE HANDLER FOR SQLEXCEPTION BEGIN END;
      KILL CONNECTION c.ID;
      SET killed = killed + 1;
    END;
  END FOR;
  SELECT killed;
END//
`)
        return Number(out.trim())
      },
      restart: async (downMs = 0) => {
        await stopDaemon(running, () => killGroup(running.pid, 'SIGTERM'), 30_000)
        unregister?.()
        await sleep(downMs)
        running = launch(port)
        unregister = registerDaemon(running.pid, dir)
        if (!(await waitUntilAnswers(running, rootExec, timeoutMs)))
          throw new Error(`mariadbd did not answer again after a restart:\n${tailFile(logPath)}`)
      },
      stop: () =>
        (stopping ??= (async () => {
          await stopDaemon(running, () => killGroup(running.pid, 'SIGTERM'), 30_000)
          unregister?.()
          removeDir(dir)
        })()),
    }
    return db
  } catch (e) {
    if (daemon) await stopDaemon(daemon, () => killGroup(daemon!.pid, 'SIGKILL'), 5_000)
    unregister?.()
    removeDir(dir)
    throw e
  }
}

async function waitUntilAnswers(
  daemon: Daemon,
  rootExec: (sql: string) => Promise<string>,
  timeoutMs: number,
): Promise<boolean> {
  const deadline = Date.now() + timeoutMs
  while (Date.now() < deadline) {
    if (!daemon.running()) return false
    try {
      await rootExec('SELECT 1')
      return true
    } catch {
      await sleep(100)
    }
  }
  return false
}
