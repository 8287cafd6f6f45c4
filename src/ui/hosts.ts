import {renderTable} from './table.js'

/** A proxy or director host as commands show it (the store's Host, structurally). */
export interface HostView {
  name: string
  address: string
  role: string
  dovecotVersion: string | null
}

export function hostsTable(hosts: readonly HostView[]): string {
  return renderTable(
    ['HOST', 'ADDRESS', 'ROLE', 'DOVECOT'],
    hosts.map((h) => [h.name, h.address, h.role, h.dovecotVersion ?? 'default']),
  )
}
