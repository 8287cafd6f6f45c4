/**
 * The replicator's Prometheus metrics (prom-client), one registry per instance (never prom-client's global
 * one, so that several replicators, or tests, in one process keep their own counts). The HTTP server counts
 * notifications; the service sets the rest through the methods below. `GET /metrics` serves `text()`.
 */
import {collectDefaultMetrics, Counter, Gauge, Histogram, Registry} from 'prom-client'

/** Why a POST /events (or another request) was refused. */
export const REJECT_REASONS = [
  'unauthorized',
  'too_large',
  'bad_json',
  'method_not_allowed',
  'not_found',
  'enqueue_failed',
] as const
export type RejectReason = (typeof REJECT_REASONS)[number]

export const QUEUE_PRIORITIES = ['mail', 'change', 'catch-up', 'full'] as const
export const SERVER_HEALTHS = ['up', 'down', 'returning'] as const
export type MetricsServerHealth = (typeof SERVER_HEALTHS)[number]

export interface ReplicatorMetricsOptions {
  /** Node's process metrics (CPU, memory, event loop lag; prom-client's defaults). Default true. */
  processMetrics?: boolean
}

export class ReplicatorMetrics {
  readonly registry = new Registry()
  /** Events that became replication requests, by priority. */
  readonly notificationsAccepted: Counter<'priority'>
  /** Requests to the HTTP server refused, by reason (nothing queued from them). */
  readonly notificationsRejected: Counter<'reason'>
  /** Events in accepted posts that asked for nothing (unknown event, failed command...), by reason. */
  readonly eventsIgnored: Counter<'reason'>
  /** Events whose server was found neither by hostname nor by the peer address. */
  readonly eventsUnknownSource: Counter
  readonly queueDepth: Gauge<'priority'>
  readonly syncLatency: Histogram<'priority'>
  readonly syncFailures: Counter<'server'>
  readonly serverHealth: Gauge<'server' | 'health'>

  constructor(options: ReplicatorMetricsOptions = {}) {
    const registers = [this.registry]
    this.notificationsAccepted = new Counter({
      name: 'mailring_replicator_notifications_accepted_total',
      help: 'Dovecot events that became replication requests, by priority (mail: new mail; change: flags, expunges, mailboxes).',
      labelNames: ['priority'],
      registers,
    })
    this.notificationsRejected = new Counter({
      name: 'mailring_replicator_notifications_rejected_total',
      help: 'HTTP requests refused, by reason (unauthorized, too_large, bad_json, ...): nothing was queued from them.',
      labelNames: ['reason'],
      registers,
    })
    this.eventsIgnored = new Counter({
      name: 'mailring_replicator_events_ignored_total',
      help: 'Events in accepted posts that asked for no replication, by reason (unknown_event, failed, no_user, ...).',
      labelNames: ['reason'],
      registers,
    })
    this.eventsUnknownSource = new Counter({
      name: 'mailring_replicator_events_unknown_source_total',
      help: 'Events whose server was found neither by their hostname nor by the address they came from.',
      registers,
    })
    this.queueDepth = new Gauge({
      name: 'mailring_replicator_queue_depth',
      help: 'Users waiting in the replication queue, by priority.',
      labelNames: ['priority'],
      registers,
    })
    this.syncLatency = new Histogram({
      name: 'mailring_replicator_sync_latency_seconds',
      help: "From a user's first queued change to the end of the sync that brought every copy up to date, by priority.",
      labelNames: ['priority'],
      buckets: [0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300, 1800, 7200],
      registers,
    })
    this.syncFailures = new Counter({
      name: 'mailring_replicator_sync_failures_total',
      help: 'Syncs that failed, counted against the server whose copy failed.',
      labelNames: ['server'],
      registers,
    })
    this.serverHealth = new Gauge({
      name: 'mailring_replicator_server_health',
      help: "1 for each server's current health (up, down, returning), 0 for the others.",
      labelNames: ['server', 'health'],
      registers,
    })
    for (const priority of QUEUE_PRIORITIES) this.queueDepth.set({priority}, 0)
    for (const priority of ['mail', 'change']) this.notificationsAccepted.inc({priority}, 0)
    for (const reason of REJECT_REASONS) this.notificationsRejected.inc({reason}, 0)
    if (options.processMetrics ?? true)
      collectDefaultMetrics({register: this.registry, prefix: 'mailring_replicator_'})
  }

  setQueueDepth(priority: (typeof QUEUE_PRIORITIES)[number], users: number): void {
    this.queueDepth.set({priority}, users)
  }

  /** A finished sync: seconds from the first queued change (ReplicationTask.firstQueuedMs) to now. */
  observeSync(priority: (typeof QUEUE_PRIORITIES)[number], seconds: number): void {
    this.syncLatency.observe({priority}, seconds)
  }

  countSyncFailure(server: string): void {
    this.syncFailures.inc({server})
  }

  setServerHealth(server: string, health: MetricsServerHealth): void {
    for (const h of SERVER_HEALTHS) this.serverHealth.set({server, health: h}, h === health ? 1 : 0)
  }

  /** The text served at GET /metrics. */
  text(): Promise<string> {
    return this.registry.metrics()
  }

  get contentType(): string {
    return this.registry.contentType
  }
}
