import {readFileSync, writeFileSync} from 'node:fs'
import {join} from 'node:path'

import {afterAll, beforeAll, describe, expect, it} from 'vitest'

import {expectRefused, seededSandbox, type CliRun, type CliSandbox} from '../support/cli-sandbox.js'

/** A refusal that lists several lines (each bad line, then the summary), exit 1, nothing on stdout. */
function expectRefusedLines(run: CliRun, lines: unknown[]): void {
  expect(run.stdout).toBe('')
  expect(run.stderr.trim().split('\n')).toEqual(lines)
  expect(run.code).toBe(1)
}

describe('input that is wrong, refused as one mistake in one line', () => {
  let cli: CliSandbox
  let before: string
  beforeAll(async () => {
    cli = await seededSandbox(30)
    before = cli.dump()
  })
  afterAll(() => cli.cleanup())

  it('a misspelt topology key is one line, not also a missing key; a weight of .nan is shown as NaN', async () => {
    writeFileSync(
      join(cli.dir, 'servrs.yaml'),
      'copies: 2\nservrs:\n  - name: mx01\n  - name: mx02\ndomains:\n  - domain: example.org\n    servers: [mx01, mx02]\n',
    )
    expectRefused(
      await cli.run(['topology', 'apply', '-f', 'servrs.yaml', '--yes']),
      1,
      'servrs.yaml:2: servrs: unknown key "servrs": did you mean "servers"? (expected one of algorithm, copies, servers, domains)',
    )
    writeFileSync(
      join(cli.dir, 'nan.yaml'),
      'copies: 2\nservers:\n  - name: mx01\n    weight: .nan\n  - name: mx02\n',
    )
    expectRefused(
      await cli.run(['rebalance', '--dry-run', '--topology', 'nan.yaml']),
      1,
      'nan.yaml:4: servers[0].weight: weight must be a number from 0.000001 to 1000000 (got NaN)',
    )
    expect(cli.dump()).toBe(before)
  })

  it('adopt records nothing when a line cannot be recorded, says which separators it reads, and marks new users', async () => {
    writeFileSync(join(cli.dir, 'all-bad.csv'), 'not-an-address,mx01\nuser1@example.org;mx01;mx99\n')
    expectRefusedLines(await cli.run(['adopt', '--from-csv', 'all-bad.csv']), [
      'Error: all-bad.csv:1: "not-an-address" is not an address of the form user@domain',
      'Error: all-bad.csv:2: user1@example.org: unknown server "mx99" (mailring node list shows the servers)',
      'Error: 2 lines of all-bad.csv cannot be recorded (1 invalid address, 1 naming an unknown server): nothing recorded (fix them, or pass --skip-invalid to record the rest).',
    ])
    expectRefusedLines(await cli.run(['adopt', '--from-csv', 'all-bad.csv', '--dry-run']), [
      expect.stringMatching(/^Error: all-bad\.csv:1: /),
      expect.stringMatching(/^Error: all-bad\.csv:2: /),
      expect.stringMatching(/^Error: 2 lines of all-bad\.csv cannot be recorded /),
    ])
    writeFileSync(join(cli.dir, 'spaces.csv'), 'user1@example.org,mx01 mx02\n')
    expectRefused(
      await cli.run(['adopt', '--from-csv', 'spaces.csv']),
      1,
      'spaces.csv:1: user1@example.org: "mx01 mx02" is not one server: separate the user and its servers with ",", ";" or a tab: nothing recorded (fix it, or pass --skip-invalid to record the rest).',
    )
    const skipped = await cli.run(['adopt', '--from-csv', 'all-bad.csv', '--skip-invalid'])
    expect(skipped.code).toBe(0)
    expect(skipped.stderr.trim().split('\n')).toEqual([
      'Warning: all-bad.csv:1: "not-an-address" is not an address of the form user@domain (skipped)',
      'Warning: all-bad.csv:2: user1@example.org: unknown server "mx99" (mailring node list shows the servers) (skipped)',
    ])
    expect(skipped.stdout.trim()).toBe(
      'Recorded the copies of 0 users from all-bad.csv (0 new to mailring, 0 replaced); 2 skipped (see the warnings). Next: mailring rebalance --dry-run.',
    )
    expect(cli.dump()).toBe(before)

    // ";" and a tab separate fields too; an address the store does not hold is shown as new before it is written.
    writeFileSync(
      join(cli.dir, 'placements.csv'),
      'user1@example.org;mx03;mx01\nnewbie@example.com\tmx02\tmx03\n',
    )
    const dry = await cli.run(['adopt', '--from-csv', 'placements.csv', '--dry-run'])
    expect(dry.code).toBe(0)
    expect(dry.stderr).toBe('')
    expect(dry.stdout.trim().split('\n')).toEqual([
      'USER                COPIES     NEW',
      'newbie@example.com  mx02,mx03  new',
      'user1@example.org   mx03,mx01',
      'Would record the copies of 2 users from placements.csv (1 new to mailring, 1 known); nothing written (--dry-run).',
    ])
    expect(cli.dump()).toBe(before)
  })

  it('a plan file edited by hand is refused, naming the first part that differs from what its inputs give', async () => {
    expect((await cli.run(['node', 'add', 'mx04', '--address', 'mx04.example.net'])).code).toBe(0)
    try {
      const pending = cli.dump()
      expect((await cli.run(['rebalance', '--dry-run', '--out', 'plan.json'])).code).toBe(0)
      const plan = JSON.parse(readFileSync(join(cli.dir, 'plan.json'), 'utf8')) as {
        summary: {moves: number}
        moves: {user: string; from: string; to: string}[]
      }
      const count = plan.moves.length
      expect(count).toBeGreaterThan(3)
      const first = plan.moves[0]!
      const elsewhere = ['mx01', 'mx02', 'mx03', 'mx04'].find((s) => s !== first.to && s !== first.from)!
      const edited = (name: string, edit: (copy: typeof plan) => void): string => {
        const copy = structuredClone(plan)
        edit(copy)
        writeFileSync(join(cli.dir, name), JSON.stringify(copy, null, 2))
        return name
      }
      const refusal = (file: string, difference: string): string =>
        `${file} is not the plan its inputs give: ${difference}. A plan file cannot be edited: change the topology, then make a new one with \`mailring rebalance --dry-run --out ${file}\`.`

      const to = edited('to.json', (p) => (p.moves[0]!.to = elsewhere))
      const toRefusal = refusal(
        to,
        `move 1 (${first.user}) goes to ${elsewhere} in the file, to ${first.to} by its inputs`,
      )
      expectRefused(await cli.run(['rebalance', '--dry-run', '--plan', to]), 1, toRefusal)
      expectRefused(await cli.run(['rebalance', '--plan', to]), 1, toRefusal)
      const cut = edited('cut.json', (p) => (p.moves = p.moves.slice(0, 3)))
      expectRefused(
        await cli.run(['rebalance', '--dry-run', '--plan', cut]),
        1,
        refusal(cut, `the file lists 3 moves, its inputs give ${count}`),
      )
      const summary = edited('summary.json', (p) => (p.summary.moves = 3))
      expectRefused(
        await cli.run(['rebalance', '--dry-run', '--plan', summary]),
        1,
        refusal(summary, `summary.moves is 3 in the file, ${count} by its inputs`),
      )
      const json = await cli.json<unknown>(['rebalance', '--dry-run', '--plan', cut])
      expect(json.code).toBe(1)
      expect(json.body.error?.code).toBe('edited_plan')

      // The same plan written on one line is still the plan: it is read as JSON, not line by line.
      writeFileSync(join(cli.dir, 'compact.json'), JSON.stringify(plan))
      const current = await cli.run(['rebalance', '--dry-run', '--plan', 'compact.json'])
      expect(current.code).toBe(0)
      expect(current.stdout).toMatch(/^compact\.json is current \(fingerprint sha256:[0-9a-f]{64}\)\.$/m)
      expect(cli.dump()).toBe(pending)
    } finally {
      expect((await cli.run(['node', 'remove', 'mx04'])).code).toBe(0)
    }
    expect(cli.dump()).toBe(before)
  })
})
