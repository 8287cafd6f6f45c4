import {stringify} from 'yaml'

import {MailringError} from '../core/errors.js'
import type {Topology} from '../core/topology.js'
import {parseTopology} from '../core/validate.js'
import {describeIssues, readYamlFile} from './yaml-file.js'

/** Reads and validates a topology file; every problem is reported with its file, line and key. */
export function loadTopologyFile(path: string): Topology {
  const file = readYamlFile(path, 'topology file')
  const {topology, issues} = parseTopology(file.data)
  if (!topology) throw new MailringError(describeIssues(file, issues), {code: 'invalid_topology'})
  return topology
}

/** The topology in the file format, servers and domains sorted by name so exports diff cleanly. */
export function topologyToYaml(topology: Topology): string {
  const document = {
    algorithm: topology.algorithm,
    copies: topology.copies,
    servers: [...topology.servers]
      .sort((a, b) => (a.name < b.name ? -1 : 1))
      .map((s) => ({
        name: s.name,
        address: s.address,
        ...(s.zone ? {zone: s.zone} : {}),
        weight: s.weight,
        state: s.state,
      })),
    domains: [...topology.domains].sort((a, b) => (a.domain < b.domain ? -1 : 1)),
  }
  return `# mailring topology (placement algorithm ${topology.algorithm})\n${stringify(document)}`
}
