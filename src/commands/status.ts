import * as Flags from '@oclif/core/flags'

import {StoreCommand} from '../cli/store-command.js'
import {clusterStatus, type StatusResult} from '../engine/cluster/status.js'
import {statusDoveadmWarnings, statusHeading, statusReport, statusWarnings} from '../ui/status.js'

// The --json result's shape, named beside the command as for every command.
export type {DoveadmStatus, StatusResult, StatusServer} from '../engine/cluster/status.js'

export default class Status extends StoreCommand {
  static override summary =
    'Show the servers with their users, copies, share against the target, and pending moves.'
  static override description = `SHARE is each server's share of all copies now, TARGET its share once the pending moves are done. Reads the whole placement: a few seconds for a million users. Without --doveadm, status reads only the store: it works offline.

--doveadm also asks each server's doveadm one harmless question (a user lookup), all servers at once, over the transport the config file's doveadm section names, with the doveadm password (MAILRING_DOVEADM_PASSWORD or doveadm.password_file). The DOVEADM column then says "ok N ms" (it answered, in N milliseconds), "unreachable" (no answer, or no address), "refused" (it answered but refused mailring: wrong password, not doveadm, SSH host key or login), or "down" (down in the store: not asked); why a server is unreachable or refused is printed below the table. Under --json each server gets "doveadm": {"state", "ms" or "reason"}.

Exit codes: 0 shown (with --doveadm, also when some servers are unreachable or refused: it is a report), 1 --doveadm without the doveadm password, or an invalid config file, 4 store error.`

  static override examples = [
    '<%= config.bin %> status',
    '<%= config.bin %> status --json',
    '<%= config.bin %> status --doveadm',
    "<%= config.bin %> status --doveadm --json | jq '.result.servers[] | {name, doveadm}'",
  ]

  static override flags = {
    doveadm: Flags.boolean({
      summary: "Also show whether each server's doveadm answers, and how fast (needs the doveadm password).",
    }),
  }

  async run(): Promise<StatusResult> {
    const {flags} = await this.parse(Status)
    const store = await this.store(flags)
    const doveadm = flags.doveadm ? await this.dovecotContext(flags) : undefined
    const outcome = await clusterStatus(store, {
      ...(doveadm ? {doveadm} : {}),
      onStore: (read) => {
        for (const line of statusHeading(read)) this.log(line)
      },
    })
    for (const warning of statusWarnings(outcome)) this.warnUser(warning)
    for (const line of statusReport(outcome)) this.log(line)
    for (const warning of statusDoveadmWarnings(outcome)) this.warnUser(warning)
    return outcome.status
  }
}
