/**
 * The probe settings of the `replicator` section of the config file (docs/decisions/0004-replicator.md):
 *
 *   replicator:
 *     probe_interval: 500ms          # every server probed this often
 *     probe_timeout: 1s              # per port: connect and first answer
 *     down_after: 2                  # consecutive failed probes: up -> down
 *     up_after: 3                    # consecutive good probes: down -> returning
 *     probe_ports:                   # where each server answers (defaults below)
 *       imap: 143                    #   IMAP: a `* OK` banner
 *       lmtp: 24                     #   LMTP: a `220` banner
 *       doveadm: 8080                #   the doveadm HTTP API: any HTTP answer; default doveadm.http_port
 *     probe_ports_by_server:         # per server, where they differ
 *       mx07: {imap: 10143}
 *
 * The store knows servers' addresses only, not their ports: the ports come from here (the doveadm port from
 * the doveadm section, per server doveadm.http_ports, as mailring's doveadm requests use it). Other keys of
 * the section belong to the rest of the replicator and are left alone here.
 */
import {parseDuration} from '../../core/duration.js'
import {MailringError} from '../../core/errors.js'
import {DEFAULT_HEALTH_THRESHOLDS, type HealthThresholds} from '../../core/health.js'
import type {ValidationIssue} from '../../core/validate.js'
import type {ConfigFile} from '../../config/config-file.js'
import {describeIssues} from '../../config/yaml-file.js'
import type {DoveadmSettings} from '../../remote/doveadm-settings.js'

export interface ProbePorts {
  imap: number
  lmtp: number
  /** The doveadm HTTP API. */
  doveadm: number
}

export interface ProbeSettings extends HealthThresholds {
  intervalMs: number
  timeoutMs: number
  /** Ports of every server, save those in byServer; doveadm undefined: the doveadm section's port. */
  ports: {imap: number; lmtp: number; doveadm?: number}
  byServer: Record<string, Partial<ProbePorts>>
  /** The doveadm HTTP API speaks TLS (doveadm.https). */
  https: boolean
}

export const DEFAULT_PROBE_SETTINGS: Omit<ProbeSettings, 'byServer' | 'ports' | 'https'> = {
  intervalMs: 500,
  timeoutMs: 1_000,
  ...DEFAULT_HEALTH_THRESHOLDS,
}

export const DEFAULT_IMAP_PORT = 143
export const DEFAULT_LMTP_PORT = 24

const PORT_KEYS = ['imap', 'lmtp', 'doveadm'] as const

/** The probe settings from the config file (defaults without one), every problem reported at once. */
export function parseProbeSettings(
  config: ConfigFile | undefined,
  doveadm: Pick<DoveadmSettings, 'https'>,
): ProbeSettings {
  const settings: ProbeSettings = {
    ...DEFAULT_PROBE_SETTINGS,
    ports: {imap: DEFAULT_IMAP_PORT, lmtp: DEFAULT_LMTP_PORT},
    byServer: {},
    https: doveadm.https,
  }
  const raw = config?.section('replicator')
  if (raw === undefined || raw === null || config === undefined) return settings
  const issues: ValidationIssue[] = []
  const problem = (path: (string | number)[], message: string) =>
    issues.push({path: ['replicator', ...path], message})
  if (typeof raw !== 'object' || Array.isArray(raw)) {
    problem([], 'replicator is a mapping of settings')
    throw new MailringError(describeIssues(config.file, issues), {code: 'invalid_config'})
  }
  const r = raw as Record<string, unknown>
  const duration = (key: string, min: number, max: number): number | undefined => {
    const v = r[key]
    if (v === undefined || v === null) return undefined
    try {
      if (typeof v !== 'string') throw new Error()
      const ms = parseDuration(v, key)
      if (ms < min || ms > max) throw new Error()
      return ms
    } catch {
      problem(
        [key],
        `${key} is a duration from ${min}ms to ${max / 1000}s, e.g. 500ms (got ${JSON.stringify(v)})`,
      )
      return undefined
    }
  }
  const count = (key: string): number | undefined => {
    const v = r[key]
    if (v === undefined || v === null) return undefined
    if (typeof v === 'number' && Number.isInteger(v) && v >= 1 && v <= 1000) return v
    problem([key], `${key} is a count from 1 to 1000 (got ${JSON.stringify(v)})`)
    return undefined
  }
  const ports = (path: (string | number)[], v: unknown): Partial<ProbePorts> => {
    const out: Partial<ProbePorts> = {}
    if (typeof v !== 'object' || v === null || Array.isArray(v)) {
      problem(path, 'ports are a mapping, e.g. {imap: 143, lmtp: 24, doveadm: 8080}')
      return out
    }
    for (const [key, port] of Object.entries(v as Record<string, unknown>)) {
      if (!(PORT_KEYS as readonly string[]).includes(key))
        problem([...path, key], `unknown key "${key}" (expected one of ${PORT_KEYS.join(', ')})`)
      else if (typeof port === 'number' && Number.isInteger(port) && port >= 1 && port <= 65535)
        out[key as keyof ProbePorts] = port
      else problem([...path, key], `a port is a whole number from 1 to 65535 (got ${JSON.stringify(port)})`)
    }
    return out
  }
  settings.intervalMs = duration('probe_interval', 50, 3_600_000) ?? settings.intervalMs
  settings.timeoutMs = duration('probe_timeout', 10, 60_000) ?? settings.timeoutMs
  settings.downAfter = count('down_after') ?? settings.downAfter
  settings.upAfter = count('up_after') ?? settings.upAfter
  if (r.probe_ports !== undefined && r.probe_ports !== null)
    settings.ports = {...settings.ports, ...ports(['probe_ports'], r.probe_ports)}
  if (r.probe_ports_by_server !== undefined && r.probe_ports_by_server !== null) {
    const by = r.probe_ports_by_server
    if (typeof by !== 'object' || Array.isArray(by))
      problem(
        ['probe_ports_by_server'],
        'probe_ports_by_server maps server names to ports, e.g. {mx07: {imap: 10143}}',
      )
    else
      for (const [server, v] of Object.entries(by as Record<string, unknown>))
        settings.byServer[server] = ports(['probe_ports_by_server', server], v)
  }
  if (issues.length > 0)
    throw new MailringError(describeIssues(config.file, issues), {code: 'invalid_config'})
  return settings
}

/** The ports to probe on one server. */
export function probePortsOf(
  settings: ProbeSettings,
  doveadm: Pick<DoveadmSettings, 'httpPort' | 'httpPorts'>,
  server: string,
): ProbePorts {
  return {
    imap: settings.ports.imap,
    lmtp: settings.ports.lmtp,
    doveadm: settings.ports.doveadm ?? doveadm.httpPorts[server] ?? doveadm.httpPort,
    ...settings.byServer[server],
  }
}
