import * as Args from '@oclif/core/args'

import {SyncCommand} from '../../cli/sync-command.js'
import {selectDomains} from '../../engine/sync/selection.js'
import type {Store} from '../../store/store.js'

export default class SyncDomain extends SyncCommand {
  static override summary = 'Bring every copy of every user of the named domains up to date (N-way).'
  static override description = `Every user of each domain, as \`mailring sync user\` does it: doveadm sync from the first reachable copy with each other copy, repeated while Dovecot says "not fully synced", and again where needed so that a change on any copy reaches all the others. Users outside the domains are not touched. --parallel users at once, at most --per-server doveadm requests to any one server.

Exit codes: 0 every copy of every user in sync, 1 bad input or a user failed (the others are still synced), 2 some copies were skipped (a server down or unreachable), 4 store error.`

  static override aliases = ['sync-domain']
  static override strict = false
  static override examples = [
    '<%= config.bin %> sync domain example.com',
    '<%= config.bin %> sync-domain example.com example.org --parallel 8 --per-server 4',
    '<%= config.bin %> sync-domain example.com --json-lines > sync.log',
  ]

  static override args = {
    domain: Args.string({description: 'domain (several may follow)', required: true}),
  }

  async run() {
    const {argv, flags} = await this.parse(SyncDomain)
    return this.runSync(flags, argv as string[])
  }

  protected select(store: Store, names: string[]) {
    return selectDomains(store, names)
  }
}
