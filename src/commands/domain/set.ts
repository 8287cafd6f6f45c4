import * as Args from '@oclif/core/args'
import * as Flags from '@oclif/core/flags'

import {lockFlags} from '../../cli/flags.js'
import {StoreCommand} from '../../cli/store-command.js'
import {normalizeDomain} from '../../core/address.js'
import {MailringError} from '../../core/errors.js'
import {setDomainCopies} from '../../engine/cluster/cluster.js'
import {domainsTable, domainView, type DomainView} from '../../ui/domains.js'

export interface DomainSetResult {
  domain: DomainView
}

export default class DomainSet extends StoreCommand {
  static override summary = "Set a domain's copy count (or return it to the cluster default)."
  static override description = `Exit codes: 0 set, 1 bad input (copies above the servers available, invalid domain), 3 cluster locked, 4 store error.`
  static override examples = [
    '<%= config.bin %> domain set example.com --copies 3',
    '<%= config.bin %> domain set example.com --copies default',
  ]

  static override args = {domain: Args.string({ignoreStdin: true, description: 'domain', required: true})}
  static override flags = {
    ...lockFlags,
    copies: Flags.string({summary: 'Copies of each mailbox of the domain, or "default".', required: true}),
  }

  async run(): Promise<DomainSetResult> {
    const {args, flags} = await this.parse(DomainSet)
    const domain = normalizeDomain(args.domain)
    let copies: number | undefined
    if (flags.copies !== 'default') {
      copies = Number(flags.copies)
      if (!Number.isInteger(copies) || copies < 1 || copies > 16) {
        throw new MailringError(
          `--copies must be a whole number from 1 to 16, or "default" (got "${flags.copies}").`,
        )
      }
    }
    const {policy, topology} = await this.locked(flags, `domain set ${domain}`, async (store) => ({
      policy: await setDomainCopies(store, domain, copies),
      topology: await store.readTopology(),
    }))
    const view = domainView(policy, domain, topology)
    this.log(domainsTable([view]))
    return {domain: view}
  }
}
