import * as Flags from '@oclif/core/flags'

import {StoreCommand} from '../../cli/store-command.js'
import {topologyToYaml} from '../../config/topology-file.js'
import type {Topology} from '../../core/topology.js'
import {writeFileAtomically} from '../../config/atomic-file.js'

export interface TopologyExportResult {
  topology: Topology
  /** The file written, or null when printed. */
  file: string | null
}

export default class TopologyExport extends StoreCommand {
  static override summary = "Print the cluster's topology as YAML (the topology file format)."
  static override description = `Keep it in version control and change the cluster with \`mailring topology apply\`.

Exit codes: 0 exported, 1 cannot write the file, 4 store error.`

  static override examples = [
    '<%= config.bin %> topology export > cluster.yaml',
    '<%= config.bin %> topology export -o cluster.yaml',
  ]

  static override flags = {
    output: Flags.string({char: 'o', summary: 'Write to this file (atomically) instead of stdout.'}),
  }

  async run(): Promise<TopologyExportResult> {
    const {flags} = await this.parse(TopologyExport)
    const topology = await (await this.store(flags)).readTopology()
    const yaml = topologyToYaml(topology)
    if (flags.output) {
      writeFileAtomically(flags.output, yaml)
      this.logToStderr(`Wrote ${flags.output}.`)
    } else if (!this.jsonEnabled()) process.stdout.write(yaml)
    return {topology, file: flags.output ?? null}
  }
}
