/**
 * Shared by the Dovecot configuration tests: a mailring store with given servers and users (through the
 * store API), and a render context built on it without a config file.
 */
import {DEFAULT_DOVECOT_SETTINGS, type DovecotSettings} from '../../src/dovecot/settings.js'
import type {DovecotContext} from '../../src/engine/config-render.js'
import type {Server} from '../../src/core/topology.js'
import type {StoreLocation} from '../../src/store/open.js'
import type {Store, UserBatch} from '../../src/store/store.js'

/** A batch of users, each given as [address, copies] (primary first). */
export function userBatch(users: [string, string[]][]): UserBatch {
  const servers = [...new Set(users.flatMap(([, copies]) => copies))]
  const copyStart = new Int32Array(users.length + 1)
  const copyServers: number[] = []
  users.forEach(([, copies], i) => {
    copyStart[i] = copyServers.length
    copyServers.push(...copies.map((name) => servers.indexOf(name)))
  })
  copyStart[users.length] = copyServers.length
  return {
    users: users.map(([user]) => user),
    domains: users.map(([user]) => user.slice(user.indexOf('@') + 1)),
    copyStart,
    copyServers: Int32Array.from(copyServers),
    servers,
  }
}

export async function fillStore(
  store: Store,
  servers: Pick<Server, 'name' | 'address'>[],
  users: [string, string[]][],
  copies = 2,
): Promise<void> {
  const topology = await store.readTopology()
  await store.writeTopology({
    ...topology,
    copies,
    servers: servers.map((s) => ({...s, weight: 1, state: 'active'})),
  })
  await store.insertUsers([userBatch(users)], {skipExisting: false})
}

export async function setState(store: Store, name: string, state: Server['state']): Promise<void> {
  const topology = await store.readTopology()
  await store.writeTopology({
    ...topology,
    servers: topology.servers.map((s) => (s.name === name ? {...s, state} : s)),
  })
}

export async function contextFor(
  store: Store,
  location: StoreLocation,
  settings: Partial<DovecotSettings> = {},
): Promise<DovecotContext> {
  return {
    store,
    location,
    settings: {...DEFAULT_DOVECOT_SETTINGS, versions: {}, ...settings},
    ssh: {},
    servers: (await store.readTopology()).servers,
    env: {},
  }
}
