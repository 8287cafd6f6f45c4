import type {Migration} from './index.js'

const TABLE = 'ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin'

/**
 * The MySQL/MariaDB schema: the same tables, columns and versions as the SQLite schema (sqlite.ts), so that
 * Dovecot's userdb and the generated queries read either the same way. Addresses, domains and server
 * names are canonical (lower-case addresses) and compared byte for byte: utf8mb4_bin.
 *
 * Indexes for Dovecot's per-server lookups: one user's row by address (the unique key on
 * mailring_users.address) and the users of one server (mailring_copies (server_id, user_id)).
 */
export const mysqlMigrations: readonly Migration[] = [
  {
    version: 1,
    description: 'topology, users, current copies, cluster lock',
    statements: [
      `CREATE TABLE IF NOT EXISTS mailring_meta (
        \`key\` VARCHAR(64) NOT NULL PRIMARY KEY,
        value TEXT NOT NULL
      ) ${TABLE}`,
      `CREATE TABLE mailring_servers (
        id INT NOT NULL AUTO_INCREMENT PRIMARY KEY,
        name VARCHAR(255) NOT NULL,
        address VARCHAR(255) NOT NULL DEFAULT '',
        zone VARCHAR(255) NULL,
        weight DOUBLE NOT NULL CHECK (weight > 0),
        state VARCHAR(16) NOT NULL CHECK (state IN ('active', 'draining', 'down')),
        UNIQUE KEY mailring_servers_name (name)
      ) ${TABLE}`,
      `CREATE TABLE mailring_domains (
        domain VARCHAR(255) NOT NULL PRIMARY KEY,
        copies INT NULL
      ) ${TABLE}`,
      `CREATE TABLE mailring_domain_servers (
        domain VARCHAR(255) NOT NULL,
        server_id INT NOT NULL,
        PRIMARY KEY (domain, server_id),
        KEY mailring_domain_servers_server (server_id),
        CONSTRAINT mailring_domain_servers_domain FOREIGN KEY (domain) REFERENCES mailring_domains (domain) ON DELETE CASCADE,
        CONSTRAINT mailring_domain_servers_server FOREIGN KEY (server_id) REFERENCES mailring_servers (id)
      ) ${TABLE}`,
      `CREATE TABLE mailring_users (
        id INT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
        address VARCHAR(320) NOT NULL,
        domain VARCHAR(255) NOT NULL,
        UNIQUE KEY mailring_users_address (address)
      ) ${TABLE}`,
      // The current placement: where each copy is now (position 0 is the primary). The (server_id,
      // user_id) key lists the users of one server (Dovecot's iterate_query) and serves the foreign key.
      `CREATE TABLE mailring_copies (
        user_id INT UNSIGNED NOT NULL,
        position INT NOT NULL,
        server_id INT NOT NULL,
        PRIMARY KEY (user_id, position),
        KEY mailring_copies_server (server_id, user_id),
        CONSTRAINT mailring_copies_user FOREIGN KEY (user_id) REFERENCES mailring_users (id) ON DELETE CASCADE,
        CONSTRAINT mailring_copies_server FOREIGN KEY (server_id) REFERENCES mailring_servers (id)
      ) ${TABLE}`,
      // At most one row: who holds the cluster lock (the lock itself is GET_LOCK('mailring_cluster')).
      `CREATE TABLE mailring_cluster_lock (
        id INT NOT NULL PRIMARY KEY CHECK (id = 1),
        token VARCHAR(64) NOT NULL,
        pid INT NOT NULL,
        host VARCHAR(255) NOT NULL,
        command TEXT NOT NULL,
        since VARCHAR(40) NOT NULL
      ) ${TABLE}`,
    ],
  },
  {
    version: 2,
    description: "copies by server: Dovecot's iterate_query and per-server counts (as the SQLite schema has)",
    // MySQL has had mailring_copies_server since version 1 (its foreign key on server_id needs an index).
    statements: [],
  },
  {
    version: 3,
    description: 'the move journal (rebalance execution)',
    statements: [
      `CREATE TABLE mailring_moves (
        id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
        user_id INT UNSIGNED NOT NULL,
        position INT NOT NULL,
        from_server_id INT NOT NULL,
        to_server_id INT NOT NULL,
        state VARCHAR(16) NOT NULL,
        plan VARCHAR(128) NOT NULL,
        attempts INT NOT NULL DEFAULT 0,
        last_error TEXT,
        updated_at VARCHAR(40) NOT NULL,
        KEY mailring_moves_user (user_id, state),
        KEY mailring_moves_state (state, id),
        KEY mailring_moves_to (to_server_id, state, user_id),
        KEY mailring_moves_from_state (from_server_id, state, user_id),
        CONSTRAINT mailring_moves_user FOREIGN KEY (user_id) REFERENCES mailring_users (id) ON DELETE CASCADE,
        CONSTRAINT mailring_moves_from FOREIGN KEY (from_server_id) REFERENCES mailring_servers (id),
        CONSTRAINT mailring_moves_to FOREIGN KEY (to_server_id) REFERENCES mailring_servers (id)
      ) ${TABLE}`,
    ],
  },
  {
    version: 4,
    description: 'where a retired copy was moved to (rebalance cleanup deletes it later)',
    statements: [`ALTER TABLE mailring_moves ADD COLUMN trash TEXT NULL`],
  },
  {
    version: 5,
    description: 'the replication queue, server health, replication markers, proxy and director hosts',
    statements: [
      // As in the SQLite schema: priority is the rank of REPLICATION_PRIORITIES (lower is more urgent),
      // times are ms since the epoch. (priority, due_ms) serves the claim, lease_owner renew and release.
      `CREATE TABLE mailring_replication_queue (
        user_id INT UNSIGNED NOT NULL PRIMARY KEY,
        priority TINYINT NOT NULL CHECK (priority BETWEEN 0 AND 3),
        source_server_id INT NULL,
        due_ms BIGINT NOT NULL,
        first_queued_ms BIGINT NOT NULL,
        generation BIGINT NOT NULL DEFAULT 1,
        lease_owner VARCHAR(255) NULL,
        lease_until_ms BIGINT NULL,
        attempts INT NOT NULL DEFAULT 0,
        last_error TEXT NULL,
        KEY mailring_replication_queue_due (due_ms),
        KEY mailring_replication_queue_claim (priority, due_ms),
        KEY mailring_replication_queue_owner (lease_owner),
        KEY mailring_replication_queue_source (source_server_id),
        CONSTRAINT mailring_replication_queue_user FOREIGN KEY (user_id) REFERENCES mailring_users (id) ON DELETE CASCADE,
        CONSTRAINT mailring_replication_queue_source FOREIGN KEY (source_server_id) REFERENCES mailring_servers (id) ON DELETE SET NULL
      ) ${TABLE}`,
      `CREATE TABLE mailring_server_health (
        server_id INT NOT NULL PRIMARY KEY,
        health VARCHAR(16) NOT NULL CHECK (health IN ('up', 'down', 'returning')),
        since VARCHAR(40) NOT NULL,
        detail TEXT NOT NULL,
        sync_failures INT NOT NULL DEFAULT 0,
        last_sync_error TEXT NULL,
        CONSTRAINT mailring_server_health_server FOREIGN KEY (server_id) REFERENCES mailring_servers (id) ON DELETE CASCADE
      ) ${TABLE}`,
      `CREATE TABLE mailring_replication_markers (
        \`key\` VARCHAR(255) NOT NULL PRIMARY KEY,
        value TEXT NOT NULL
      ) ${TABLE}`,
      `CREATE TABLE mailring_hosts (
        name VARCHAR(255) NOT NULL PRIMARY KEY,
        address VARCHAR(255) NOT NULL,
        role VARCHAR(16) NOT NULL CHECK (role IN ('proxy', 'director')),
        dovecot_version VARCHAR(64) NULL
      ) ${TABLE}`,
    ],
  },
  {
    version: 6,
    description: 'copies added (no from) or dropped (no to) by a copy-count change: from and to may be NULL',
    statements: [
      `ALTER TABLE mailring_moves MODIFY from_server_id INT NULL, MODIFY to_server_id INT NULL, ADD CONSTRAINT mailring_moves_from_or_to CHECK (from_server_id IS NOT NULL OR to_server_id IS NOT NULL)`,
    ],
  },
  {
    version: 7,
    description: "dsync's saved state per user and ordered pair of copies",
    statements: [
      `CREATE TABLE mailring_sync_states (
        user_id INT UNSIGNED NOT NULL,
        from_server_id INT NOT NULL,
        to_server_id INT NOT NULL,
        state MEDIUMTEXT NOT NULL,
        updated_at VARCHAR(40) NOT NULL,
        PRIMARY KEY (user_id, from_server_id, to_server_id),
        KEY mailring_sync_states_from (from_server_id),
        KEY mailring_sync_states_to (to_server_id),
        CONSTRAINT mailring_sync_states_user FOREIGN KEY (user_id) REFERENCES mailring_users (id) ON DELETE CASCADE,
        CONSTRAINT mailring_sync_states_from FOREIGN KEY (from_server_id) REFERENCES mailring_servers (id) ON DELETE CASCADE,
        CONSTRAINT mailring_sync_states_to FOREIGN KEY (to_server_id) REFERENCES mailring_servers (id) ON DELETE CASCADE
      ) ${TABLE}`,
    ],
  },
  {
    version: 8,
    description: 'the copies each user has changes for that their down server missed',
    statements: [
      `CREATE TABLE mailring_replication_missed (
        server_id INT NOT NULL,
        user_id INT UNSIGNED NOT NULL,
        since_ms BIGINT NOT NULL,
        PRIMARY KEY (server_id, user_id),
        KEY mailring_replication_missed_user (user_id),
        CONSTRAINT mailring_replication_missed_server FOREIGN KEY (server_id) REFERENCES mailring_servers (id) ON DELETE CASCADE,
        CONSTRAINT mailring_replication_missed_user FOREIGN KEY (user_id) REFERENCES mailring_users (id) ON DELETE CASCADE
      ) ${TABLE}`,
    ],
  },
]
