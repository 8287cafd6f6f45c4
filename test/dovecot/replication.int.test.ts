/**
 * The stock Dovecot 2.3 replicator between two real Dovecot instances reading a mailring SQLite store through
 * Dovecot's sqlite driver (the scenario and its ordering rules: replication-scenario.ts).
 */
import * as path from 'node:path'

import {SqliteStore} from '../../src/store/sqlite.js'
import {contextFor} from '../support/store-cluster.js'
import {describeReplication} from './replication-scenario.js'

describeReplication('the stock Dovecot 2.3 replicator with the rendered SQL configuration', async (dir) => {
  const dbPath = path.join(dir, 'cluster.db')
  const store = (await SqliteStore.init(dbPath)).store
  return {
    store,
    context: (doveadmPort) =>
      contextFor(store, {kind: 'sqlite', path: dbPath, source: 'test'}, {doveadmPort}),
    stop: () => store.close(),
  }
})
