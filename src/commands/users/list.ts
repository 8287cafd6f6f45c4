import * as Flags from '@oclif/core/flags'

import {StoreCommand} from '../../cli/store-command.js'
import {normalizeDomain} from '../../core/address.js'
import type {UserRecord} from '../../store/store.js'

export interface UsersListResult {
  users: UserRecord[]
  /** Pass as --after to get the next page; null at the end. */
  next: string | null
}

const PAGE = 5000

export default class UsersList extends StoreCommand {
  static override summary = 'List users with their current copies, sorted by address.'
  static override description = `Prints one user per line: the address, then the servers holding its copies now (primary first), separated by tabs. Exit codes: 0 listed, 1 bad input, 4 store error.`
  static override examples = [
    '<%= config.bin %> users list --domain example.com',
    '<%= config.bin %> users list --limit 100 --after alice@example.com --json',
  ]

  static override flags = {
    domain: Flags.string({summary: 'Only users of this domain.'}),
    limit: Flags.integer({summary: 'At most this many users (default: all).', min: 1}),
    after: Flags.string({summary: 'Start after this address (paging).'}),
  }

  async run(): Promise<UsersListResult> {
    const {flags} = await this.parse(UsersList)
    const store = await this.store(flags)
    const domain = flags.domain === undefined ? undefined : normalizeDomain(flags.domain)
    const users: UserRecord[] = []
    let after = flags.after
    let next: string | null = null
    let listed = 0
    for (;;) {
      const want = flags.limit === undefined ? PAGE : Math.min(PAGE, flags.limit - listed)
      if (want <= 0) break
      const page = await store.listUsers({
        ...(domain ? {domain} : {}),
        ...(after === undefined ? {} : {after}),
        limit: want,
      })
      if (!this.jsonEnabled()) for (const user of page) this.log(`${user.user}\t${user.copies.join(',')}`)
      // Under --json everything is kept for the envelope; otherwise pages stream out and are dropped.
      if (this.jsonEnabled()) users.push(...page)
      listed += page.length
      if (page.length < want) break
      after = page[page.length - 1]!.user
      if (flags.limit !== undefined && listed >= flags.limit) {
        next = after
        break
      }
    }
    return {users, next}
  }
}
