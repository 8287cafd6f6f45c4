/**
 * `mailring replicator run`: the notification endpoint, the health probes and the replication workers of
 * one replicator, wired together (docs/decisions/0004-replicator.md). Everything is validated before
 * anything starts: a bad setting or a missing secret is one line and nothing listens.
 */
import {errorText} from '../../core/errors.js'
import {locateConfigFile, readConfigFile} from '../../config/config-file.js'
import {serverLookup, type SourceLookup} from '../../dovecot/notify-events.js'
import type {StoreLocation} from '../../store/open.js'
import {REPLICATION_PRIORITIES, type Store} from '../../store/store.js'
import {loadDovecotContext} from '../context.js'
import {startNotifyServer, type HealthResult} from './http-server.js'
import {ReplicatorMetrics} from './metrics.js'
import {parseProbeSettings} from './probe-settings.js'
import {Prober} from './prober.js'
import {Replicator, type ReplicatorTuning} from './service.js'
import {parseReplicatorSettings, replicatorSecret, type ListenAddress} from './settings.js'

export interface ReplicatorRunOptions {
  store: Store
  location: StoreLocation
  /** --config, else MAILRING_CONFIG, ./mailring.yaml... (the config file machinery). */
  config?: string
  env?: NodeJS.ProcessEnv
  /** Overrides replicator.listen (e.g. port 0 in tests). */
  listen?: ListenAddress
  /** Users synced at once by this replicator. */
  parallel?: number
  acceptNew?: boolean
  /** One line per event worth knowing (stderr). */
  log: (line: string) => void
  /** Lower-level tuning (tests). */
  tuning?: Partial<ReplicatorTuning>
}

export interface RunningReplicator {
  /** Where it listens: http://HOST:PORT. */
  url: string
  metrics: ReplicatorMetrics
  /** Stops: no new notifications or claims, syncs in flight finish, the rest goes back to the queue. */
  stop(): Promise<void>
  /** Counts since start. */
  counts: {synced: number; failed: number; notified: number}
}

/** How often the queue depth gauge and the store's liveness are read. */
const STATS_MS = 2_000
/** /healthz fails when the store has not answered for this long. */
const STORE_SILENCE_MS = 10_000
/** Servers are looked up again this often for the notifications' source. */
const LOOKUP_REFRESH_MS = 10_000

export async function startReplicator(options: ReplicatorRunOptions): Promise<RunningReplicator> {
  const env = options.env ?? process.env
  const {store, log} = options
  const configPath = locateConfigFile(options.config, env)
  const config = configPath === undefined ? undefined : readConfigFile(configPath)
  const settings = parseReplicatorSettings(config)
  const secret = replicatorSecret(settings, env)
  const loadContext = () =>
    loadDovecotContext({store, location: options.location, config: options.config, env})
  const ctx = await loadContext()
  const probeSettings = parseProbeSettings(config, ctx.doveadm)

  const metrics = new ReplicatorMetrics()
  const counts = {synced: 0, failed: 0, notified: 0}
  let lookup: SourceLookup = serverLookup(ctx.servers)
  let prober: Prober | undefined
  const replicator = new Replicator({
    store,
    loadContext,
    tuning: {
      debounceMs: settings.debounceMs,
      maxDelayMs: settings.maxDelayMs,
      fullSyncIntervalMs: settings.fullSyncIntervalMs,
      perServer: settings.perServer,
      ...(options.parallel ? {parallel: options.parallel} : {}),
      ...options.tuning,
    },
    ...(options.acceptNew ? {acceptNew: true} : {}),
    // Before the prober runs (a catch-up begun at start-up), straight in the store; the prober adopts it.
    markCaughtUp: async (server) =>
      prober ? prober.markCaughtUp(server) : store.setServerHealth(server, 'returning', 'up', 'caught up'),
    events: {
      synced: (task, _result, lagMs) => {
        counts.synced++
        metrics.observeSync(task.priority, lagMs / 1000)
      },
      failed: (task, error, server, retryInMs) => {
        counts.failed++
        if (server !== undefined) metrics.countSyncFailure(server)
        log(
          `sync of ${task.user} failed (attempt ${task.attempts + 1}), retried in ${Math.round(retryInMs / 1000)} s: ${error}`,
        )
      },
      caughtUp: (server, users) => log(`${server} is caught up (${users} users) and takes logins again`),
      log,
    },
  })

  let storeAnsweredAt = Date.now()
  const health = (): HealthResult => {
    if (Date.now() - storeAnsweredAt > STORE_SILENCE_MS)
      return {
        ok: false,
        reason: `the store has not answered for ${Math.round((Date.now() - storeAnsweredAt) / 1000)} s`,
      }
    return {ok: true}
  }

  await replicator.start()
  const started: {close(): Promise<void>}[] = []
  try {
    const server = await startNotifyServer({
      listen: options.listen ?? settings.listen,
      secret,
      lookupSource: (hint) => lookup(hint),
      onRequests: async (requests) => {
        counts.notified += requests.length
        await replicator.enqueue(requests)
      },
      health,
      metrics,
      log,
    })
    started.push(server)
    prober = new Prober({
      store,
      settings: probeSettings,
      doveadm: ctx.doveadm,
      onEvent: (event) => {
        metrics.setServerHealth(event.server, event.type)
        log(`${event.server} is ${event.type} (was ${event.from})${event.detail ? `: ${event.detail}` : ''}`)
        void replicator
          .healthChanged(event.server, event.type)
          .catch((error: unknown) => log(errorText(error)))
      },
      onError: log,
    })
    await prober.start()
    const timers = [
      setInterval(() => {
        store
          .replicationStats(Date.now())
          .then((stats) => {
            storeAnsweredAt = Date.now()
            for (const p of REPLICATION_PRIORITIES)
              metrics.setQueueDepth(p, stats.byPriority.find((b) => b.priority === p)?.waiting ?? 0)
          })
          .catch((error: unknown) => log(`the store did not answer: ${errorText(error)}`))
      }, STATS_MS),
      setInterval(() => {
        store
          .readTopology()
          .then((topology) => (lookup = serverLookup(topology.servers)))
          .catch(() => undefined)
      }, LOOKUP_REFRESH_MS),
    ]
    for (const timer of timers) timer.unref()
    log(
      `listening on ${server.url} (POST /events, GET /metrics, GET /healthz); ${ctx.servers.length} servers`,
    )
    return {
      url: server.url,
      metrics,
      counts,
      stop: async () => {
        for (const timer of timers) clearInterval(timer)
        await prober?.stop()
        await server.close()
        await replicator.stop()
      },
    }
  } catch (error) {
    await prober?.stop()
    for (const s of started) await s.close()
    await replicator.stop()
    throw error
  }
}
