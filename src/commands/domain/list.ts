import {StoreCommand} from '../../cli/store-command.js'
import {domainsTable, domainView, type DomainView} from '../../ui/domains.js'

export interface DomainListResult {
  defaultCopies: number
  domains: DomainView[]
}

export default class DomainList extends StoreCommand {
  static override summary = 'List the domain policies (pins and copy counts).'
  static override description =
    'Domains without a policy use every server and the default copy count. Exit codes: 0 listed, 4 store error.'
  static override examples = ['<%= config.bin %> domain list', '<%= config.bin %> domain list --json']

  async run(): Promise<DomainListResult> {
    const {flags} = await this.parse(DomainList)
    const topology = await (await this.store(flags)).readTopology()
    const domains = topology.domains.map((policy) => domainView(policy, policy.domain, topology))
    this.log(`Default: ${topology.copies} copies on every server that is not draining.`)
    if (domains.length > 0) this.log(domainsTable(domains))
    return {defaultCopies: topology.copies, domains}
  }
}
