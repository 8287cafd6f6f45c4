import {StoreCommand} from '../cli/store-command.js'
import {clusterStatus, type StatusResult} from '../engine/status.js'
import {statusHeading, statusReport, statusWarnings} from '../ui/status.js'

// The --json result's shape, named beside the command as for every command.
export type {StatusResult, StatusServer} from '../engine/status.js'

export default class Status extends StoreCommand {
  static override summary =
    'Show the servers with their users, copies, share against the target, and pending moves.'
  static override description = `SHARE is each server's share of all copies now, TARGET its share once the pending moves are done. Reads the whole placement: a few seconds for a million users.

Exit codes: 0 shown, 4 store error.`

  static override examples = ['<%= config.bin %> status', '<%= config.bin %> status --json']

  async run(): Promise<StatusResult> {
    const {flags} = await this.parse(Status)
    const outcome = await clusterStatus(await this.store(flags), {
      onStore: (read) => {
        for (const line of statusHeading(read)) this.log(line)
      },
    })
    for (const warning of statusWarnings(outcome)) this.warnUser(warning)
    for (const line of statusReport(outcome)) this.log(line)
    return outcome.status
  }
}
