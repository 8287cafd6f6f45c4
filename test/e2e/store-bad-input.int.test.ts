import {writeFileSync} from 'node:fs'
import {join} from 'node:path'

import {afterAll, beforeAll, describe, expect, it} from 'vitest'

import {CliSandbox, expectRefused, seededSandbox} from '../support/cli-sandbox.js'

describe('bad input is refused with one line, its exit code, and nothing written', () => {
  let cli: CliSandbox
  let before: string
  beforeAll(async () => {
    cli = await seededSandbox(50)
    before = cli.dump()
  })
  afterAll(() => cli.cleanup())

  it('a duplicate server name or address', async () => {
    expectRefused(
      await cli.run(['node', 'add', 'mx02']),
      1,
      /Server mx02 exists already: change it with `mailring node set`\./,
    )
    expectRefused(
      await cli.run(['add-node', 'mx09', '--address', 'MX01.example.net']),
      1,
      /Address MX01\.example\.net belongs to server mx01 already/,
    )
    expect(cli.dump()).toBe(before)
  })

  it('an invalid server name or weight', async () => {
    expectRefused(
      await cli.run(['node', 'add', 'mx 9']),
      1,
      /^Error: Server name "mx 9" is invalid: use letters, digits/,
    )
    expectRefused(
      await cli.run(['node', 'set', 'mx01', '--weight', '-2']),
      1,
      /--weight must be a number from 0\.000001 to 1000000 \(got "-2"\)/,
    )
    expect(cli.dump()).toBe(before)
  })

  it('an unknown server', async () => {
    expectRefused(
      await cli.run(['node', 'set', 'mx99', '--weight', '2']),
      1,
      /Unknown server mx99 \(servers: mx01, mx02, mx03\)\./,
    )
    expectRefused(await cli.run(['node', 'remove', 'mx99']), 1, /Unknown server mx99/)
    expectRefused(await cli.run(['domain', 'pin', 'example.com', 'mx01', 'mx99']), 1, /Unknown server mx99/)
    expect(cli.dump()).toBe(before)
  })

  it('a copy count above the servers available', async () => {
    expectRefused(
      await cli.run(['domain', 'set', 'example.com', '--copies', '4']),
      1,
      /example\.com needs 4 servers that are not draining for 4 copies; 3 available/,
    )
    expectRefused(
      await cli.run(['domain', 'pin', 'example.com', 'mx01']),
      1,
      /example\.com needs 2 servers .* 1 available/,
    )
    expect((await cli.run(['node', 'drain', 'mx01'])).code).toBe(0)
    expectRefused(
      await cli.run(['node', 'drain', 'mx02']),
      1,
      /2 copies need 2 servers that are not draining; 1 available/,
    )
    expect((await cli.run(['node', 'set', 'mx01', '--state', 'active'])).code).toBe(0)
    expect(cli.dump()).toBe(before)
  })

  it('invalid and duplicate addresses in an import, with their line numbers', async () => {
    writeFileSync(
      join(cli.dir, 'bad.txt'),
      'new1@example.com\nnot-an-address\n\nnew2@example.com\nNEW1@Example.com\nuser3@mail.example.de\n',
    )
    const run = await cli.run(['users', 'import', 'bad.txt'])
    expect(run.code).toBe(1)
    expect(run.stdout).toBe('')
    expect(run.stderr.trim().split('\n')).toEqual([
      'Error: bad.txt:2: "not-an-address" is not an address of the form user@domain',
      'Error: bad.txt:5: new1@example.com is a duplicate of line 1',
      'Error: 1 invalid, 1 duplicate lines in bad.txt: nothing imported (fix them, or pass --skip-invalid to import the rest).',
    ])
    expect(cli.dump()).toBe(before)

    // Valid lines, but one user exists already: still nothing imported.
    writeFileSync(
      join(cli.dir, 'existing.txt'),
      'address,name\nnew1@example.com,New\nuser3@mail.example.de,Three\n',
    )
    const existing = await cli.run(['users', 'import', 'existing.txt'])
    expectRefused(
      existing,
      1,
      /^Error: existing\.txt:3: user3@mail\.example\.de exists already: nothing imported/,
    )
    expect(cli.dump()).toBe(before)

    const stdin = await cli.run(['users', 'import', '-'], {input: 'ok@example.com\nbad@@example.com\n'})
    expectRefused(stdin, 1, /stdin:2: .*bad@@example\.com/)
    expect(cli.dump()).toBe(before)
  })

  it('an existing user', async () => {
    expectRefused(
      await cli.run(['user', 'add', 'fresh@example.com', 'User1@example.org']),
      1,
      /user1@example\.org exists already; nothing added\./,
    )
    expectRefused(await cli.run(['user', 'add', 'not-an-address']), 1, /Invalid user address/)
    expectRefused(
      await cli.run(['user', 'remove', 'nobody@example.com']),
      1,
      /Unknown user: nobody@example\.com; nothing removed\./,
    )
    expect(cli.dump()).toBe(before)
  })

  it('an invalid topology file, naming file, line and key', async () => {
    writeFileSync(join(cli.dir, 'bad.yaml'), 'copies: 2\nservers:\n  - name: mx01\n    weight: -1\n')
    expectRefused(
      await cli.run(['topology', 'apply', '-f', 'bad.yaml', '--yes']),
      1,
      /^Error: bad\.yaml:4: servers\[0\]\.weight: weight must be a number from 0\.000001 to 1000000 \(got -1\)/,
    )
    expectRefused(await cli.run(['rebalance', '--dry-run', '--topology', 'bad.yaml']), 1, /bad\.yaml:4/)
    expect(cli.dump()).toBe(before)
  })

  it('a stale, foreign or broken plan file', async () => {
    writeFileSync(join(cli.dir, 'not-a-plan.json'), '{"hello": 1}')
    expectRefused(
      await cli.run(['rebalance', '--dry-run', '--plan', 'not-a-plan.json']),
      1,
      /not-a-plan\.json is not a mailring plan/,
    )
    writeFileSync(join(cli.dir, 'garbage.json'), 'moves: yes')
    expectRefused(
      await cli.run(['rebalance', '--dry-run', '--plan', 'garbage.json']),
      1,
      /garbage\.json is not a mailring plan \(not JSON\)/,
    )

    // A plan made on another cluster with the very same servers and users is still foreign.
    const other = new CliSandbox()
    try {
      await other.run(['init'])
      for (const name of ['mx01', 'mx02', 'mx03'])
        await other.run(['node', 'add', name, '--address', `${name}.example.net`])
      expect((await other.run(['rebalance', '--dry-run', '--out', join(cli.dir, 'foreign.json')])).code).toBe(
        0,
      )
    } finally {
      other.cleanup()
    }
    expectRefused(
      await cli.run(['rebalance', '--dry-run', '--plan', 'foreign.json']),
      1,
      /foreign\.json was made for another cluster/,
    )
    const json = await cli.json<unknown>(['rebalance', '--dry-run', '--plan', 'foreign.json'])
    expect(json.code).toBe(1)
    expect(json.body.error?.code).toBe('foreign_plan')
    expect(cli.dump()).toBe(before)
  })

  it('a store that does not exist, or a store URL that holds a password', async () => {
    const missing = join(cli.dir, 'nowhere.db')
    expectRefused(
      await cli.run(['status', '--db', `sqlite:${missing}`]),
      4,
      /No mailring store at .*nowhere\.db: run `mailring init` first/,
    )
    const withPassword = await cli.run([
      'node',
      'list',
      '--db',
      'mysql://admin:secret@db.example.net/mailring',
    ])
    expectRefused(withPassword, 4, /the store URL holds a password .*MAILRING_DB_PASSWORD/)
    expect(withPassword.stderr).not.toContain('secret')
    const secretless = await cli.run(['node', 'list', '--db', 'postgres://admin:secret@db/x'])
    expect(secretless.code).toBe(4)
    expect(secretless.stderr).not.toContain('secret')
  })

  it('rebalance executing towards a topology file that is not applied', async () => {
    expectRefused(
      await cli.run(['rebalance', '--topology', 'proposal.yaml', '--yes']),
      1,
      /rebalance executes against the topology in the store: apply the file first \(mailring topology apply -f FILE\)/,
    )
    expect(cli.dump()).toBe(before)
  })
})
