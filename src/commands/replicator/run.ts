import * as Flags from '@oclif/core/flags'

import {StoreCommand} from '../../cli/store-command.js'
import {MailringError} from '../../core/errors.js'
import {watchInterrupts} from '../../engine/interrupts.js'
import {startReplicator} from '../../engine/replicator/run.js'
import {parseListen} from '../../engine/replicator/settings.js'

export interface ReplicatorRunResult {
  /** Where it listened. */
  url: string
  /** Why it stopped: the signal it got. */
  stoppedBy: string
  synced: number
  failed: number
  /** Replication requests taken from Dovecot's notifications. */
  notified: number
}

/** Log lines carry a time unless journald adds its own (JOURNAL_STREAM is set under systemd). */
function logLine(line: string): void {
  const stamp = process.env.JOURNAL_STREAM ? '' : `${new Date().toISOString()} `
  process.stderr.write(`${stamp}replicator: ${line}\n`)
}

export default class ReplicatorRun extends StoreCommand {
  static override summary =
    'Run the replicator: N-way replication on every change, health probes, failover routing.'
  static override description = `A foreground service (logs on stderr; contrib/mailring-replicator.service runs it under systemd). It takes Dovecot's change notifications on POST /events (install the snippet of \`mailring config render --notify\` on every server), queues each changed user in the store, and syncs every copy of it (new mail before flag changes, debounced), with a full sync of every user spread over replicator.full_sync_interval. It probes every server's doveadm, IMAP and LMTP ports and records its health in the store: the proxy passdb (\`mailring config push --role proxy\`) sends logins and deliveries to the first healthy copy; a server that returns is caught up before it takes logins again. /metrics (Prometheus) and /healthz on the same address.

Settings: the replicator section of the config file (listen, url, secret_file, debounce, max_delay, full_sync_interval, per_server, probe_interval, probe_timeout, down_after, up_after, probe_ports); the shared secret from MAILRING_REPLICATOR_SECRET or replicator.secret_file, never the command line. Several replicators may share one MySQL/MariaDB store: they share its queue.

SIGTERM or Ctrl-C: stops taking work, lets the syncs in flight finish, gives the rest back to the queue, exits 0. A second signal exits at once (nothing is lost: the queue is in the store).

Exit codes: 0 stopped by a signal, 1 bad settings or the address is taken, 4 store error.`

  static override examples = [
    '<%= config.bin %> replicator run',
    'MAILRING_CONFIG=/etc/mailring/mailring.yaml <%= config.bin %> replicator run --parallel 16',
    '<%= config.bin %> replicator run --listen 127.0.0.1:8425',
  ]

  static override flags = {
    listen: Flags.string({
      summary:
        'Address and port to listen on, e.g. 10.0.0.5:8425 (default: replicator.listen, 127.0.0.1:8425).',
    }),
    parallel: Flags.integer({
      summary: 'Users synced at once by this replicator.',
      default: 8,
      min: 1,
      max: 256,
    }),
    'accept-new': Flags.boolean({
      summary: 'Trust and record the SSH host key of a server not in known_hosts yet (ssh transport).',
    }),
  }

  async run(): Promise<ReplicatorRunResult> {
    const {flags} = await this.parse(ReplicatorRun)
    const listen = flags.listen === undefined ? undefined : parseListen(flags.listen)
    if (typeof listen === 'string')
      throw new MailringError(`--listen ${flags.listen}: ${listen}.`, {code: 'invalid_flag'})
    const store = await this.store(flags)
    const running = await startReplicator({
      store,
      location: this.storeLocation(flags),
      ...(flags.config ? {config: flags.config} : {}),
      ...(listen ? {listen} : {}),
      parallel: flags.parallel,
      acceptNew: flags['accept-new'],
      log: logLine,
    })
    // A second signal: out at once (the queue is in the store; leases expire).
    const interrupts = watchInterrupts()
    const reason = await interrupts.stopped
    const signal = reason.kind === 'signal' ? reason.signal : 'lock lost'
    logLine(`${signal}: finishing the syncs in flight`)
    try {
      await running.stop()
    } finally {
      interrupts.dispose()
    }
    logLine(`stopped: ${running.counts.synced} synced, ${running.counts.failed} failed since start`)
    return {url: running.url, stoppedBy: signal, ...running.counts}
  }
}
