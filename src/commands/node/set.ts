import * as Args from '@oclif/core/args'

import {checkedServerFlags, serverFlags, stateValue} from '../../cli/server-flags.js'
import {lockFlags} from '../../cli/flags.js'
import {StoreCommand} from '../../cli/store-command.js'
import {MailringError} from '../../core/errors.js'
import {setServer} from '../../engine/cluster/cluster.js'
import {serverView, type ServerView} from '../../core/server-view.js'
import {serversTable} from '../../ui/servers.js'

export interface NodeSetResult {
  server: ServerView
}

export default class NodeSet extends StoreCommand {
  static override summary = "Change a server's address, zone, weight or state."
  static override description = `A change of zone, weight or state changes the target placement; \`mailring rebalance --dry-run\` shows the moves.

Exit codes: 0 changed, 1 bad input (unknown server, invalid value, too few servers left), 3 cluster locked, 4 store error.`

  static override examples = [
    '<%= config.bin %> node set mx04 --weight 2',
    '<%= config.bin %> node set mx07 --state down',
    '<%= config.bin %> node set mx02 --zone rack-b --address 192.0.2.40',
  ]

  static override args = {name: Args.string({ignoreStdin: true, description: 'server name', required: true})}
  static override flags = {...serverFlags, ...lockFlags}

  async run(): Promise<NodeSetResult> {
    const {args, flags} = await this.parse(NodeSet)
    const {weight} = checkedServerFlags({address: flags.address, weight: flags.weight})
    const changes = {
      ...(flags.address === undefined ? {} : {address: flags.address}),
      ...(flags.zone === undefined ? {} : {zone: flags.zone}),
      ...(weight === undefined ? {} : {weight}),
      ...(flags.state === undefined ? {} : {state: stateValue(flags.state)!}),
    }
    if (Object.keys(changes).length === 0) {
      throw new MailringError('Nothing to change: give --address, --zone, --weight or --state.')
    }
    const server = serverView(
      await this.locked(flags, `node set ${args.name}`, (store) => setServer(store, args.name, changes)),
    )
    this.log(serversTable([server]))
    return {server}
  }
}
