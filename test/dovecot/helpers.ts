/**
 * Shared by the Dovecot configuration tests: a mailring store with given servers and users (through the
 * store API), and a render context built on it without a config file.
 */
import {DEFAULT_DOVECOT_SETTINGS, type DovecotSettings} from '../../src/dovecot/settings.js'
import type {DovecotContext} from '../../src/engine/config-render.js'
import {DEFAULT_DOVEADM_SETTINGS} from '../../src/remote/doveadm-settings.js'
import type {Server} from '../../src/core/topology.js'
import type {StoreLocation} from '../../src/store/open.js'
import type {Store} from '../../src/store/store.js'
import type {DovecotAddress} from '../support/dovecot.js'
import {canConnect, freePort} from '../support/ports.js'
import {userBatch} from '../support/user-batch.js'

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
    doveadm: {...DEFAULT_DOVEADM_SETTINGS, transports: {}, httpPorts: {}},
    servers: (await store.readTopology()).servers,
    env: {},
  }
}

/** A port free on both addresses: the stock replicator reaches every peer on one doveadm_port. */
export async function commonDoveadmPort(x: DovecotAddress, y: DovecotAddress): Promise<number> {
  for (let i = 0; i < 50; i++) {
    const port = await freePort(x.ip)
    if (!(await canConnect(port, y.ip, 200))) return port
  }
  throw new Error('no common free port')
}
