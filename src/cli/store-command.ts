import {BaseCommand} from './base-command.js'
import {storeFlags} from './flags.js'
import {loadDovecotContext, type DovecotContext} from '../engine/context.js'
import {withClusterLock} from '../engine/lock.js'
import type {DoveadmFleet, FleetOptions} from '../engine/sync/fleet.js'
import {initStore, locateStore, openStore, type StoreLocation} from '../store/open.js'
import type {ClusterLock, Store, UsersTableSpec} from '../store/store.js'
import {locateConfigFile, readConfigFile} from '../config/config-file.js'
import {MailringError} from '../core/errors.js'
import {usersTableFromConfig} from '../store/users-table-config.js'

export interface StoreFlagValues {
  db?: string
  config?: string
}

/** The values of `lockFlags`, which every command that takes the cluster lock declares. */
export interface LockFlagValues {
  /** --wait, in milliseconds. */
  wait: number | undefined
}

/** A command that works on the store: finds it, opens it, closes it, and takes the cluster lock on demand. */
export abstract class StoreCommand extends BaseCommand {
  static override baseFlags = {...BaseCommand.baseFlags, ...storeFlags}

  private openedStore?: Store

  /** Where the store is, from --db, MAILRING_DB, a config file or the default. */
  protected storeLocation(flags: StoreFlagValues): StoreLocation {
    return locateStore({db: flags.db, config: flags.config})
  }

  /** The operator's users table named by the config file's users_table section; refused when absent. */
  protected usersTableSpec(flags: StoreFlagValues, command: string): UsersTableSpec {
    const path = locateConfigFile(flags.config)
    const spec = usersTableFromConfig(path === undefined ? undefined : readConfigFile(path))
    if (!spec) {
      throw new MailringError(
        `${command} reads the operator's users table: name it in the config file${path === undefined ? ' (--config FILE, MAILRING_CONFIG, ./mailring.yaml or ~/.config/mailring/config.yaml)' : ` ${path}`}, e.g. "users_table: {table: users, user_column: email}".`,
        {code: 'no_users_table'},
      )
    }
    return spec
  }

  /** Creates the store (or opens it, unchanged, when it exists); the caller closes it. */
  protected async createStore(
    flags: StoreFlagValues,
    options: {copies: number},
  ): Promise<{store: Store; created: boolean}> {
    return initStore(this.storeLocation(flags), options)
  }

  protected async store(flags: StoreFlagValues): Promise<Store> {
    if (!this.openedStore) this.openedStore = await openStore(this.storeLocation(flags))
    return this.openedStore
  }

  /** The context a job that reaches Dovecot runs with: the store, the config file's sections, the servers. */
  protected async dovecotContext(flags: StoreFlagValues): Promise<DovecotContext> {
    return loadDovecotContext({
      store: await this.store(flags),
      location: this.storeLocation(flags),
      ...(flags.config === undefined ? {} : {config: flags.config}),
    })
  }

  /** Runs `work` with a doveadm fleet over the store's servers, closed whatever happens. */
  protected async withFleet<T>(
    flags: StoreFlagValues,
    options: FleetOptions,
    work: (fleet: DoveadmFleet) => Promise<T>,
  ): Promise<T> {
    // Loaded here, not at start: it brings ssh2 and the doveadm transports, which most commands never use.
    const {withFleet} = await import('../engine/sync/fleet.js')
    return withFleet(await this.dovecotContext(flags), options, work)
  }

  /**
   * Runs `work` on the store under the cluster lock, named after this command in messages; waits for a lock
   * another process holds when --wait (lockFlags) says so.
   */
  protected async locked<T>(
    flags: StoreFlagValues & LockFlagValues,
    label: string,
    work: (store: Store, lock: ClusterLock) => Promise<T>,
  ): Promise<T> {
    const store = await this.store(flags)
    return withClusterLock(store, label, (lock) => work(store, lock), {
      ...(flags.wait === undefined ? {} : {waitMs: flags.wait}),
      onStale: (message) => this.warnUser(message),
      // Like progress: on a terminal only, never under --json.
      onWaiting: (message) => {
        if (!this.jsonEnabled() && process.stderr.isTTY) process.stderr.write(`${message}...\n`)
      },
    })
  }

  protected override async finally(error: Error | undefined): Promise<void> {
    await this.openedStore?.close()
    await super.finally(error)
  }
}
