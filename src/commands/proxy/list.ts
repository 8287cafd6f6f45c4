import {StoreCommand} from '../../cli/store-command.js'
import {listHosts} from '../../engine/cluster/hosts.js'
import type {Host} from '../../store/store.js'
import {hostsTable} from '../../ui/hosts.js'

export interface ProxyListResult {
  hosts: Host[]
}

export default class ProxyList extends StoreCommand {
  static override summary = 'List the proxy and director hosts.'
  static override description = 'Exit codes: 0 listed, 4 store error.'
  static override examples = ['<%= config.bin %> proxy list', '<%= config.bin %> proxy list --json']

  async run(): Promise<ProxyListResult> {
    const {flags} = await this.parse(ProxyList)
    const hosts = await listHosts(await this.store(flags))
    if (hosts.length === 0)
      this.log('No proxies yet: add them with `mailring proxy add NAME --address HOST`.')
    else this.log(hostsTable(hosts))
    return {hosts}
  }
}
