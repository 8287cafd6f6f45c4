import type {Server, Topology} from '../../src/core/topology.js'

/** Servers mx01..mxNN with addresses 192.0.2.N (documentation range), weights and zones by index. */
export function makeServers(
  count: number,
  weight: (i: number) => number = () => 1,
  zone?: (i: number) => string,
): Server[] {
  return Array.from({length: count}, (_, i) => ({
    name: `mx${String(i + 1).padStart(2, '0')}`,
    address: `192.0.2.${i + 1}`,
    weight: weight(i),
    state: 'active' as const,
    ...(zone ? {zone: zone(i)} : {}),
  }))
}

/** One active server of weight 1 at NAME.example.net, with `extra` changes. */
export function makeServer(name: string, extra: Partial<Server> = {}): Server {
  return {name, address: `${name}.example.net`, weight: 1, state: 'active', ...extra}
}

export function makeTopology(servers: Server[], copies = 2, domains: Topology['domains'] = []): Topology {
  return {algorithm: 1, copies, servers, domains}
}

export function syntheticUsers(count: number, domain = 'example.com'): string[] {
  return Array.from({length: count}, (_, i) => `user${i}@${domain}`)
}
