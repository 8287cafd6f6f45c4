/** The child process of startRelayProcess (bench/latency-relay.ts): runs relays, answers over IPC. */
import {startLatencyRelay, type LatencyRelay, type RelayOptions} from './latency-relay.js'

const relays: LatencyRelay[] = []

process.on('message', (message: {start?: RelayOptions[]; counters?: boolean; close?: boolean}) => {
  void (async () => {
    try {
      if (message.start) {
        for (const options of message.start) relays.push(await startLatencyRelay(options))
        process.send?.({ports: relays.map((r) => r.port)})
      } else if (message.counters) {
        process.send?.({counters: relays.map((r) => r.counters())})
      } else if (message.close) {
        await Promise.all(relays.map((r) => r.close()))
        process.disconnect()
      }
    } catch (error) {
      process.send?.({error: error instanceof Error ? error.message : String(error)})
    }
  })()
})
