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
    // Renumbered by whoever merges another version 5: one self-contained entry, the last of the list.
    version: 5,
    description: 'copies added (no from) or dropped (no to) by a copy-count change: from and to may be NULL',
    // SQLite cannot drop a NOT NULL constraint: the table is rebuilt under the same name, with its rows and
    // its indexes (no table refers to mailring_moves, so the foreign keys stay as they are).
    statements: [
      `CREATE TABLE mailring_moves_v5 (
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
      `INSERT INTO mailring_moves_v5 (id, user_id, position, from_server_id, to_server_id, state, plan, attempts, last_error, updated_at, trash)
        SELECT id, user_id, position, from_server_id, to_server_id, state, plan, attempts, last_error, updated_at, trash FROM mailring_moves`,
      `DROP TABLE mailring_moves`,
      `ALTER TABLE mailring_moves_v5 RENAME TO mailring_moves`,
      `CREATE INDEX mailring_moves_user ON mailring_moves (user_id, state)`,
      `CREATE INDEX mailring_moves_state ON mailring_moves (state, id)`,
      `CREATE INDEX mailring_moves_to ON mailring_moves (to_server_id, state, user_id)`,
      `CREATE INDEX mailring_moves_from ON mailring_moves (from_server_id, state, user_id)`,
    ],
  },
]
