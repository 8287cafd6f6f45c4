/**
 * BENCH_DOVEADM_REUSE=1: every Dovecot server of a benchmark keeps its doveadm-server processes for more
 * than one request (`service doveadm { service_count = 0 }`; Dovecot's default 1 forks one per doveadm HTTP
 * request and per dsync connection). For measuring only: syncs work here (all users share one mail uid and
 * auth-userdb is theirs), but a kick in a reused process dies, so rebalance moves fail; the operator's guide
 * says to keep the default (test/dovecot/doveadm-reuse.int.test.ts).
 */
export const DOVEADM_REUSE =
  process.env.BENCH_DOVEADM_REUSE === '1' || process.env.BENCH_REPLICATOR_DOVEADM_REUSE === '1'

/** The Dovecot configuration to add to every server ('' for Dovecot's default). */
export const DOVEADM_REUSE_CONFIG = DOVEADM_REUSE ? 'service doveadm {\n  service_count = 0\n}\n' : ''

/** A line for the report saying which it was. */
export const DOVEADM_REUSE_NOTE = DOVEADM_REUSE
  ? 'Every server with `service doveadm { service_count = 0 }` (BENCH_DOVEADM_REUSE=1): doveadm-server processes serve many requests (one mail uid; kicks fail: not a setting to deploy).'
  : "Every server with Dovecot's default `service doveadm { service_count = 1 }`: one doveadm-server process per doveadm HTTP request and per dsync connection (BENCH_DOVEADM_REUSE=1 keeps them, for comparison only)."
