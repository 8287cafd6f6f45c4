import {writeFileSync} from 'node:fs'
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
})
