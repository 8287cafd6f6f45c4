import * as Flags from '@oclif/core/flags'

import {ExitCode} from '../core/errors.js'
import {withFleet} from '../engine/sync/fleet.js'
import {syncUsers, type SyncSummary, type UserSyncResult} from '../engine/sync/sync.js'
import type {Selection} from '../engine/sync/selection.js'
import type {Store} from '../store/store.js'
import {startProgress} from '../ui/progress.js'
import {syncSummaryLine, unusableServerLines, userSyncLine} from '../ui/sync.js'
import {StoreCommand} from './store-command.js'

export interface SyncResult {
  summary: SyncSummary
  users: UserSyncResult[]
  /** Names that selected nothing (unknown user or domain). */
  problems: string[]
}

/** Exit code 2: every user that could be synced was, but some copies were on servers that were down. */
export const NOT_FULLY_REPLICATED = 2

/** `sync user` and `sync domain`: the same run over a different selection of users. */
export abstract class SyncCommand extends StoreCommand {
  static override flags = {
    full: Flags.boolean({
      summary: 'Full sync (doveadm sync -f): compare everything, not only recent changes.',
    }),
    parallel: Flags.integer({summary: 'Users synced at once.', default: 4, min: 1, max: 256}),
    'per-server': Flags.integer({
      summary: 'doveadm requests in flight to one server at once (default: doveadm.per_server, 4).',
      min: 1,
      max: 64,
    }),
    'json-lines': Flags.boolean({
      summary: 'One JSON line per user as it finishes, then one with the summary (for CI logs).',
      exclusive: ['json'],
    }),
    'accept-new': Flags.boolean({
      summary: 'Trust and record the SSH host key of a server not in known_hosts yet (ssh transport).',
    }),
  }

  protected abstract select(store: Store, names: string[]): Promise<Selection>

  protected async runSync(
    flags: {
      db?: string
      config?: string
      full: boolean
      parallel: number
      'per-server'?: number
      'json-lines': boolean
      'accept-new': boolean
    },
    names: string[],
  ): Promise<SyncResult> {
    const store = await this.store(flags)
    const selection = await this.select(store, names)
    const ctx = await this.dovecotContext(flags)
    const lines = flags['json-lines']
    for (const problem of selection.problems) {
      if (lines) this.log(JSON.stringify({type: 'problem', message: problem}))
      else this.warnUser(problem)
    }
    const fleetOptions = {
      ...(flags['per-server'] ? {perServer: flags['per-server']} : {}),
      acceptNew: flags['accept-new'],
    }
    const progress = startProgress('Syncing', {
      json: this.jsonEnabled() || lines,
      total: selection.targets.length,
      unit: 'users',
    })
    let finished = 0
    let run: Awaited<ReturnType<typeof syncUsers>>
    try {
      run = await withFleet(ctx, fleetOptions, (fleet) =>
        syncUsers(fleet, selection.targets, {
          full: flags.full,
          parallel: flags.parallel,
          keepStates: (user, states) => store.saveSyncStates(user, states),
          onUser: (r) => {
            progress.update(++finished)
            if (lines) this.log(JSON.stringify({type: 'user', ...r}))
            else {
              const line = userSyncLine(r)
              if (line) process.stderr.write(`${line}\n`)
            }
          },
        }),
      )
    } finally {
      progress.stop()
    }
    const {summary, results} = run
    if (lines) this.log(JSON.stringify({type: 'summary', ...summary, problems: selection.problems.length}))
    else {
      for (const line of unusableServerLines(summary)) this.warnUser(line)
      this.log(syncSummaryLine(summary))
    }
    process.exitCode = syncExitCode(summary, selection.problems.length)
    return {summary, users: results, problems: selection.problems}
  }
}

function syncExitCode(summary: SyncSummary, problems: number): number {
  if (summary.failed > 0 || problems > 0) return ExitCode.error
  if (summary.partial > 0) return NOT_FULLY_REPLICATED
  return ExitCode.ok
}
