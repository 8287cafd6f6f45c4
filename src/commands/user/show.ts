import * as Args from '@oclif/core/args'

import {StoreCommand} from '../../cli/store-command.js'
import {showUser, type UserDetails} from '../../engine/cluster/cluster.js'

export type UserShowResult = UserDetails

export default class UserShow extends StoreCommand {
  static override summary = "Show a user's target copies, current copies and pending moves."
  static override description = 'Exit codes: 0 shown, 1 unknown user or invalid address, 4 store error.'
  static override examples = [
    '<%= config.bin %> user show alice@example.com',
    '<%= config.bin %> user show alice@example.com --json',
  ]
  static override args = {user: Args.string({ignoreStdin: true, description: 'user address', required: true})}

  async run(): Promise<UserShowResult> {
    const {args, flags} = await this.parse(UserShow)
    const details = await showUser(await this.store(flags), args.user)
    this.log(`user     ${details.user}`)
    this.log(`target   ${details.target.join(', ')}`)
    this.log(`current  ${details.current.join(', ')}`)
    if (details.pendingMoves.length === 0) this.log('pending  none: the copies are where the ring wants them')
    for (const move of details.pendingMoves) {
      const what =
        move.from === null
          ? `new copy on ${move.to}`
          : move.to === null
            ? `drop the copy on ${move.from}`
            : `${move.from} -> ${move.to}`
      this.log(`pending  ${what}`)
    }
    return details
  }
}
