import {BaseCommand} from './base-command.js'
import {storeFlags} from './flags.js'
import {withClusterLock} from '../engine/lock.js'
import {locateStore, openStore, type StoreLocation} from '../store/open.js'
import type {Store} from '../store/store.js'

export interface StoreFlagValues {
  db?: string
  config?: string
}

/** A command that works on the store: finds it, opens it, closes it, and takes the cluster lock on demand. */
export abstract class StoreCommand extends BaseCommand {
  static override baseFlags = {...BaseCommand.baseFlags, ...storeFlags}

  private openedStore?: Store

  /** Where the store is, from --db, MAILRING_DB, a config file or the default. */
  protected storeLocation(flags: StoreFlagValues): StoreLocation {
    return locateStore({db: flags.db, config: flags.config})
  }

  protected async store(flags: StoreFlagValues): Promise<Store> {
    if (!this.openedStore) this.openedStore = await openStore(this.storeLocation(flags))
    return this.openedStore
  }

  /** Runs `work` on the store under the cluster lock, named after this command in messages. */
  protected async locked<T>(
    flags: StoreFlagValues,
    label: string,
    work: (store: Store) => Promise<T>,
  ): Promise<T> {
    const store = await this.store(flags)
    return withClusterLock(
      store,
      label,
      () => work(store),
      (message) => this.warnUser(message),
    )
  }

  protected override async finally(error: Error | undefined): Promise<void> {
    await this.openedStore?.close()
    await super.finally(error)
  }
}
