/**
 * Shared by the Dovecot configuration tests: a mailring store with given servers and users (through the
 * store API), and a render context built on it without a config file.
 */
import {DEFAULT_DOVECOT_SETTINGS, versionOf, type DovecotSettings} from '../../src/dovecot/settings.js'
import * as path from 'node:path'

import {renderFor} from '../../src/engine/dovecot-config/render.js'
import {type DovecotContext} from '../../src/engine/context.js'
import {DEFAULT_DOVEADM_SETTINGS} from '../../src/remote/doveadm-settings.js'
import type {Server} from '../../src/core/topology.js'
import {SqliteStore} from '../../src/store/sqlite.js'
import type {StoreLocation} from '../../src/store/open.js'
import type {Store} from '../../src/store/store.js'
import type {DovecotHost, DovecotOptions} from './dovecot.js'
import {userBatch} from './user-batch.js'

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

/** `doveadm user USER` on a host: its exit code and the fields it printed (2.3 and 2.4 alike). */
export async function userFields(
  host: DovecotHost,
  user: string,
): Promise<{exitCode: number | null; fields: Record<string, string>; stderr: string}> {
  const r = await host.doveadm(['user', user])
  const fields: Record<string, string> = {}
  for (const line of r.stdout.split('\n')) {
    const m = /^(\S+)\s+(.*)$/.exec(line.trim())
    if (m) fields[m[1]!] = m[2]!
  }
  return {exitCode: r.exitCode, fields, stderr: r.stderr}
}

/** The users `doveadm user '*'` lists (the userdb iteration), sorted. */
export async function listUsers(host: DovecotHost): Promise<string[]> {
  const r = await host.doveadm(['user', '*'])
  if (r.exitCode !== 0) throw new Error(`doveadm user '*' failed (exit ${r.exitCode}): ${r.stderr}`)
  return r.stdout
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l !== '')
    .sort()
}

/**
 * Users and their ordered copies on mx-a, mx-b and mx-c: each server holds four of them, one copy list is
 * three long, and each of a and b is first for some users and second or last for others.
 */
export const CLUSTER_USERS: [string, string[]][] = [
  ['alice@example.com', ['mx-a', 'mx-b']],
  ['bob@example.com', ['mx-b', 'mx-a']],
  ['carol@example.org', ['mx-a', 'mx-c']],
  ['dave@example.org', ['mx-b', 'mx-c']],
  ['erin@example.net', ['mx-c', 'mx-b', 'mx-a']],
]

/**
 * A SQLite store at DIR/cluster.db with mx-a and mx-b at the given addresses, mx-c at `cAddress`, and
 * CLUSTER_USERS; and a render context on it.
 */
export async function sqliteCluster(
  dir: string,
  addresses: {a: string; b: string; c: string},
  settings: Partial<DovecotSettings> = {},
): Promise<{store: SqliteStore; dbPath: string; ctx: DovecotContext}> {
  const dbPath = `${dir}/cluster.db`
  const store = (await SqliteStore.init(dbPath)).store
  await fillStore(
    store,
    [
      {name: 'mx-a', address: addresses.a},
      {name: 'mx-b', address: addresses.b},
      {name: 'mx-c', address: addresses.c},
    ],
    CLUSTER_USERS,
  )
  const ctx = await contextFor(store, {kind: 'sqlite', path: dbPath, source: 'test'}, settings)
  return {store, dbPath, ctx}
}

/** Runs `fn` with `server` marked down in the store, and marks it active again afterwards. */
export async function whileDown(store: Store, server: string, fn: () => Promise<void>): Promise<void> {
  await setState(store, server, 'down')
  try {
    await fn()
  } finally {
    await setState(store, server, 'active')
  }
}

/** The `host` a proxy's passdb answers for a user (`doveadm auth lookup`), or undefined. */
export async function proxyHost(proxy: DovecotHost, user: string): Promise<string | undefined> {
  const r = await proxy.doveadm(['auth', 'lookup', user])
  return /^\s*host\s*:?\s+(\S+)/m.exec(r.stdout)?.[1]
}

/**
 * startDovecot options for a backend whose userdb is the SQL file mailring renders for `server`, with the
 * homes in the host's own folder. 2.3 (the context's version for the server): a `userdb { driver = sql }`
 * block naming the file; 2.4: the file `!include`d where the userdb block goes (after
 * dovecot_config_version, which it must not set; docs/dovecot-facts.md), bringing its own `userdb sql`.
 */
export function renderedUserdb(
  ctx: DovecotContext,
  server: string,
): Pick<DovecotOptions, 'files' | 'userdb'> {
  const render = (home: string) =>
    renderFor({...ctx, settings: {...ctx.settings, home: `${home}/%d/%n`}}, server)
  if (versionOf(ctx.settings, server) === '2.4') {
    return {
      files: (c) => ({'mailring-sql.conf': render(path.join(c.dir, 'home')).rendered.text}),
      userdb: (c) => `!include ${path.join(c.dir, 'mailring-sql.conf')}`,
    }
  }
  return {
    files: (c) => ({'dovecot-sql.conf.ext': render(path.join(c.dir, 'home')).rendered.text}),
    userdb: (c) => `userdb {\n  driver = sql\n  args = ${path.join(c.dir, 'dovecot-sql.conf.ext')}\n}`,
  }
}
