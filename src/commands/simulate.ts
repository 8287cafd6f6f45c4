import * as Flags from '@oclif/core/flags'

import {MailringError} from '../core/errors.js'
import {
  checkedSimulate,
  checkedSyntheticTopology,
  failureSpec,
  wholeNumber,
} from '../core/simulate/checked.js'
import {
  DEFAULT_SIM_SEED,
  DEFAULT_SIM_USERS,
  MAX_EXACT_SETS,
  MAX_SIM_COPIES,
  type SimulationResult,
} from '../core/simulate/index.js'
import {groupDigits} from '../core/number-format.js'
import {DEFAULT_COPIES, type Topology} from '../core/topology.js'
import {loadTopologyFile} from '../config/topology-file.js'
import {renderSimulation} from '../ui/simulate.js'
import {BaseCommand} from '../cli/base-command.js'
import {topologyFlag} from '../cli/flags.js'

/** The `result` of `mailring simulate --json`. */
export type SimulateResult = Omit<SimulationResult, 'warnings'>

export default class Simulate extends BaseCommand {
  static override summary =
    'Simulate server failures: users offline, where their load goes, and capacity, ring vs pairs.'

  static override description = `Places synthetic users (user1@sim.example, user2@sim.example, ...) on a topology file or on a synthetic cluster (--servers), fails servers and reports, for mailring's placement (the ring) and for a classic layout of mirrored pairs on the same servers, side by side:

- users with no live copy: for this failure, expected over all sets of K failed servers (exact: C(N-r, K-r) / C(N, K) per user with r copies), and the worst K-set (found by enumeration when there are at most ${groupDigits(MAX_EXACT_SETS)} sets, else by search: "worstMethod" says which);
- load (logins, deliveries): each user's load goes to its first live copy, primary first; the increase on the survivors;
- capacity: with --capacity C users per server (C x weight / mean weight when weights differ), how many users the cluster holds while any K servers (or, with --fail-zone, any one zone) may fail and no survivor is over capacity. K = 1 is exact; larger K enumerates every set when that is affordable, else samples (the "method" says which).

The pair layout sorts the servers by zone, then name, and deals them in turn to floor(N / R) groups of R, so that members of a group are in different zones where the zones allow; when R does not divide N, the servers left over join the first groups. Users go to a group by weighted rendezvous hashing (a group weighs the sum of its members); inside the group the members are ordered by hash, so the primary alternates, and the user's R copies are the first R (all of a group of R; R of a group that took a left-over server), so every user has R copies in both layouts. Pools of domain policies get pair groups of their own.

Servers in state down count as failed already: every figure is "the down servers plus K more", and random failures are drawn from the other servers. Draining servers hold no copies in the placement and take no part. With a topology file that has domain policies, users are spread evenly over sim.example and every policy domain, so each pool gets its share.`

  static override examples = [
    {
      description: 'The arithmetic of a 10-server cluster: 2 servers fail, each server serves 10,000 users.',
      command:
        '<%= config.bin %> <%= command.id %> --servers 10 --users 100000 --replicas 2 --fail 2 --capacity 10000',
    },
    {
      description: 'Three zones, three copies: lose a whole zone.',
      command: '<%= config.bin %> <%= command.id %> --servers 12 --zones 3 --replicas 3 --fail-zone z2',
    },
    {
      description: 'Your own cluster, two named servers failing, load per server.',
      command: '<%= config.bin %> <%= command.id %> -t examples/cluster.yaml --fail mx01,mx05 --per-server',
    },
    {
      description: 'A different random failure, as JSON for a script.',
      command:
        '<%= config.bin %> <%= command.id %> --servers 100 --users 1000000 --replicas 3 --fail 2 --seed 7 --json',
    },
  ]

  static override flags = {
    topology: topologyFlag,
    servers: Flags.integer({
      char: 's',
      summary:
        'Simulate a synthetic cluster of this many servers (s01, s02, ...) instead of a topology file.',
    }),
    zones: Flags.integer({
      summary: 'Synthetic cluster: number of failure zones (z1, z2, ...); servers are dealt to them in turn.',
    }),
    replicas: Flags.integer({
      char: 'r',
      summary: "Copies of each mailbox: the synthetic cluster's, or instead of the topology file's default.",
    }),
    users: Flags.integer({
      char: 'u',
      summary: 'Number of synthetic users to place.',
      default: DEFAULT_SIM_USERS,
    }),
    fail: Flags.string({
      char: 'f',
      summary:
        'What fails: a number K of servers chosen at random (default 1), or server names, comma-separated (a plain number is always a count).',
    }),
    'fail-zone': Flags.string({
      summary: 'Fail every server of this zone; capacity then tolerates the loss of any one zone.',
    }),
    seed: Flags.integer({
      summary: 'Seed for the random failure and for sampling failure sets (the same seed, the same result).',
      default: DEFAULT_SIM_SEED,
    }),
    capacity: Flags.integer({
      char: 'c',
      summary: 'Active users one server (of mean weight) can serve; capacity figures are then in users.',
    }),
    'per-server': Flags.boolean({
      summary: "Also show every server's load before and after the failure.",
      default: false,
    }),
  }

  async run(): Promise<SimulateResult> {
    const {flags, raw} = await this.parse(Simulate)
    const given = (name: string) => raw.some((token) => token.type === 'flag' && token.flag === name)

    let topology: Topology
    let source: 'synthetic' | 'topology'
    if (flags.servers !== undefined) {
      // An explicit --servers wins over a MAILRING_TOPOLOGY set in the environment, not over --topology.
      if (given('topology'))
        throw new MailringError('Give either --topology or --servers (a synthetic cluster), not both.')
      topology = checkedSyntheticTopology({
        servers: flags.servers,
        replicas: flags.replicas ?? DEFAULT_COPIES,
        ...(flags.zones === undefined ? {} : {zones: flags.zones}),
      })
      source = 'synthetic'
    } else {
      if (!flags.topology)
        throw new MailringError(
          'No cluster given: pass --topology FILE (or set MAILRING_TOPOLOGY), or --servers N for a synthetic cluster.',
        )
      if (flags.zones !== undefined)
        throw new MailringError(
          '--zones applies to a synthetic cluster (--servers); a topology file sets zones.',
        )
      topology = loadTopologyFile(flags.topology)
      if (flags.replicas !== undefined) {
        wholeNumber(flags.replicas, '--replicas', 1, MAX_SIM_COPIES)
        topology = {...topology, copies: flags.replicas}
      }
      source = 'topology'
    }

    const {warnings, ...result} = checkedSimulate({
      topology,
      source,
      users: flags.users,
      failure: failureSpec(flags.fail, flags['fail-zone'], flags.seed),
      seed: flags.seed,
      perServer: flags['per-server'],
      ...(flags.capacity === undefined ? {} : {capacityPerServer: flags.capacity}),
    })
    // Warnings go to stderr, or into the envelope's own `warnings` under --json.
    for (const warning of warnings) this.warnUser(warning)
    if (!this.jsonEnabled()) this.log(renderSimulation(result))
    return result
  }
}
