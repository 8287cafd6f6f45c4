import * as Args from '@oclif/core/args'

import {SyncCommand} from '../../cli/sync-command.js'
import {selectUsers} from '../../engine/sync/selection.js'
import type {Store} from '../../store/store.js'

export default class SyncUser extends SyncCommand {
  static override summary = 'Bring every copy of the named users up to date with every other copy (N-way).'
  static override description = `For each user, doveadm sync from its first reachable copy with each other copy (two-way, locked with -l), repeated while Dovecot says "not fully synced", and again where a later copy brought changes the earlier ones have not seen: with R = 3 a change on any copy reaches the other two. A copy on a server that is down or unreachable is skipped and the user reported as not fully replicated.

doveadm is reached through its HTTP API (doveadm.transport: http, password in MAILRING_DOVEADM_PASSWORD or doveadm.password_file) or over SSH (doveadm.transport: ssh, or per server doveadm.transports).

Exit codes: 0 every copy of every user in sync, 1 bad input or a user failed (the others are still synced), 2 some copies were skipped (a server down or unreachable), 4 store error.`

  static override aliases = ['sync-user']
  static override strict = false
  static override examples = [
    '<%= config.bin %> sync user alice@example.com',
    '<%= config.bin %> sync-user alice@example.com bob@example.org --full',
    '<%= config.bin %> sync user alice@example.com --json',
  ]

  static override args = {
    user: Args.string({description: 'user address (several may follow)', required: true}),
  }

  async run() {
    const {argv, flags} = await this.parse(SyncUser)
    return this.runSync(flags, argv as string[])
  }

  protected select(store: Store, names: string[]) {
    return selectUsers(store, names)
  }
}
