import {StoreCommand} from '../../cli/store-command.js'
import {replicatorStatus, type ReplicatorStatus} from '../../engine/replicator/status.js'
import {replicatorStatusText} from '../../ui/replicator.js'

export default class ReplicatorStatusCommand extends StoreCommand {
  static override summary =
    'Show the replication queue, its lag, each server’s health and failures, and the full sync.'
  static override description = `Read from the store, so it shows the state whichever host the replicators run on: users waiting per priority (mail, change, catch-up, full) and how many are due, the lag (age of the oldest change still waiting), syncs in flight and retrying; each server's health as the replicator's probes decided it (up, down, returning: being caught up before it takes logins again), replication failures since it was last up and the last error; and the periodic full sync's pass.

Exit codes: 0 shown, 4 store error.`

  static override examples = [
    '<%= config.bin %> replicator status',
    '<%= config.bin %> replicator status --json',
  ]

  async run(): Promise<ReplicatorStatus> {
    const {flags} = await this.parse(ReplicatorStatusCommand)
    const status = await replicatorStatus(await this.store(flags))
    this.log(replicatorStatusText(status))
    return status
  }
}
