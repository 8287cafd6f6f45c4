import {execFile} from 'node:child_process'
import {existsSync, mkdtempSync, readdirSync, readFileSync, rmSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {promisify} from 'node:util'

import {afterAll, describe, expect, it} from 'vitest'

import {repoRoot} from '../support/cli.js'

describe('the demo (npm run demo)', () => {
  const tmp = mkdtempSync(join(tmpdir(), 'mailring-demo-test-'))
  afterAll(() => rmSync(tmp, {recursive: true, force: true}))

  it('says which minimum is which, and keeps the plan it saved where it says', async () => {
    const {stdout} = await promisify(execFile)('bash', [join(repoRoot, 'examples', 'demo.sh')], {
      env: {PATH: process.env.PATH, HOME: tmp, TMPDIR: tmp, NO_COLOR: '1'},
      maxBuffer: 16 * 1024 * 1024,
    })
    const summary = stdout.match(
      /^(\d+) copies to move for \d+ of 2000 users \(.*\): the fewest that reach the target placement \(one per target server that holds no copy of its user yet\)\.\nThe copies per server alone need at least (\d+) moves \(what the growing servers gain\); this placement takes (\d+) more\.$/m,
    )
    expect(summary).not.toBeNull()
    const [, moves, bound, more] = summary!.map(Number)
    expect(moves! - bound!).toBe(more)
    expect(stdout).not.toContain('the minimum of')

    const kept = stdout.match(/^The plan stays in (\S+): /m)?.[1]
    expect(kept).toBeDefined()
    const plan = JSON.parse(readFileSync(kept!, 'utf8'))
    expect(plan).toMatchObject({format: 'mailring-plan', summary: {moves, capacityLowerBound: bound}})
    expect(plan.moves).toHaveLength(moves!)
    // The store's folder is gone; only the plan's is left.
    const store = stdout.match(/^The store was (\S+); it is removed now\./m)?.[1]
    expect(store).toBeDefined()
    expect(existsSync(store!)).toBe(false)
    expect(readdirSync(tmp)).toEqual([expect.stringMatching(/^mailring-demo-plan\./)])
  })
})
