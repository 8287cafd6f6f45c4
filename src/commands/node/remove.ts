import * as Args from '@oclif/core/args'

import {lockFlags} from '../../cli/flags.js'
import {StoreCommand} from '../../cli/store-command.js'
import {removeServer, type RemoveServerResult} from '../../engine/cluster/cluster.js'

export type NodeRemoveResult = RemoveServerResult

export default class NodeRemove extends StoreCommand {
  static override summary = 'Remove a server; one that still holds copies is drained first.'
  static override description = `A server that holds no copies is deleted. One that still holds copies is set draining instead: \`mailring rebalance\` plans its copies away, and its record goes when you run \`node remove\` again once nothing is left on it (result.removed tells which happened).

Exit codes: 0 removed or now draining, 1 bad input (unknown server, pinned by a domain, too few servers left), 3 cluster locked, 4 store error.`

  static override examples = [
    '<%= config.bin %> node remove mx03',
    '<%= config.bin %> node remove mx03 --json',
  ]
  static override args = {name: Args.string({ignoreStdin: true, description: 'server name', required: true})}
  static override flags = {...lockFlags}

  async run(): Promise<NodeRemoveResult> {
    const {args, flags} = await this.parse(NodeRemove)
    const result = await this.locked(flags, `node remove ${args.name}`, (store) =>
      removeServer(store, args.name),
    )
    if (result.removed) this.log(`Removed ${args.name}: it held no copies.`)
    else {
      this.warnUser(
        `${args.name} still holds ${result.copiesLeft} copies, so it is not removed: it is draining now. Move its copies away with \`mailring rebalance\`, then run \`mailring node remove ${args.name}\` again.`,
      )
    }
    return result
  }
}
