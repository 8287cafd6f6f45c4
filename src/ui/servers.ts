import type {Server} from '../core/topology.js'
import {renderTable} from './table.js'

/** What every command shows of a server. */
export interface ServerView {
  name: string
  address: string
  zone: string | null
  weight: number
  state: string
}

export function serverView(server: Server): ServerView {
  return {
    name: server.name,
    address: server.address,
    zone: server.zone ?? null,
    weight: server.weight,
    state: server.state,
  }
}

export function serversTable(servers: readonly ServerView[]): string {
  return renderTable(
    ['SERVER', 'ADDRESS', 'ZONE', 'WEIGHT', 'STATE'],
    servers.map((s) => [s.name, s.address || '-', s.zone ?? '-', s.weight, s.state]),
  )
}
