import * as Flags from '@oclif/core/flags'

import {askYesNo, canAsk} from '../cli/confirm.js'
import {StoreCommand} from '../cli/store-command.js'
import {MailringError} from '../core/errors.js'
import {
  breakClusterLock,
  checkBreakable,
  describeLockState,
  readClusterLock,
  type HolderRuns,
} from '../engine/lock.js'
import type {LockHolder} from '../store/store.js'

export interface UnlockResult {
  /** The holder found; null when the cluster was not locked. */
  holder: LockHolder | null
  /** Whether its process runs ("unknown" on another host); null when not locked. */
  holderRuns: HolderRuns | null
  /** unlocked: broken now; released: its holder freed it meanwhile; not-locked: nothing to unlock. */
  outcome: 'unlocked' | 'released' | 'not-locked'
}

export default class Unlock extends StoreCommand {
  static override summary = 'Break a cluster lock left by a process that died or by another host.'
  static override description = `Shows who holds the cluster lock (command, pid, host, since) and breaks it after you confirm, or at once with --yes; without a terminal to ask on, --yes is required. The lock is broken only if that holder still holds it. A holder that still runs on this host is refused: stop it instead. A holder on another host cannot be seen from here: make sure it is gone; if it still runs, it stops before its next write (exit code 3).

A lock left by a process that no longer runs on this host is also taken over by the next command, with a warning; unlock is for a lock held from another host, or to free the lock at once.

Exit codes: 0 unlocked, or nothing to unlock; 1 not confirmed (no --yes without a terminal, or answered no); 3 the holder still runs on this host, or the lock changed hands meanwhile; 4 store error (MySQL: no privilege to end the holder's connection).`

  static override examples = ['<%= config.bin %> unlock', '<%= config.bin %> unlock --yes --json']

  static override flags = {
    yes: Flags.boolean({char: 'y', summary: 'Break the lock without asking (for scripts).'}),
  }

  async run(): Promise<UnlockResult> {
    const {flags} = await this.parse(Unlock)
    const store = await this.store(flags)
    const state = await readClusterLock(store)
    if (!state) {
      this.log('The cluster is not locked: nothing to unlock.')
      return {holder: null, holderRuns: null, outcome: 'not-locked'}
    }
    checkBreakable(state)
    const held = `the cluster lock is held by ${describeLockState(state)}`
    if (!flags.yes) {
      if (!canAsk())
        throw new MailringError(`Not unlocked: ${held}; no terminal to confirm on: pass --yes to break it.`, {
          code: 'not_confirmed',
        })
      this.log(`T${held.slice(1)}.`)
      if (!(await askYesNo('Break it?')))
        throw new MailringError('Not unlocked: not confirmed.', {code: 'not_confirmed'})
    }
    const outcome = await breakClusterLock(store, state)
    this.log(
      outcome === 'unlocked'
        ? `Unlocked: broke the cluster lock of ${describeLockState(state)}.`
        : 'The cluster lock was released meanwhile: nothing to unlock.',
    )
    return {holder: state.holder, holderRuns: state.runs, outcome}
  }
}
