/**
 * BENCH_DOVEADM_REUSE=1: every Dovecot server of a benchmark keeps its doveadm-server processes for more
 * than one request (`service doveadm { service_count = 0 }`; Dovecot's default 1 forks one per doveadm HTTP
 * request and per dsync connection). Safe here: all users share one mail uid (vmail) and auth-userdb is
 * theirs, as the operator's guide requires for it (test/dovecot/doveadm-reuse.test.ts proves both sides).
 */
export const DOVEADM_REUSE =
  process.env.BENCH_DOVEADM_REUSE === '1' || process.env.BENCH_REPLICATOR_DOVEADM_REUSE === '1'

/** The Dovecot configuration to add to every server ('' for Dovecot's default). */
export const DOVEADM_REUSE_CONFIG = DOVEADM_REUSE ? 'service doveadm {\n  service_count = 0\n}\n' : ''

/** A line for the report saying which it was. */
export const DOVEADM_REUSE_NOTE = DOVEADM_REUSE
  ? 'Every server with `service doveadm { service_count = 0 }` (BENCH_DOVEADM_REUSE=1): doveadm-server processes serve many requests (one mail uid, as the guide requires).'
  : "Every server with Dovecot's default `service doveadm { service_count = 1 }`: one doveadm-server process per doveadm HTTP request and per dsync connection (BENCH_DOVEADM_REUSE=1 keeps them, where all users share one uid)."
