/** Helpers for tests of the MySQL store on a real MariaDB (test/support/mariadb.ts). */
import type {MariaDb} from './mariadb.js'
import type {MysqlSettings} from '../../src/store/mysql-settings.js'

let counter = 0

/** Settings for `database` on `db`, as user `user` (default: the server's application user). */
export function settingsFor(
  db: MariaDb,
  database: string,
  as: {user?: string; password?: string} = {},
): MysqlSettings {
  const user = as.user ?? db.user
  return {
    host: db.host,
    port: db.port,
    user,
    database,
    password: as.password ?? db.password,
    passwordSource: 'MAILRING_DB_PASSWORD',
    location: `mysql://${user}@${db.host}:${db.port}/${database}`,
  }
}

/** A new, empty database that the application user may use fully. */
export async function freshDatabase(db: MariaDb, prefix = 't'): Promise<string> {
  const name = `${prefix}_${process.pid}_${++counter}`
  await db.rootExec(
    `CREATE DATABASE \`${name}\` CHARACTER SET utf8mb4; GRANT ALL PRIVILEGES ON \`${name}\`.* TO '${db.user}'@'127.0.0.1'; GRANT ALL PRIVILEGES ON \`${name}\`.* TO '${db.user}'@'localhost';`,
  )
  return name
}

export async function dropDatabase(db: MariaDb, name: string): Promise<void> {
  await db.rootExec(`DROP DATABASE IF EXISTS \`${name}\``)
}
