import type {DomainPolicy, Topology} from '../core/topology.js'
import {renderTable} from './table.js'

export interface DomainView {
  domain: string
  /** Pinned servers; null when the domain uses every server. */
  servers: string[] | null
  /** The domain's own copy count; null when it follows the cluster default. */
  copies: number | null
  effectiveCopies: number
}

export function domainView(policy: DomainPolicy | undefined, domain: string, topology: Topology): DomainView {
  return {
    domain,
    servers: policy?.servers ?? null,
    copies: policy?.copies ?? null,
    effectiveCopies: policy?.copies ?? topology.copies,
  }
}

export function domainsTable(domains: readonly DomainView[]): string {
  return renderTable(
    ['DOMAIN', 'SERVERS', 'COPIES'],
    domains.map((d) => [
      d.domain,
      d.servers?.join(',') ?? 'all',
      d.copies === null ? `${d.effectiveCopies} (default)` : d.copies,
    ]),
    {align: ['left', 'left', 'right']},
  )
}
