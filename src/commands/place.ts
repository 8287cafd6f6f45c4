import * as Args from '@oclif/core/args'

import {normalizeUser} from '../core/address.js'
import {Placement} from '../core/placement.js'
import {loadTopologyFile} from '../config/topology-file.js'
import {renderTable} from '../ui/table.js'
import {StoreCommand} from '../cli/store-command.js'
import {topologyFlag} from '../cli/flags.js'
import {placementTopology} from '../engine/cluster/topology-check.js'

export interface PlaceResult {
  algorithm: number
  users: {
    user: string
    /** The target placement: where the ring puts the copies, primary first. */
    servers: {name: string; address: string; zone: string | null; state: string}[]
    /** Where the copies are now (from the store), or null when the user is not in the store. */
    current: string[] | null
  }[]
}

export default class Place extends StoreCommand {
  static override summary = "Show each user's servers, primary first."
  static override description = `Shows the target placement: the servers the ring puts each user on. Without --topology, the topology is the store's, and a user the store knows also shows where its copies are now (CURRENT), which differs from the target until a rebalance has moved them. Addresses are canonicalised as Dovecot sees them with %Lu: lower-cased, with internationalised domains in their ASCII form.

Exit codes: 0 shown, 1 bad input (invalid address or topology file), 4 store error.`

  static override examples = [
    '<%= config.bin %> place alice@example.com',
    '<%= config.bin %> place alice@example.com --topology examples/cluster.yaml',
    '<%= config.bin %> place alice@example.com bob@example.org -t examples/cluster.yaml --json',
  ]

  static override strict = false
  static override args = {
    user: Args.string({ignoreStdin: true, description: 'user address(es)', required: true}),
  }
  static override flags = {
    topology: topologyFlag,
  }

  async run(): Promise<PlaceResult> {
    const {argv, flags} = await this.parse(Place)
    const users = (argv as string[]).map(normalizeUser)
    let placement: Placement
    const current = new Map<string, string[]>()
    if (flags.topology) placement = new Placement(loadTopologyFile(flags.topology))
    else {
      const store = await this.store(flags)
      placement = new Placement(await placementTopology(store))
      for (const user of users) {
        const record = await store.getUser(user)
        if (record) current.set(user, record.copies)
      }
    }
    for (const warning of placement.warnings()) this.warnUser(warning.message)

    const result: PlaceResult = {
      algorithm: placement.topology.algorithm,
      users: users.map((user) => ({
        user,
        servers: placement.serversFor(user).map((name) => {
          const server = placement.servers[placement.serverIndex(name)!]!
          return {name, address: server.address, zone: server.zone ?? null, state: server.state}
        }),
        current: current.get(user) ?? null,
      })),
    }
    const copies = Math.max(...result.users.map((u) => u.servers.length))
    const withCurrent = current.size > 0
    const head = [
      'USER',
      'PRIMARY',
      ...Array.from({length: copies - 1}, (_, k) => `COPY ${k + 2}`),
      ...(withCurrent ? ['CURRENT'] : []),
    ]
    this.log(
      renderTable(
        head,
        result.users.map((u) => [
          u.user,
          ...u.servers.map((s) => (s.state === 'active' ? s.name : `${s.name} (${s.state})`)),
          ...Array.from({length: copies - u.servers.length}, () => ''),
          ...(withCurrent ? [u.current?.join(',') ?? '(not in store)'] : []),
        ]),
      ),
    )
    return result
  }
}
