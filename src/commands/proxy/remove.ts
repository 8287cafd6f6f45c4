import * as Args from '@oclif/core/args'

import {StoreCommand} from '../../cli/store-command.js'
import {removeHost} from '../../engine/cluster/hosts.js'
import type {Host} from '../../store/store.js'

export interface ProxyRemoveResult {
  removed: Host
}

export default class ProxyRemove extends StoreCommand {
  static override summary = 'Remove a proxy host from the store.'
  static override description = `Only the record goes: the proxy's Dovecot and its installed passdb file are left as they are (\`config push --role proxy\` no longer reaches it).

Exit codes: 0 removed, 1 unknown proxy, 4 store error.`

  static override examples = [
    '<%= config.bin %> proxy remove proxy02',
    '<%= config.bin %> proxy remove proxy02 --json',
  ]
  static override args = {name: Args.string({ignoreStdin: true, description: 'host name', required: true})}

  async run(): Promise<ProxyRemoveResult> {
    const {args, flags} = await this.parse(ProxyRemove)
    const removed = await removeHost(await this.store(flags), args.name)
    this.log(`Removed ${removed.name} (${removed.address}).`)
    return {removed}
  }
}
