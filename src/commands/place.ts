import {Args} from '@oclif/core'

import {normalizeUser} from '../core/address.js'
import {MailringError} from '../core/errors.js'
import {Placement} from '../core/placement.js'
import {loadTopologyFile} from '../config/topology-file.js'
import {renderTable} from '../ui/table.js'
import {BaseCommand} from '../cli/base-command.js'
import {topologyFlag} from '../cli/flags.js'

export interface PlaceResult {
  algorithm: number
  users: {user: string; servers: {name: string; address: string; zone: string | null; state: string}[]}[]
}

export default class Place extends BaseCommand {
  static override summary = "Show each user's servers, primary first."
  static override description =
    'Addresses are canonicalised as Dovecot sees them with %Lu: lower-cased, with internationalised domains in their ASCII form.'

  static override examples = [
    '<%= config.bin %> place alice@example.com --topology examples/cluster.yaml',
    '<%= config.bin %> place alice@example.com bob@example.org -t examples/cluster.yaml --json',
  ]

  static override strict = false
  static override args = {user: Args.string({description: 'user address(es)', required: true})}
  static override flags = {
    topology: topologyFlag,
  }

  async run(): Promise<PlaceResult> {
    const {argv, flags} = await this.parse(Place)
    if (!flags.topology)
      throw new MailringError('No topology given: pass --topology FILE or set MAILRING_TOPOLOGY.')
    const placement = new Placement(loadTopologyFile(flags.topology))
    const users = (argv as string[]).map(normalizeUser)
    for (const warning of placement.warnings()) this.warnUser(warning.message)

    const result: PlaceResult = {
      algorithm: placement.topology.algorithm,
      users: users.map((user) => ({
        user,
        servers: placement.serversFor(user).map((name) => {
          const server = placement.servers[placement.serverIndex(name)!]!
          return {name, address: server.address, zone: server.zone ?? null, state: server.state}
        }),
      })),
    }
    const copies = Math.max(...result.users.map((u) => u.servers.length))
    const head = ['USER', 'PRIMARY', ...Array.from({length: copies - 1}, (_, k) => `COPY ${k + 2}`)]
    this.log(
      renderTable(
        head,
        result.users.map((u) => [
          u.user,
          ...u.servers.map((s) => (s.state === 'active' ? s.name : `${s.name} (${s.state})`)),
        ]),
      ),
    )
    return result
  }
}
