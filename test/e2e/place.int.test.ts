import {mkdtempSync, writeFileSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'

import {describe, expect, it} from 'vitest'

import {normalizeUser} from '../../src/core/address.js'
import {Placement} from '../../src/core/placement.js'
import {loadTopologyFile} from '../../src/config/topology-file.js'
import {runCli} from '../support/cli.js'

const EXAMPLE = 'examples/cluster.yaml'

interface PlaceJson {
  status: number
  result: {algorithm: number; users: {user: string; servers: {name: string; zone: string | null}[]}[]}
  warnings: string[]
}

describe('mailring place', () => {
  it('shows each user on its servers, primary first, as the placement core computes', async () => {
    const users = ['Alice@Example.com', 'bob@example.org', 'jürgen@Müller.de', 'x@archive.example.net']
    const run = await runCli<PlaceJson>(['place', ...users, '--topology', EXAMPLE, '--json'])
    expect(run.exitCode).toBe(0)
    const placement = new Placement(loadTopologyFile(EXAMPLE))
    expect(run.json!.result.users).toEqual(
      users.map((user) =>
        expect.objectContaining({
          user: normalizeUser(user),
          servers: placement.serversFor(normalizeUser(user)).map((name) => expect.objectContaining({name})),
        }),
      ),
    )
    const [alice, bob, , archived] = run.json!.result.users
    expect(alice!.servers).toHaveLength(3) // example.com keeps 3 copies
    expect(new Set(alice!.servers.map((s) => s.zone)).size).toBe(3) // in three racks
    expect(bob!.servers).toHaveLength(2)
    for (const server of archived!.servers) expect(['mx04', 'mx08', 'mx12']).toContain(server.name)
  })

  it('prints a plain table without a terminal', async () => {
    const run = await runCli(['place', 'alice@example.com', '-t', EXAMPLE])
    expect(run.exitCode).toBe(0)
    expect(run.stdout.split('\n')[0]).toMatch(/^USER\s+PRIMARY\s+COPY 2\s+COPY 3$/)
    expect(run.stdout).not.toContain('\u001b[') // no colour codes
  })

  it('reads the topology from MAILRING_TOPOLOGY', async () => {
    const run = await runCli(['place', 'alice@example.com', '--json'], {env: {MAILRING_TOPOLOGY: EXAMPLE}})
    expect(run.exitCode).toBe(0)
  })

  it('rejects an invalid address in one line with exit code 1', async () => {
    const run = await runCli(['place', 'alice@example.com', 'not-an-address', '-t', EXAMPLE])
    expect(run.exitCode).toBe(1)
    expect(run.stdout).toBe('')
    expect(run.stderr.trim().split('\n')).toEqual([
      'Error: Invalid user address: "not-an-address" is not an address of the form user@domain. Give the full address, e.g. alice@example.com.',
    ])
  })

  it('names file, line and key of a bad topology, under --json too', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'mailring-place-'))
    const file = join(dir, 'bad.yaml')
    writeFileSync(file, 'copies: 2\nservers:\n  - {name: a1, weight: 0}\n  - {name: a2}\n')
    const run = await runCli<{status: number; error: {message: string}}>([
      'place',
      'u@example.com',
      '-t',
      file,
      '--json',
    ])
    expect(run.exitCode).toBe(1)
    expect(run.json!.status).toBe(1)
    expect(run.json!.error.message).toBe(
      `${file}:3: servers[0].weight: weight must be a number from 0.000001 to 1000000 (got 0)`,
    )
    expect(run.stderr).not.toMatch(/at .*\.js:\d+/) // no stack trace
  })

  it('reports a weight that cannot be honoured as a warning', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'mailring-place-'))
    const file = join(dir, 'heavy.yaml')
    writeFileSync(
      file,
      'copies: 2\nservers:\n  - {name: big, weight: 5}\n  - {name: a}\n  - {name: b}\n  - {name: c}\n',
    )
    const run = await runCli<PlaceJson>(['place', 'u@example.com', '-t', file, '--json'])
    expect(run.exitCode).toBe(0)
    expect(run.json!.warnings).toEqual([
      expect.stringContaining('server big has more than 1/2 of the total weight'),
    ])
  })
})
