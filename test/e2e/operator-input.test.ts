import {readFileSync, writeFileSync} from 'node:fs'
import {join} from 'node:path'

import {afterAll, beforeAll, describe, expect, it} from 'vitest'

import {expectRefused, seededSandbox, type CliSandbox} from './store-helpers.js'

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
