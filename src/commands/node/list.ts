import {StoreCommand} from '../../cli/store-command.js'
import {listServers, type ServerListing} from '../../engine/cluster/cluster.js'
import {serverListingTable} from '../../ui/servers.js'

export interface NodeListResult {
  servers: ServerListing[]
}

export default class NodeList extends StoreCommand {
  static override summary = 'List the servers with their copies now.'
  static override description = 'Exit codes: 0 listed, 4 store error.'
  static override examples = ['<%= config.bin %> node list', '<%= config.bin %> node list --json']

  async run(): Promise<NodeListResult> {
    const {flags} = await this.parse(NodeList)
    const servers = await listServers(await this.store(flags))
    if (servers.length === 0)
      this.log('No servers yet: add them with `mailring node add` or `mailring topology apply -f FILE`.')
    else this.log(serverListingTable(servers))
    return {servers}
  }
}
