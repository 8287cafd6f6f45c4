import {randomUUID} from 'node:crypto'

import {DEFAULT_COPIES, PLACEMENT_ALGORITHM_VERSION} from '../core/topology.js'
import type {StoreMeta} from './store.js'

/*
 * The rows of mailring_meta (key, value) that every store writes and reads alike; each store keeps its own
 * SQL, upsert syntax and schema_version bookkeeping.
 */

/** What `mailring init` records besides the schema version, as [key, value] rows. */
export function initialMetaRows(copies: number = DEFAULT_COPIES): [string, string][] {
  return [
    ['algorithm', String(PLACEMENT_ALGORITHM_VERSION)],
    ['cluster_id', randomUUID()],
    ['created_at', new Date().toISOString()],
    ['copies', String(copies)],
  ]
}

export function storeMetaOf(meta: ReadonlyMap<string, string>): StoreMeta {
  return {
    schemaVersion: Number(meta.get('schema_version')),
    algorithm: Number(meta.get('algorithm')),
    clusterId: meta.get('cluster_id') ?? '',
    createdAt: meta.get('created_at') ?? '',
  }
}
