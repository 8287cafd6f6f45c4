import {writeFileSync} from 'node:fs'
import {join} from 'node:path'

import {afterAll, beforeAll, describe, expect, it} from 'vitest'

import {expectRefused, seededSandbox, type CliSandbox} from '../support/cli-sandbox.js'

describe('bad input and operator comfort', () => {
  let cli: CliSandbox
  let before: string
  beforeAll(async () => {
    cli = await seededSandbox(30)
    before = cli.dump()
  })
  afterAll(() => cli.cleanup())

  it('the --json status is the exit code, also when a command exits 2 without an error', async () => {
    // A fourth server gets a share of the copies: moves are pending.
    expect((await cli.run(['node', 'add', 'mx04', '--address', 'mx04.example.net'])).code).toBe(0)
    try {
      const pending = await cli.json(['rebalance', '--dry-run', '--detailed-exitcode'])
      expect(pending.code).toBe(2)
      expect(pending.body.status).toBe(2)
      const shown = await cli.json(['rebalance', '--dry-run'])
      expect(shown.code).toBe(0)
      expect(shown.body.status).toBe(0)
    } finally {
      expect((await cli.run(['node', 'remove', 'mx04'])).code).toBe(0)
    }
    const nothing = await cli.json(['rebalance', '--dry-run', '--detailed-exitcode'])
    expect(nothing.code).toBe(0)
    expect(nothing.body.status).toBe(0)
  })

  it('a store URL without a scheme is bad input: exit 1, with the URL that was meant', async () => {
    const path = join(cli.dir, 'x', 'state.db')
    expectRefused(
      await cli.run(['status'], {env: {MAILRING_DB: path}}),
      1,
      `MAILRING_DB: "${path}" is a file path, not a store URL: use sqlite:${path} (or mysql://USER@HOST:PORT/DATABASE).`,
    )
    expectRefused(
      await cli.run(['node', 'list', '--db', 'state.db']),
      1,
      /^Error: --db: "state\.db" is a file path, not a store URL: use sqlite:state\.db /,
    )
    const json = await cli.json(['status', '--db', 'state.db'])
    expect(json.code).toBe(1)
    expect(json.body.status).toBe(1)
    expect(json.body.error?.code).toBe('store_url')
  })

  it("oclif's parse errors in mailring's one-line form", async () => {
    expectRefused(
      await cli.run(['config', 'render', '--server', 'mx01', '--proxy']),
      1,
      '--proxy cannot be used with --server (see --help)',
    )
    expectRefused(
      await cli.run(['node', 'add']),
      1,
      'Missing the argument NAME: e.g. mailring node add mx13 --address 192.0.2.35 --zone rack-c (see --help)',
    )
    expectRefused(
      await cli.run(['node', 'set', 'mx01', '--state', 'gone']),
      1,
      '--state must be one of active, draining, down (got "gone") (see --help)',
    )
    expectRefused(await cli.run(['node', 'list', '--bogus']), 1, 'Unknown flag --bogus (see --help)')
    expectRefused(
      await cli.run(['node', 'remove', 'mx01', 'mx02']),
      1,
      'Unexpected argument mx02 (see --help)',
    )
    expectRefused(
      await cli.run(['verify', '--all', '--user', 'user1@example.org']),
      1,
      '--user cannot be used with --all (see --help)',
    )
    const json = await cli.json(['config', 'render', '--server', 'mx01', '--proxy'])
    expect(json.code).toBe(1)
    expect(json.body).toEqual({
      status: 1,
      error: {code: 'usage', message: '--proxy cannot be used with --server (see --help)'},
      warnings: [],
    })
    expect(cli.dump()).toBe(before)
  })

  it('an empty users file imports nothing, with a warning', async () => {
    writeFileSync(join(cli.dir, 'empty.txt'), '')
    const run = await cli.run(['users', 'import', 'empty.txt'])
    expect(run.code).toBe(0)
    expect(run.stdout).toContain('Imported 0 users from empty.txt.')
    expect(run.stderr.trim()).toBe(
      'Warning: empty.txt holds no users: nothing imported (give one address per line, or CSV with a header naming the address column).',
    )
    writeFileSync(join(cli.dir, 'header.csv'), '# only a header\naddress,name\n')
    const json = await cli.json<{imported: number}>(['users', 'import', 'header.csv'])
    expect(json.code).toBe(0)
    expect(json.body.status).toBe(0)
    expect(json.body.result.imported).toBe(0)
    expect(json.body.warnings).toEqual([
      expect.stringMatching(/^header\.csv holds no users: nothing imported/),
    ])
    expect(cli.dump()).toBe(before)
  })

  it('a bad server name, address or weight is named, all in one line', async () => {
    const name =
      'Server name "bad name!" is invalid: use letters, digits, ".", "_" or "-" (at most 63, starting with a letter or digit), e.g. mx01'
    expectRefused(await cli.run(['node', 'add', 'bad name!']), 1, `${name}.`)
    expectRefused(
      await cli.run(['node', 'add', 'bad name!', '--address', 'bad host!']),
      1,
      `${name}; --address "bad host!" is neither an IP address nor a host name.`,
    )
    for (const weight of ['0', '-2', '2000000', 'heavy']) {
      const message = `--weight must be a number from 0.000001 to 1000000 (got "${weight}").`
      expectRefused(await cli.run(['node', 'add', 'mx09', '--weight', weight]), 1, message)
      expectRefused(await cli.run(['node', 'set', 'mx01', `--weight=${weight}`]), 1, message)
    }
    writeFileSync(join(cli.dir, 'heavy.yaml'), 'copies: 2\nservers:\n  - name: mx01\n    weight: 2000000\n')
    expectRefused(
      await cli.run(['topology', 'apply', '-f', 'heavy.yaml', '--yes']),
      1,
      'heavy.yaml:4: servers[0].weight: weight must be a number from 0.000001 to 1000000 (got 2000000)',
    )
    expect(cli.dump()).toBe(before)
  })
})
