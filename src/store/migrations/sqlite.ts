import type {Migration} from './index.js'

/** The SQLite schema, one migration per version (see index.ts). */
export const sqliteMigrations: readonly Migration[] = [
  {
    version: 1,
    description: 'topology, users, current copies, cluster lock',
    statements: [
      `CREATE TABLE IF NOT EXISTS mailring_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID`,
      `CREATE TABLE mailring_servers (
        id INTEGER PRIMARY KEY,
        name TEXT NOT NULL UNIQUE,
        address TEXT NOT NULL DEFAULT '',
        zone TEXT,
        weight REAL NOT NULL CHECK (weight > 0),
        state TEXT NOT NULL CHECK (state IN ('active', 'draining', 'down'))
      )`,
      `CREATE TABLE mailring_domains (domain TEXT PRIMARY KEY, copies INTEGER) WITHOUT ROWID`,
      `CREATE TABLE mailring_domain_servers (
        domain TEXT NOT NULL REFERENCES mailring_domains (domain) ON DELETE CASCADE,
        server_id INTEGER NOT NULL REFERENCES mailring_servers (id),
        PRIMARY KEY (domain, server_id)
      ) WITHOUT ROWID`,
      `CREATE TABLE mailring_users (id INTEGER PRIMARY KEY, address TEXT NOT NULL UNIQUE, domain TEXT NOT NULL)`,
      // The current placement: where each copy is now (position 0 is the primary).
      `CREATE TABLE mailring_copies (
        user_id INTEGER NOT NULL REFERENCES mailring_users (id) ON DELETE CASCADE,
        position INTEGER NOT NULL,
        server_id INTEGER NOT NULL REFERENCES mailring_servers (id),
        PRIMARY KEY (user_id, position)
      ) WITHOUT ROWID`,
      // At most one row: who holds the cluster lock.
      `CREATE TABLE mailring_cluster_lock (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        token TEXT NOT NULL,
        pid INTEGER NOT NULL,
        host TEXT NOT NULL,
        command TEXT NOT NULL,
        since TEXT NOT NULL
      )`,
    ],
  },
  {
    version: 2,
    description: "copies by server: Dovecot's iterate_query and per-server counts (as the MySQL schema has)",
    statements: [`CREATE INDEX mailring_copies_server ON mailring_copies (server_id, user_id)`],
  },
  {
    version: 3,
    description: 'the move journal (rebalance execution)',
    statements: [
      `CREATE TABLE mailring_moves (
        id INTEGER PRIMARY KEY,
        user_id INTEGER NOT NULL REFERENCES mailring_users (id) ON DELETE CASCADE,
        position INTEGER NOT NULL,
        from_server_id INTEGER NOT NULL REFERENCES mailring_servers (id),
        to_server_id INTEGER NOT NULL REFERENCES mailring_servers (id),
        state TEXT NOT NULL,
        plan TEXT NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        last_error TEXT,
        updated_at TEXT NOT NULL
      )`,
      `CREATE INDEX mailring_moves_user ON mailring_moves (user_id, state)`,
      `CREATE INDEX mailring_moves_state ON mailring_moves (state, id)`,
      // Dovecot's user_query and iterate_query on the target server (users moving there).
      `CREATE INDEX mailring_moves_to ON mailring_moves (to_server_id, state, user_id)`,
      `CREATE INDEX mailring_moves_from ON mailring_moves (from_server_id, state, user_id)`,
    ],
  },
  {
    version: 4,
    description: 'where a retired copy was moved to (rebalance cleanup deletes it later)',
    statements: [`ALTER TABLE mailring_moves ADD COLUMN trash TEXT`],
  },
  {
    version: 5,
    description: 'the replication queue, server health, replication markers, proxy and director hosts',
    statements: [
      // One entry per user waiting for replication (docs/decisions/0004-replicator.md). priority is the
      // rank of REPLICATION_PRIORITIES (0 mail, 1 change, 2 catch-up, 3 full: lower is more urgent), so
      // that (priority, due_ms) is the claim's order; times are ms since the epoch, the replicator's clock.
      `CREATE TABLE mailring_replication_queue (
        user_id INTEGER PRIMARY KEY REFERENCES mailring_users (id) ON DELETE CASCADE,
        priority INTEGER NOT NULL CHECK (priority BETWEEN 0 AND 3),
        source_server_id INTEGER REFERENCES mailring_servers (id) ON DELETE SET NULL,
        due_ms INTEGER NOT NULL,
        first_queued_ms INTEGER NOT NULL,
        generation INTEGER NOT NULL DEFAULT 1,
        lease_owner TEXT,
        lease_until_ms INTEGER,
        attempts INTEGER NOT NULL DEFAULT 0,
        last_error TEXT
      )`,
      `CREATE INDEX mailring_replication_queue_due ON mailring_replication_queue (due_ms)`,
      `CREATE INDEX mailring_replication_queue_claim ON mailring_replication_queue (priority, due_ms)`,
      `CREATE INDEX mailring_replication_queue_owner ON mailring_replication_queue (lease_owner)`,
      `CREATE INDEX mailring_replication_queue_source ON mailring_replication_queue (source_server_id)`,
      // A server without a row is up (since the store's creation).
      `CREATE TABLE mailring_server_health (
        server_id INTEGER PRIMARY KEY REFERENCES mailring_servers (id) ON DELETE CASCADE,
        health TEXT NOT NULL CHECK (health IN ('up', 'down', 'returning')),
        since TEXT NOT NULL,
        detail TEXT NOT NULL DEFAULT '',
        sync_failures INTEGER NOT NULL DEFAULT 0,
        last_sync_error TEXT
      )`,
      `CREATE TABLE mailring_replication_markers (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID`,
      `CREATE TABLE mailring_hosts (
        name TEXT PRIMARY KEY,
        address TEXT NOT NULL,
        role TEXT NOT NULL CHECK (role IN ('proxy', 'director')),
        dovecot_version TEXT
      ) WITHOUT ROWID`,
    ],
  },
  {
    version: 6,
    description: 'copies added (no from) or dropped (no to) by a copy-count change: from and to may be NULL',
    // SQLite cannot drop a NOT NULL constraint: the table is rebuilt under the same name, with its rows and
    // its indexes (no table refers to mailring_moves, so the foreign keys stay as they are).
    statements: [
      `CREATE TABLE mailring_moves_rebuilt (
        id INTEGER PRIMARY KEY,
        user_id INTEGER NOT NULL REFERENCES mailring_users (id) ON DELETE CASCADE,
        position INTEGER NOT NULL,
        from_server_id INTEGER REFERENCES mailring_servers (id),
        to_server_id INTEGER REFERENCES mailring_servers (id),
        state TEXT NOT NULL,
        plan TEXT NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        last_error TEXT,
        updated_at TEXT NOT NULL,
        trash TEXT,
        CHECK (from_server_id IS NOT NULL OR to_server_id IS NOT NULL)
      )`,
      `INSERT INTO mailring_moves_rebuilt (id, user_id, position, from_server_id, to_server_id, state, plan, attempts, last_error, updated_at, trash)
        SELECT id, user_id, position, from_server_id, to_server_id, state, plan, attempts, last_error, updated_at, trash FROM mailring_moves`,
      `DROP TABLE mailring_moves`,
      `ALTER TABLE mailring_moves_rebuilt RENAME TO mailring_moves`,
      `CREATE INDEX mailring_moves_user ON mailring_moves (user_id, state)`,
      `CREATE INDEX mailring_moves_state ON mailring_moves (state, id)`,
      `CREATE INDEX mailring_moves_to ON mailring_moves (to_server_id, state, user_id)`,
      `CREATE INDEX mailring_moves_from ON mailring_moves (from_server_id, state, user_id)`,
    ],
  },
  {
    version: 7,
    description: "dsync's saved state per user and ordered pair of copies",
    statements: [
      `CREATE TABLE mailring_sync_states (
        user_id INTEGER NOT NULL REFERENCES mailring_users (id) ON DELETE CASCADE,
        from_server_id INTEGER NOT NULL REFERENCES mailring_servers (id) ON DELETE CASCADE,
        to_server_id INTEGER NOT NULL REFERENCES mailring_servers (id) ON DELETE CASCADE,
        state TEXT NOT NULL,
        updated_at TEXT NOT NULL,
        PRIMARY KEY (user_id, from_server_id, to_server_id)
      ) WITHOUT ROWID`,
    ],
  },
  {
    version: 8,
    description: 'the copies each user has changes for that their down server missed',
    statements: [
      `CREATE TABLE mailring_replication_missed (
        server_id INTEGER NOT NULL REFERENCES mailring_servers (id) ON DELETE CASCADE,
        user_id INTEGER NOT NULL REFERENCES mailring_users (id) ON DELETE CASCADE,
        since_ms INTEGER NOT NULL,
        PRIMARY KEY (server_id, user_id)
      ) WITHOUT ROWID`,
      `CREATE INDEX mailring_replication_missed_user ON mailring_replication_missed (user_id)`,
    ],
  },
]
