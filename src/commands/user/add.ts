import * as Args from '@oclif/core/args'

import {lockFlags} from '../../cli/flags.js'
import {StoreCommand} from '../../cli/store-command.js'
import {addUsers, type AddedUser} from '../../engine/cluster/cluster.js'
import {renderTable} from '../../ui/table.js'

export interface UserAddResult {
  users: AddedUser[]
}

export default class UserAdd extends StoreCommand {
  static override summary = 'Add users; each is placed at once on its target servers.'
  static override description = `A new user has no mail yet, so its current copies are its target copies. All or nothing: an invalid address or a user that exists already adds none.

Exit codes: 0 added, 1 bad input (invalid address, existing user), 3 cluster locked, 4 store error.`

  static override examples = [
    '<%= config.bin %> user add alice@example.com',
    '<%= config.bin %> user add bob@example.com carol@example.org --json',
  ]
  static override strict = false
  static override args = {
    user: Args.string({ignoreStdin: true, description: 'user address(es)', required: true}),
  }
  static override flags = {...lockFlags}

  async run(): Promise<UserAddResult> {
    const {argv, flags} = await this.parse(UserAdd)
    const users = await this.locked(flags, 'user add', (store) => addUsers(store, argv as string[]))
    this.log(
      renderTable(
        ['USER', 'COPIES'],
        users.map((u) => [u.user, u.copies.join(',')]),
      ),
    )
    return {users}
  }
}
