/**
 * The stock Dovecot 2.3 replicator between two real Dovecot instances reading a mailring MySQL store on a
 * real MariaDB through Dovecot's mysql driver, as a separate read-only database user (the scenario and its
 * ordering rules: replication-scenario.ts).
 */
import {MysqlStore} from '../../src/store/mysql.js'
import {startMariaDb} from '../support/mariadb.js'
import {freshDatabase, settingsFor} from '../support/mysql-databases.js'
import {contextFor} from '../support/store-cluster.js'
import {describeReplication} from './replication-scenario.js'

const DOVECOT_DB_PASSWORD = 'dovecot-repl-pw-1'

describeReplication(
  'the stock Dovecot 2.3 replicator with the rendered MySQL configuration (MariaDB)',
  async () => {
    const db = await startMariaDb()
    const database = await freshDatabase(db, 'replication')
    const settings = settingsFor(db, database)
    const store = (await MysqlStore.init(settings)).store
    // The read-only user Dovecot connects as (the database is on 127.0.0.1, so is Dovecot's source address).
    const dbUser = `dvrepl_${process.pid}`
    await db.rootExec(
      `CREATE USER '${dbUser}'@'127.0.0.1' IDENTIFIED BY '${DOVECOT_DB_PASSWORD}';
     GRANT SELECT ON \`${database}\`.* TO '${dbUser}'@'127.0.0.1';`,
    )
    return {
      store,
      async context(doveadmPort) {
        const ctx = await contextFor(store, {kind: 'mysql', settings, source: 'test'} as never, {
          doveadmPort,
          dbUser,
        })
        ctx.env = {MAILRING_DOVECOT_DB_PASSWORD: DOVECOT_DB_PASSWORD}
        return ctx
      },
      checkFile(text) {
        if (!/^driver = mysql$/m.test(text) || !text.includes(`user=${dbUser} `))
          throw new Error(`not a MySQL configuration for ${dbUser}:\n${text}`)
      },
      async stop() {
        await store.close()
        await db.stop()
      },
    }
  },
)
