import {StoreCommand} from '../../cli/store-command.js'
import {renderTable} from '../../ui/table.js'
import {serverView, type ServerView} from '../../ui/servers.js'

export interface NodeListResult {
  servers: (ServerView & {copies: number; primaries: number})[]
}

export default class NodeList extends StoreCommand {
  static override summary = 'List the servers with their copies now.'
  static override description = 'Exit codes: 0 listed, 4 store error.'
  static override examples = ['<%= config.bin %> node list', '<%= config.bin %> node list --json']

  async run(): Promise<NodeListResult> {
    const {flags} = await this.parse(NodeList)
    const store = await this.store(flags)
    const topology = await store.readTopology()
    const usage = new Map((await store.serverUsage()).map((u) => [u.server, u]))
    const servers = topology.servers.map((server) => ({
      ...serverView(server),
      copies: usage.get(server.name)?.copies ?? 0,
      primaries: usage.get(server.name)?.primaries ?? 0,
    }))
    if (servers.length === 0)
      this.log('No servers yet: add them with `mailring node add` or `mailring topology apply -f FILE`.')
    else {
      this.log(
        renderTable(
          ['SERVER', 'ADDRESS', 'ZONE', 'WEIGHT', 'STATE', 'PRIMARIES', 'COPIES'],
          servers.map((s) => [
            s.name,
            s.address || '-',
            s.zone ?? '-',
            s.weight,
            s.state,
            s.primaries,
            s.copies,
          ]),
        ),
      )
    }
    return {servers}
  }
}
