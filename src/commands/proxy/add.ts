import * as Args from '@oclif/core/args'
import * as Flags from '@oclif/core/flags'

import {StoreCommand} from '../../cli/store-command.js'
import type {DovecotVersion} from '../../dovecot/render.js'
import {checkHost, HOST_DOVECOT_VERSIONS, putHost} from '../../engine/cluster/hosts.js'
import type {Host, HostRole} from '../../store/store.js'
import {hostsTable} from '../../ui/hosts.js'

export interface ProxyAddResult {
  host: Host
  /** False when a proxy of this name existed and was changed. */
  created: boolean
  previous: Host | null
}

export default class ProxyAdd extends StoreCommand {
  static override summary =
    'Add a proxy host (or change one): `config push --role proxy` installs the proxy passdb there.'
  static override description = `A proxy (or director) host is not a mail server: it holds no copies and is never a placement target. Its Dovecot sends each login and delivery to the first healthy copy of the user, through the proxy passdb that \`mailring config push --role proxy\` installs on every proxy host. Adding a name that exists changes its address (and its Dovecot version, when given).

Exit codes: 0 added or changed, 1 bad input (invalid name or address, a mail server has the name), 4 store error.`

  static override examples = [
    '<%= config.bin %> proxy add proxy01 --address 192.0.2.10',
    '<%= config.bin %> proxy add proxy02 --address proxy02.example.net --dovecot-version 2.4',
    '<%= config.bin %> proxy add director01 --address 192.0.2.11 --role director',
  ]

  static override args = {
    name: Args.string({ignoreStdin: true, description: 'host name, e.g. proxy01', required: true}),
  }

  static override flags = {
    address: Flags.string({
      summary: 'Host name or IP address where mailring reaches it over SSH.',
      required: true,
    }),
    role: Flags.string({
      summary: 'proxy (default) or director (Dovecot 2.3): both get the proxy passdb.',
      options: ['proxy', 'director'],
    }),
    'dovecot-version': Flags.string({
      summary: "Its Dovecot version, when it differs from the config file's dovecot.version.",
      options: [...HOST_DOVECOT_VERSIONS],
    }),
  }

  async run(): Promise<ProxyAddResult> {
    const {args, flags} = await this.parse(ProxyAdd)
    checkHost({name: args.name, address: flags.address})
    const store = await this.store(flags)
    const version = flags['dovecot-version'] as DovecotVersion | undefined
    const {host, previous} = await putHost(store, {
      name: args.name,
      address: flags.address,
      ...(flags.role ? {role: flags.role as HostRole} : {}),
      ...(version ? {dovecotVersion: version} : {}),
    })
    this.log(hostsTable([host]))
    this.log(
      previous
        ? `Changed ${host.name} (was ${previous.address}${previous.dovecotVersion ? `, Dovecot ${previous.dovecotVersion}` : ''}).`
        : `Added ${host.name}. Install the proxy passdb there with \`mailring config push --role proxy --server ${host.name}\`.`,
    )
    return {host, created: previous === undefined, previous: previous ?? null}
  }
}
