/**
 * The cluster's topology: what placement depends on, and nothing else. The order of servers and domains
 * never matters; every computation sorts by name first.
 */

/** Bumped only with a deliberate, documented change of the hash or the algorithm (docs/decisions). */
export const PLACEMENT_ALGORITHM_VERSION = 1

export const SERVER_STATES = ['active', 'draining', 'down'] as const
/**
 * - active: holds copies and takes new ones.
 * - draining: gets nothing; everything it holds is planned away.
 * - down: still owns its users (a failure alone never moves data); routing skips it.
 */
export type ServerState = (typeof SERVER_STATES)[number]

export interface Server {
  name: string
  /** Host name or IP address where Dovecot listens; empty when not yet known. */
  address: string
  /** Failure zone (rack, room, data centre). Servers without a zone are each a zone of their own. */
  zone?: string
  weight: number
  state: ServerState
}

export interface DomainPolicy {
  /** Canonical domain name (A-labels, lower case). */
  domain: string
  /** Servers this domain's users are placed on; all non-draining servers when absent. */
  servers?: string[]
  /** Copies per user for this domain; the topology's default when absent. */
  copies?: number
}

export interface Topology {
  algorithm: number
  /** Default number of copies of each mailbox (R). */
  copies: number
  servers: Server[]
  domains: DomainPolicy[]
}

export const DEFAULT_COPIES = 2

/** Servers that can receive copies: every server but the draining ones. */
export function isPlacementTarget(server: Server): boolean {
  return server.state !== 'draining'
}

/** The zone a server counts in; a server without a zone is its own zone. */
export function effectiveZone(server: Server): string {
  return server.zone === undefined || server.zone === '' ? `server:${server.name}` : `zone:${server.zone}`
}
