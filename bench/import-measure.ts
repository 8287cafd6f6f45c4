/**
 * The import measurement both store benchmarks make (store.ts on SQLite, mysql.ts on MariaDB): the same
 * users on the same ring of equal servers, `mailring users import`'s code path timed on them, and the table
 * rows that set it beside each store's own reference.
 */
import {createReadStream, writeFileSync} from 'node:fs'
import {join} from 'node:path'

import type {Topology} from '../src/core/topology.js'
import {importUsers} from '../src/engine/cluster/users-import.js'
import {withClusterLock} from '../src/engine/lock.js'
import type {Store} from '../src/store/store.js'
import {count, seconds, times} from './report.js'

export const BENCH_DOMAINS = [
  'example.com',
  'example.org',
  'mail.example.de',
  'archive.example.net',
  'corp.example.io',
]

/** `servers` active servers mx01, mx02, … of weight 1, 2 copies, no pinned domains. */
export function ringTopology(servers: number, addressOf: (index: number) => string): Topology {
  return {
    algorithm: 1,
    copies: 2,
    domains: [],
    servers: Array.from({length: servers}, (_, i) => ({
      name: `mx${String(i + 1).padStart(2, '0')}`,
      address: addressOf(i),
      weight: 1,
      state: 'active' as const,
    })),
  }
}

/** `total` distinct users over BENCH_DOMAINS, also written one a line to users.txt in `dir`. */
export function writeBenchUsers(dir: string, total: number): {users: string[]; file: string} {
  const users = Array.from(
    {length: total},
    (_, i) => `user${i}.${(i * 2654435761) >>> 20}@${BENCH_DOMAINS[i % BENCH_DOMAINS.length]}`,
  )
  const file = join(dir, 'users.txt')
  writeFileSync(file, `${users.join('\n')}\n`)
  return {users, file}
}

/** Milliseconds `mailring users import` of `file` takes under the cluster lock; throws unless all of `expected` came in. */
export async function timeImport(store: Store, file: string, expected: number): Promise<number> {
  const start = performance.now()
  const imported = await withClusterLock(store, 'users import', () =>
    importUsers(store, createReadStream(file, {encoding: 'utf8'}), {source: file, skipInvalid: false}),
  )
  const importMs = performance.now() - start
  if (imported.imported !== expected) throw new Error(`imported ${imported.imported} of ${expected}`)
  return importMs
}

/** Table rows (path, time, users/s, vs reference, target, result): the reference, then mailring's import. */
export function importRows(
  users: number,
  reference: {label: string; ms: number},
  importMs: number,
  target: string,
  result: string,
): string[][] {
  const perSecond = (ms: number) => count(Math.round(users / (ms / 1000)))
  return [
    [reference.label, seconds(reference.ms), perSecond(reference.ms), '1.00x', '', ''],
    [
      'mailring users import',
      seconds(importMs),
      perSecond(importMs),
      times(importMs / reference.ms),
      target,
      result,
    ],
  ]
}
