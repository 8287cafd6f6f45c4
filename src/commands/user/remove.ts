import * as Args from '@oclif/core/args'

import {lockFlags} from '../../cli/flags.js'
import {StoreCommand} from '../../cli/store-command.js'
import {removeUsers} from '../../engine/cluster/cluster.js'

export interface UserRemoveResult {
  removed: string[]
}

export default class UserRemove extends StoreCommand {
  static override summary = 'Remove users from the cluster state.'
  static override description = `Removes the users and the record of their copies; the mail on the servers is not touched. All or nothing: an unknown user removes none.

Exit codes: 0 removed, 1 bad input (unknown user, invalid address), 3 cluster locked, 4 store error.`

  static override examples = ['<%= config.bin %> user remove alice@example.com']
  static override strict = false
  static override args = {
    user: Args.string({ignoreStdin: true, description: 'user address(es)', required: true}),
  }
  static override flags = {...lockFlags}

  async run(): Promise<UserRemoveResult> {
    const {argv, flags} = await this.parse(UserRemove)
    const removed = await this.locked(flags, 'user remove', (store) => removeUsers(store, argv as string[]))
    this.log(`Removed ${removed.join(', ')}.`)
    return {removed}
  }
}
