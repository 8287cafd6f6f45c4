/**
 * Proxy and director hosts (docs/decisions/0004-replicator.md, "Proxies and directors are hosts in the
 * store"): not mail servers, never placement targets; `config push --role proxy` installs the proxy passdb
 * on them. The service behind `mailring proxy add|list|remove`.
 */
import {MailringError} from '../../core/errors.js'
import {serverAddressProblem, serverNameProblem} from '../../core/validate.js'
import {DOVECOT_VERSIONS, type DovecotVersion} from '../../dovecot/render.js'
import type {Host, HostRole, Store} from '../../store/store.js'
import {findHost} from '../dovecot-config/render.js'

/** The Dovecot versions a host may run (the versions mailring renders for). */
export const HOST_DOVECOT_VERSIONS: readonly DovecotVersion[] = DOVECOT_VERSIONS

export interface PutHostResult {
  host: Host
  /** The host as it was before (undefined: it is new). */
  previous?: Host
}

/** Every problem of a host's name, address and version at once, in one line (exit code 1). */
export function checkHost(input: {name: string; address: string; dovecotVersion?: string}): void {
  const problems: string[] = []
  const name = serverNameProblem(input.name)
  if (name) problems.push(name.replace('server name', 'host name'))
  if (input.address === '') problems.push('--address is missing: the host name or IP address of the proxy')
  else {
    const address = serverAddressProblem(input.address)
    if (address) problems.push(`--address ${address}`)
  }
  if (
    input.dovecotVersion !== undefined &&
    !(DOVECOT_VERSIONS as readonly string[]).includes(input.dovecotVersion)
  )
    problems.push(
      `--dovecot-version must be one of ${DOVECOT_VERSIONS.join(', ')} (got "${input.dovecotVersion}")`,
    )
  if (problems.length > 0) {
    const line = problems.join('; ')
    throw new MailringError(`${line.charAt(0).toUpperCase()}${line.slice(1)}.`, {code: 'invalid_host'})
  }
}

/** Adds a host, or changes the one of that name; refused when a mail server has the name. */
export async function putHost(
  store: Store,
  input: {name: string; address: string; role?: HostRole; dovecotVersion?: DovecotVersion},
): Promise<PutHostResult> {
  checkHost(input)
  const topology = await store.readTopology()
  if (topology.servers.some((s) => s.name === input.name))
    throw new MailringError(
      `${input.name} is a mail server (see \`mailring node list\`): give the proxy another name.`,
      {code: 'host_is_server'},
    )
  const previous = (await store.listHosts()).find((h) => h.name === input.name)
  const host: Host = {
    name: input.name,
    address: input.address,
    role: input.role ?? previous?.role ?? 'proxy',
    // Changing the address of a host keeps its Dovecot version unless a new one is given.
    dovecotVersion: input.dovecotVersion ?? previous?.dovecotVersion ?? null,
  }
  await store.putHost(host)
  return previous ? {host, previous} : {host}
}

export async function listHosts(store: Store, role?: HostRole): Promise<Host[]> {
  const hosts = await store.listHosts()
  return hosts
    .filter((h) => role === undefined || h.role === role)
    .sort((x, y) => x.name.localeCompare(y.name))
}

/** Removes a host; an unknown name is refused (exit code 1), naming the hosts there are. */
export async function removeHost(store: Store, name: string): Promise<Host> {
  const hosts = await store.listHosts()
  const host = findHost(hosts, name)
  // Gone in between (another mailring removed it): unknown all the same.
  if (!(await store.removeHost(name))) findHost([], name)
  return host
}
