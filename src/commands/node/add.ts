import * as Args from '@oclif/core/args'

import {checkedServerFlags, serverFlags, stateValue} from '../../cli/server-flags.js'
import {lockFlags} from '../../cli/flags.js'
import {StoreCommand} from '../../cli/store-command.js'
import {availabilityIssues} from '../../core/validate.js'
import {addServer} from '../../engine/cluster/cluster.js'
import {serverView, type ServerView} from '../../core/server-view.js'
import {serversTable} from '../../ui/servers.js'

export interface NodeAddResult {
  server: ServerView
  servers: number
}

export default class NodeAdd extends StoreCommand {
  static override summary = 'Add a server to the cluster.'
  static override description = `The server becomes a placement target at once: the ring gives it its share of copies, which \`mailring rebalance\` moves there. Nothing moves now.

Exit codes: 0 added, 1 bad input (duplicate name or address, invalid weight), 3 cluster locked, 4 store error.`

  static override aliases = ['add-node']
  static override examples = [
    '<%= config.bin %> node add mx13 --address 192.0.2.35 --zone rack-c',
    '<%= config.bin %> add-node mx14 --address mx14.example.net --weight 2',
  ]

  static override args = {
    name: Args.string({ignoreStdin: true, description: 'server name, e.g. mx13', required: true}),
  }
  static override flags = {...serverFlags, ...lockFlags}

  async run(): Promise<NodeAddResult> {
    const {args, flags} = await this.parse(NodeAdd)
    const {weight} = checkedServerFlags({name: args.name, address: flags.address, weight: flags.weight})
    const server = {
      name: args.name,
      address: flags.address ?? '',
      ...(flags.zone ? {zone: flags.zone} : {}),
      weight: weight ?? 1,
      state: stateValue(flags.state) ?? 'active',
    }
    const topology = await this.locked(flags, `node add ${args.name}`, (store) => addServer(store, server))
    const view = serverView(topology.servers.find((s) => s.name === args.name)!)
    this.log(serversTable([view]))
    for (const issue of availabilityIssues(topology))
      this.warnUser(`${issue.message} (users can be added once there are enough)`)
    this.log(
      `Added ${args.name}. Its share of copies moves there with a rebalance: see \`mailring rebalance --dry-run\`.`,
    )
    return {server: view, servers: topology.servers.length}
  }
}
