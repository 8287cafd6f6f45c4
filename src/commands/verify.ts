import * as Flags from '@oclif/core/flags'

import {StoreCommand} from '../cli/store-command.js'
import {ExitCode, MailringError} from '../core/errors.js'
import type {DoveadmFleet} from '../engine/sync/fleet.js'
import {syncUsers, type SyncSummary} from '../engine/sync/sync.js'
import {selectFor} from '../engine/sync/selection.js'
import {verifyUsers, type UserVerifyResult, type VerifySummary} from '../engine/sync/verify.js'
import {startProgress} from '../ui/progress.js'
import {syncSummaryLine} from '../ui/sync.js'
import {userVerifyLines, verifySummaryLine} from '../ui/verify.js'

/** Exit code 2: some copies could not be read, so agreement is unknown. */
export const COULD_NOT_CHECK = 2

export interface VerifyResult {
  summary: VerifySummary
  /** Users whose copies differ or could not all be read (the ones that agree are counted only). */
  users: UserVerifyResult[]
  problems: string[]
  /** With --repair: the sync of the users that differed, and their verification afterwards. */
  repair?: {sync: SyncSummary; after: VerifySummary; users: UserVerifyResult[]}
}

export default class Verify extends StoreCommand {
  static override summary = "Check that each user's copies agree, and say how they differ."
  static override description = `Compares every copy of each selected user: the mailbox list; per mailbox the message count, UIDVALIDITY, UIDNEXT and mailbox GUID; and every message's GUID, flags and keywords, so that the report says which messages are missing where ("INBOX: 2 messages on mx01 missing on mx03") and where flags differ. A copy on a server that is down or unreachable makes the user "could not check", never "agree". --repair runs a full sync of the users that differ (as \`mailring sync user --full\`) and verifies them again.

Exit codes (for monitoring): 0 all copies agree, 1 differences found (after --repair: still found) or bad input, 2 could not check some copies (a server down or unreachable), 4 store error.`

  static override examples = [
    '<%= config.bin %> verify --domain example.com',
    '<%= config.bin %> verify --all --sample 500 --json',
    '<%= config.bin %> verify --server mx03 --repair',
    '<%= config.bin %> verify --user alice@example.com',
  ]

  static override flags = {
    user: Flags.string({char: 'u', summary: 'A user to check (repeatable).', multiple: true}),
    domain: Flags.string({char: 'd', summary: 'Every user of a domain (repeatable).', multiple: true}),
    server: Flags.string({
      char: 's',
      summary: 'Every user with a copy on a server (repeatable).',
      multiple: true,
    }),
    all: Flags.boolean({summary: 'Every user.', exclusive: ['user', 'domain', 'server']}),
    sample: Flags.integer({
      summary: 'Check at most N of the selected users, spread over every server.',
      min: 1,
    }),
    repair: Flags.boolean({summary: 'Fully sync the users whose copies differ, then verify them again.'}),
    parallel: Flags.integer({summary: 'Users checked at once.', default: 8, min: 1, max: 256}),
    'accept-new': Flags.boolean({
      summary: 'Trust and record the SSH host key of a server not in known_hosts yet (ssh transport).',
    }),
  }

  async run(): Promise<VerifyResult> {
    const {flags} = await this.parse(Verify)
    if (!flags.all && !flags.user && !flags.domain && !flags.server)
      throw new MailringError('Say which users to verify: --user U, --domain D, --server S or --all.', {
        code: 'usage',
      })
    const store = await this.store(flags)
    const selection = await selectFor(store, {
      ...(flags.user ? {users: flags.user} : {}),
      ...(flags.domain ? {domains: flags.domain} : {}),
      ...(flags.server ? {servers: flags.server} : {}),
      all: flags.all,
      ...(flags.sample === undefined ? {} : {sample: flags.sample}),
    })
    for (const problem of selection.problems) this.warnUser(problem)
    return this.withFleet(flags, {acceptNew: flags['accept-new']}, async (fleet) => {
      const checked = await this.verify(fleet, selection.targets, flags.parallel, 'Verifying')
      const result: VerifyResult = {
        summary: checked.summary,
        users: checked.results.filter((r) => r.status !== 'agree'),
        problems: selection.problems,
      }
      this.log(verifySummaryLine(checked.summary))
      const differing = checked.results.filter((r) => r.status === 'differ')
      if (flags.repair && differing.length > 0) {
        // A full sync: copies whose mailbox summaries match (each took another message before they synced)
        // are merged only by doveadm sync -f.
        const sync = await syncUsers(fleet, differing, {
          parallel: flags.parallel,
          full: true,
          keepStates: (user, states) => store.saveSyncStates(user, states),
        })
        this.log(`Repair: ${syncSummaryLine(sync.summary)}`)
        const after = await this.verify(fleet, differing, flags.parallel, 'Verifying again')
        this.log(`After the repair: ${verifySummaryLine(after.summary)}`)
        result.repair = {
          sync: sync.summary,
          after: after.summary,
          users: after.results.filter((r) => r.status !== 'agree'),
        }
      }
      process.exitCode = verifyExitCode(result)
      return result
    })
  }

  private async verify(
    fleet: DoveadmFleet,
    users: Parameters<typeof verifyUsers>[1],
    parallel: number,
    label: string,
  ) {
    const progress = startProgress(label, {json: this.jsonEnabled(), total: users.length, unit: 'users'})
    let finished = 0
    try {
      return await verifyUsers(fleet, users, {
        parallel,
        onUser: (r) => {
          progress.update(++finished)
          if (!this.jsonEnabled()) for (const line of userVerifyLines(r)) this.log(line)
        },
      })
    } finally {
      progress.stop()
    }
  }
}

function verifyExitCode(r: VerifyResult): number {
  const final = r.repair
    ? {...r.summary, differ: r.repair.after.differ, unchecked: r.summary.unchecked + r.repair.after.unchecked}
    : r.summary
  if (final.differ > 0 || r.problems.length > 0) return ExitCode.error
  if (final.unchecked > 0) return COULD_NOT_CHECK
  return ExitCode.ok
}
