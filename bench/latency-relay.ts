/**
 * A TCP relay that delays every chunk by a set time in each direction, in front of a server, so that a
 * benchmark on loopback sees the round trips a network has (e.g. 5 ms one way: servers in another room).
 * Order is kept per direction; a connection's close follows its last delayed chunk. Bandwidth is not
 * limited, and there is no loss.
 *
 * With `tcpHandshake`, the TCP handshake is modelled too: the relay opens its connection to the server
 * 3 one-way times after the client's connection arrived (SYN, SYN-ACK and ACK each travel one way before a
 * real server accepts), and holds everything until then, so the client's first bytes reach the server, and
 * the server's first bytes reach the client, when they would over a real network (the client's kernel
 * completes its connect at once, but what it sends first waits). Without it the handshake costs nothing.
 *
 * Each relay counts its connections and its turns: a chunk from the client that follows one delivered to
 * the client since the client last spoke (the client speaking again after hearing from the server). Turns
 * bound the round trips from above: a reply the client did not wait for also counts.
 *
 * `startRelayProcess` runs relays in a child process (bench/latency-relay-host), so that their CPU and their
 * timers are not the measured process's.
 */
import {fork} from 'node:child_process'
import * as net from 'node:net'
import {fileURLToPath} from 'node:url'

export interface RelayOptions {
  host: string
  /** Where the relay forwards to. */
  targetPort: number
  /** Delay of each chunk, each way, in ms. */
  oneWayMs: number
  /** Model the TCP handshake (see above); default false. */
  tcpHandshake?: boolean
}

export interface RelayCounters {
  connections: number
  /** Client chunks that followed a delivery to the client. */
  turns: number
}

export interface LatencyRelay {
  port: number
  counters(): RelayCounters
  close(): Promise<void>
}

export async function startLatencyRelay(options: RelayOptions): Promise<LatencyRelay> {
  const sockets = new Set<net.Socket>()
  const counters: RelayCounters = {connections: 0, turns: 0}
  const later = (fn: () => void, ms: number) => (ms > 0 ? setTimeout(fn, ms) : fn())
  const server = net.createServer((client) => {
    counters.connections++
    const upstream = new net.Socket()
    for (const s of [client, upstream]) {
      // No Nagle: a small write waiting for the ACK of the one before (delayed by up to 40 ms) is not a
      // network's latency but the relay's own.
      s.setNoDelay(true)
      sockets.add(s)
      s.on('close', () => sockets.delete(s))
    }
    // The client has heard from the server since it last spoke.
    let heard = false
    // Until the relay has connected to the server, what the client sends waits here, in order.
    let waiting: (Buffer | 'end')[] | undefined = []
    const toUpstream = (item: Buffer | 'end') => {
      if (waiting) waiting.push(item)
      else if (item === 'end') upstream.end()
      else upstream.write(item)
    }
    client.on('data', (chunk) => {
      if (heard) counters.turns++
      heard = false
      later(() => toUpstream(chunk), options.oneWayMs)
    })
    client.on('end', () => later(() => toUpstream('end'), options.oneWayMs))
    upstream.on('end', () => later(() => client.end(), options.oneWayMs))
    upstream.on('data', (chunk) => {
      later(() => {
        heard = true
        client.write(chunk)
      }, options.oneWayMs)
    })
    client.on('error', () => upstream.destroy())
    upstream.on('error', () => client.destroy())
    later(
      () => {
        if (client.destroyed) return
        upstream.connect(options.targetPort, options.host, () => {
          const queued = waiting ?? []
          waiting = undefined
          for (const item of queued) toUpstream(item)
        })
      },
      options.tcpHandshake ? 3 * options.oneWayMs : 0,
    )
  })
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(0, options.host, resolve)
  })
  return {
    port: (server.address() as net.AddressInfo).port,
    counters: () => ({...counters}),
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy()
        server.close(() => resolve())
      }),
  }
}

/** Relays running in a child process. */
export interface RelayProcess {
  ports: number[]
  /** Each relay's counters, in the order of the options. */
  counters(): Promise<RelayCounters[]>
  close(): Promise<void>
}

type HostReply = {ports: number[]} | {counters: RelayCounters[]} | {error: string}

export async function startRelayProcess(relays: RelayOptions[]): Promise<RelayProcess> {
  const self = fileURLToPath(import.meta.url)
  const typescript = self.endsWith('.ts')
  const child = fork(self.replace(/latency-relay\.(ts|js)$/, `latency-relay-host.$1`), [], {
    execArgv: typescript ? ['--import', 'tsx'] : [],
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  })
  const replies: ((reply: HostReply) => void)[] = []
  child.on('message', (reply: HostReply) => replies.shift()?.(reply))
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()))
  const ask = (message: unknown) =>
    new Promise<HostReply>((resolve, reject) => {
      replies.push(resolve)
      child.send(message as object, (error) => (error ? reject(error) : undefined))
      void exited.then(() => reject(new Error('the relay process exited')))
    })
  const first = await ask({start: relays})
  if (!('ports' in first)) {
    child.kill()
    throw new Error(`relay process: ${'error' in first ? first.error : 'no ports'}`)
  }
  return {
    ports: first.ports,
    counters: async () => {
      const reply = await ask({counters: true})
      if (!('counters' in reply)) throw new Error('relay process: no counters')
      return reply.counters
    },
    close: async () => {
      child.send({close: true})
      await exited
    },
  }
}
