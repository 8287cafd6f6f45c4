import * as Args from '@oclif/core/args'

import {lockFlags} from '../../cli/flags.js'
import {StoreCommand} from '../../cli/store-command.js'
import {normalizeDomain} from '../../core/address.js'
import {unpinDomain} from '../../engine/cluster/cluster.js'
import {domainsTable, domainView, type DomainView} from '../../ui/domains.js'

export interface DomainUnpinResult {
  domain: DomainView
}

export default class DomainUnpin extends StoreCommand {
  static override summary = "Let a domain's users use every server again."
  static override description =
    'Exit codes: 0 unpinned, 1 bad input (domain not pinned), 3 cluster locked, 4 store error.'
  static override examples = ['<%= config.bin %> domain unpin archive.example.net']
  static override args = {domain: Args.string({ignoreStdin: true, description: 'domain', required: true})}
  static override flags = {...lockFlags}

  async run(): Promise<DomainUnpinResult> {
    const {args, flags} = await this.parse(DomainUnpin)
    const domain = normalizeDomain(args.domain)
    const {policy, topology} = await this.locked(flags, `domain unpin ${domain}`, async (store) => ({
      policy: await unpinDomain(store, domain),
      topology: await store.readTopology(),
    }))
    const view = domainView(policy, domain, topology)
    this.log(domainsTable([view]))
    return {domain: view}
  }
}
