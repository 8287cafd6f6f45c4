/**
 * A TCP relay that delays every chunk by a set time in each direction, in front of a server, so that a
 * benchmark on loopback sees the round trips a network has (e.g. 5 ms one way: servers in another room).
 * Order is kept per direction; a connection's close follows its last delayed chunk.
 */
import * as net from 'node:net'

export interface LatencyRelay {
  port: number
  close(): Promise<void>
}

export async function startLatencyRelay(options: {
  host: string
  /** Where the relay forwards to. */
  targetPort: number
  /** Delay of each chunk, each way, in ms. */
  oneWayMs: number
}): Promise<LatencyRelay> {
  const sockets = new Set<net.Socket>()
  const delayed = (from: net.Socket, to: net.Socket) => {
    from.on('data', (chunk) => {
      setTimeout(() => to.write(chunk), options.oneWayMs)
    })
    from.on('end', () => setTimeout(() => to.end(), options.oneWayMs))
    from.on('error', () => to.destroy())
  }
  const server = net.createServer((client) => {
    const upstream = net.connect(options.targetPort, options.host)
    for (const s of [client, upstream]) {
      sockets.add(s)
      s.on('close', () => sockets.delete(s))
    }
    delayed(client, upstream)
    delayed(upstream, client)
  })
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(0, options.host, resolve)
  })
  return {
    port: (server.address() as net.AddressInfo).port,
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy()
        server.close(() => resolve())
      }),
  }
}
