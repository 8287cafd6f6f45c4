import * as Args from '@oclif/core/args'

import {lockFlags} from '../../cli/flags.js'
import {StoreCommand} from '../../cli/store-command.js'
import {MailringError} from '../../core/errors.js'
import {pinDomain} from '../../engine/cluster/cluster.js'
import {domainsTable, domainView, type DomainView} from '../../ui/domains.js'

export interface DomainPinResult {
  domain: DomainView
}

export default class DomainPin extends StoreCommand {
  static override summary = "Place a domain's users only on the given servers."
  static override description = `Replaces any earlier pin of the domain. The servers must exist, and enough of them must not be draining for the domain's copy count.

Exit codes: 0 pinned, 1 bad input (unknown server, invalid domain, too few servers for the copies), 3 cluster locked, 4 store error.`

  static override examples = ['<%= config.bin %> domain pin archive.example.net mx04 mx08 mx12']
  static override strict = false
  static override args = {
    domain: Args.string({ignoreStdin: true, description: 'domain, e.g. example.com', required: true}),
    servers: Args.string({ignoreStdin: true, description: 'server names', required: true}),
  }
  static override flags = {...lockFlags}

  async run(): Promise<DomainPinResult> {
    const {argv, flags} = await this.parse(DomainPin)
    const [domainName, ...servers] = argv as string[]
    if (servers.length === 0) throw new MailringError('Give the servers to pin the domain to.')
    const policy = await this.locked(flags, `domain pin ${domainName}`, async (store) => {
      const result = await pinDomain(store, domainName!, servers)
      return {policy: result, topology: await store.readTopology()}
    })
    const view = domainView(policy.policy, policy.policy!.domain, policy.topology)
    this.log(domainsTable([view]))
    return {domain: view}
  }
}
