import * as Args from '@oclif/core/args'

import {lockFlags} from '../../cli/flags.js'
import {StoreCommand} from '../../cli/store-command.js'
import {setServer} from '../../engine/cluster/cluster.js'
import {serverView, type ServerView} from '../../core/server-view.js'

export interface NodeDrainResult {
  server: ServerView
}

export default class NodeDrain extends StoreCommand {
  static override summary =
    'Set a server draining: it gets no new copies and a rebalance moves its copies away.'
  static override description = `Undo with \`mailring node set NAME --state active\`.

Exit codes: 0 draining, 1 bad input (unknown server, too few servers left for the copy count), 3 cluster locked, 4 store error.`

  static override examples = ['<%= config.bin %> node drain mx03', '<%= config.bin %> node drain mx03 --json']
  static override args = {name: Args.string({ignoreStdin: true, description: 'server name', required: true})}
  static override flags = {...lockFlags}

  async run(): Promise<NodeDrainResult> {
    const {args, flags} = await this.parse(NodeDrain)
    const server = serverView(
      await this.locked(flags, `node drain ${args.name}`, (store) =>
        setServer(store, args.name, {state: 'draining'}),
      ),
    )
    this.log(`${args.name} is draining: \`mailring rebalance --dry-run\` shows the moves that empty it.`)
    return {server}
  }
}
