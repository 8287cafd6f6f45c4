/**
 * The layer rule (eslint/layers.js) on small sources placed in each layer: what it refuses, and what it
 * lets through. `npm run lint` runs it over src/.
 */
import * as path from 'node:path'

import {Linter} from 'eslint'
import tseslint from 'typescript-eslint'
import {describe, expect, it} from 'vitest'

import layers from '../../eslint/layers.js'

const linter = new Linter({cwd: process.cwd()})

function problems(file: string, code: string): string[] {
  return linter
    .verify(
      code,
      [
        {
          files: ['**/*.ts'],
          languageOptions: {parser: tseslint.parser as Linter.Parser},
          plugins: {mailring: layers},
          rules: {'mailring/layers': 'error'},
        },
      ],
      path.join(process.cwd(), file),
    )
    .map((m) => m.message)
}

describe('the layer rule', () => {
  it('keeps src/core pure: no other layer, no package, no Node module that does I/O', () => {
    expect(problems('src/core/x.ts', "import {openStore} from '../store/open.js'")).toEqual([
      expect.stringMatching(/^src\/core may not import src\/store/),
    ])
    expect(
      problems('src/core/simulate/x.ts', "import {a} from '../../engine/cluster/cluster.js'"),
    ).toHaveLength(1)
    expect(problems('src/core/x.ts', "import * as fs from 'node:fs'")).toEqual([
      expect.stringMatching(/src\/core is pure: it may not import 'node:fs'/),
    ])
    expect(problems('src/core/x.ts', "import chalk from 'chalk'")).toHaveLength(1)
    expect(problems('src/core/x.ts', "import {connect} from 'node:net'")).toEqual([
      "src/core is pure: from 'node:net' it may import only isIP",
    ])
  })

  it('lets src/core use itself and pure Node modules', () => {
    expect(problems('src/core/simulate/x.ts', "import {a} from '../placement.js'")).toEqual([])
    expect(
      problems('src/core/x.ts', "import {createHash} from 'node:crypto'\nimport {isIP} from 'node:net'"),
    ).toEqual([])
  })

  it('keeps commands on cli, engine and ui: store and remote only as types', () => {
    expect(problems('src/commands/x.ts', "import {openStore} from '../store/open.js'")).toEqual([
      expect.stringMatching(/src\/commands may not import src\/store except with `import type`/),
    ])
    expect(
      problems('src/commands/node/x.ts', "import {SshConnection} from '../../remote/ssh.js'"),
    ).toHaveLength(1)
    expect(problems('src/commands/x.ts', "import type {Store} from '../store/store.js'")).toEqual([])
    expect(problems('src/commands/x.ts', "import {type Store} from '../store/store.js'")).toEqual([])
    expect(problems('src/commands/x.ts', "import {computePlan} from '../engine/rebalance/plan.js'")).toEqual(
      [],
    )
  })

  it('refuses a lower layer importing a higher one, re-exports and dynamic imports included', () => {
    expect(problems('src/store/x.ts', "import {a} from '../engine/cluster/cluster.js'")).toHaveLength(1)
    expect(problems('src/dovecot/x.ts', "export {a} from '../remote/ssh.js'")).toHaveLength(1)
    expect(
      problems('src/remote/x.ts', "const m = await import('../engine/cluster/cluster.js')"),
    ).toHaveLength(1)
    expect(problems('src/engine/x.ts', "import {a} from '../commands/status.js'")).toHaveLength(1)
    expect(problems('src/engine/x.ts', "import {a} from '../remote/ssh.js'")).toEqual([])
  })

  it('leaves tests and benchmarks alone', () => {
    expect(problems('test/x.test.ts', "import {a} from '../src/store/open.js'")).toEqual([])
  })
})
