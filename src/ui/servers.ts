import {renderTable} from './table.js'
import type {ServerView} from '../core/server-view.js'
import type {ServerListing} from '../engine/cluster/cluster.js'

export function serversTable(servers: readonly ServerView[]): string {
  return renderTable(
    ['SERVER', 'ADDRESS', 'ZONE', 'WEIGHT', 'STATE'],
    servers.map((s) => [s.name, s.address || '-', s.zone ?? '-', s.weight, s.state]),
  )
}

/** `node list`: each server with its primaries and copies now. */
export function serverListingTable(servers: readonly ServerListing[]): string {
  return renderTable(
    ['SERVER', 'ADDRESS', 'ZONE', 'WEIGHT', 'STATE', 'PRIMARIES', 'COPIES'],
    servers.map((s) => [s.name, s.address || '-', s.zone ?? '-', s.weight, s.state, s.primaries, s.copies]),
  )
}
