import {mkdtempSync, writeFileSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'

import {describe, expect, it} from 'vitest'

import {loadTopologyFile, topologyToYaml} from '../../src/config/topology-file.js'
import {MailringError} from '../../src/core/errors.js'

const dir = mkdtempSync(join(tmpdir(), 'mailring-topology-'))
let counter = 0
function file(text: string): string {
  const path = join(dir, `t${counter++}.yaml`)
  writeFileSync(path, text)
  return path
}

function errorOf(text: string): string {
  try {
    loadTopologyFile(file(text))
  } catch (error) {
    expect(error).toBeInstanceOf(MailringError)
    return (error as Error).message
  }
  throw new Error('expected the topology to be rejected')
}

const VALID = `copies: 2
servers:
  - name: mx01
    address: 192.0.2.1
    zone: a
  - name: mx02
    address: mx02.example.net
    zone: b
    weight: 2
  - {name: mx03, address: 192.0.2.3, zone: c, state: draining}
domains:
  - domain: Example.COM
    copies: 2
  - domain: example.org
    servers: [mx02, mx01]
`

describe('topology files', () => {
  it('reads a valid file with defaults and canonical names', () => {
    const topology = loadTopologyFile(file(VALID))
    expect(topology.algorithm).toBe(1)
    expect(topology.servers.map((s) => [s.name, s.weight, s.state])).toEqual([
      ['mx01', 1, 'active'],
      ['mx02', 2, 'active'],
      ['mx03', 1, 'draining'],
    ])
    expect(topology.domains).toEqual([
      {domain: 'example.com', copies: 2},
      {domain: 'example.org', servers: ['mx01', 'mx02']},
    ])
  })

  it('round-trips through export', () => {
    const topology = loadTopologyFile(file(VALID))
    expect(loadTopologyFile(file(topologyToYaml(topology)))).toEqual(topology)
  })

  it('names the file, line and key of a bad value', () => {
    const path = join(dir, `t${counter}.yaml`)
    const message = errorOf(VALID.replace('weight: 2', 'weight: -2'))
    expect(message).toBe(
      `${path}:9: servers[1].weight: weight must be a number from 0.000001 to 1000000 (got -2)`,
    )
  })

  it.each([
    [
      'duplicate names',
      VALID.replace('name: mx02', 'name: MX01'),
      ':6: servers[1].name: duplicate server name "MX01"',
    ],
    [
      'duplicate addresses',
      VALID.replace('mx02.example.net', '192.0.2.1'),
      ':7: servers[1].address: duplicate address',
    ],
    [
      'an unknown state',
      VALID.replace('state: draining', 'state: broken'),
      ':10: servers[2].state: state must be one of',
    ],
    [
      'a pin to an unknown server',
      VALID.replace('[mx02, mx01]', '[mx02, mx99]'),
      ':15: domains[1].servers[1]: unknown server "mx99"',
    ],
    [
      'a misspelt key',
      VALID.replace('weight: 2', 'wieght: 2'),
      ':9: servers[1].wieght: unknown key "wieght"',
    ],
    [
      'a bad address',
      VALID.replace('192.0.2.1', 'not an address!'),
      ':4: servers[0].address: "not an address!" is neither',
    ],
    [
      'more copies than servers',
      VALID.replace('copies: 2\n', 'copies: 3\n'),
      ':1: copies: 3 copies need 3 servers that are not draining; 2 available',
    ],
    [
      'a domain needing more servers',
      VALID.replace('    servers: [mx02, mx01]', '    servers: [mx02, mx01]\n    copies: 3'),
      'domains[1].copies: example.org needs 3 servers',
    ],
    ['a newer algorithm', `algorithm: 2\n${VALID}`, ':1: algorithm: version 2 comes from a newer mailring'],
    ['zero copies', VALID.replace('copies: 2\n', 'copies: 0\n'), ':1: copies: copies must be a whole number'],
    ['no servers', 'copies: 2\nservers: []\n', ':2: servers: must be a list with at least one server'],
  ])('rejects %s', (_, text, expected) => {
    expect(errorOf(text)).toContain(expected)
  })

  it('reports one mistake in one line: a misspelt key is not also a missing one', () => {
    const cases: [string, string][] = [
      [
        'copies: 2\nservrs:\n  - name: mx01\n  - name: mx02\ndomains:\n  - domain: example.org\n    servers: [mx02, mx01]\n',
        ':2: servrs: unknown key "servrs": did you mean "servers"?',
      ],
      [
        'copies: 2\nservrs:\n  - name: mx01\n  - name: mx02\n',
        ':2: servrs: unknown key "servrs": did you mean "servers"? (expected one of algorithm, copies, servers, domains)',
      ],
      [
        VALID.replace('  - name: mx02', '  - nme: mx02'),
        ':6: servers[1].nme: unknown key "nme": did you mean "name"? (expected one of name, address, zone, weight, state)',
      ],
      [
        VALID.replace('domain: example.org', 'domian: example.org'),
        ':14: domains[1].domian: unknown key "domian": did you mean "domain"?',
      ],
      [
        VALID.replace('    copies: 2\n  - domain', '    copes: 2\n  - domain'),
        ':13: domains[0].copes: unknown key "copes": did you mean "copies"?',
      ],
      [
        VALID.replace('state: draining', 'State: draining'),
        ':10: servers[2].State: unknown key "State": did you mean "state"?',
      ],
    ]
    for (const [text, expected] of cases) {
      const message = errorOf(text)
      expect(message.split('\n')).toHaveLength(1)
      expect(message).toContain(expected)
    }
  })

  it('reports two mistakes in two lines: an unrelated key does not hide a missing one', () => {
    const lines = errorOf('copies: 2\ncomment: old setup\n').split('\n')
    expect(lines).toHaveLength(2)
    expect(lines[0]).toMatch(/:2: comment: unknown key "comment" \(expected one of/)
    expect(lines[1]).toMatch(/:1: servers: must be a list with at least one server/)
  })

  it('shows a weight or copy count that is not a number as it is, not as null', () => {
    const weight = (value: string) => errorOf(VALID.replace('weight: 2', `weight: ${value}`))
    expect(weight('.nan')).toMatch(
      /:9: servers\[1\]\.weight: weight must be a number from 0\.000001 to 1000000 \(got NaN\)$/,
    )
    expect(weight('.inf')).toMatch(/\(got Infinity\)$/)
    expect(weight('-.inf')).toMatch(/\(got -Infinity\)$/)
    expect(weight('1e400')).toMatch(/\(got Infinity\)$/)
    expect(weight('~')).toMatch(/\(got null\)$/)
    expect(errorOf(VALID.replace('copies: 2\n', 'copies: .nan\n'))).toMatch(
      /:1: copies: copies must be a whole number from 1 to 16 \(got NaN\)$/,
    )
  })

  it('reports malformed YAML with its line', () => {
    expect(errorOf('copies: 2\nservers:\n  - name: [mx01\n')).toMatch(/:\d+: malformed YAML/)
  })

  it('reports a missing file in one line', () => {
    expect(() => loadTopologyFile(join(dir, 'missing.yaml'))).toThrow(
      /Cannot read topology file .*missing.yaml: no such file/,
    )
  })
})
