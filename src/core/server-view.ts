/** A server as every command shows it (tables and --json). */
import type {Server} from './topology.js'

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
