/**
 * What the built CLI loads to start: the oclif manifest `npm run build` writes (oclif.manifest.json) lets it
 * find a command, its flags and its help without importing every command, and a command imports only what it
 * runs. A stale manifest hides a new command from the CLI, or shows old flags in its help. The build bundles
 * each command and oclif (scripts/bundle-cli.mjs): the CLI must run on that one copy of oclif, not load a
 * second one from node_modules.
 */
import {execFileSync} from 'node:child_process'
import {mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join, relative, sep} from 'node:path'
import {pathToFileURL} from 'node:url'

import {afterAll, describe, expect, it} from 'vitest'

import {repoRoot, runCli} from '../support/cli.js'

const manifestPath = join(repoRoot, 'oclif.manifest.json')
const commandsDir = join(repoRoot, 'dist', 'cli', 'commands')

interface Manifest {
  version: string
  commands: Record<string, unknown>
}

/** The command ids of the built commands: dist/cli/commands/node/add.js is `node:add`. */
function builtCommandIds(dir = commandsDir): string[] {
  return readdirSync(dir, {withFileTypes: true, recursive: true})
    .filter((entry) => entry.isFile() && entry.name.endsWith('.js'))
    .map((entry) =>
      relative(commandsDir, join(entry.parentPath, entry.name)).replace(/\.js$/, '').split(sep).join(':'),
    )
}

/** The manifest oclif makes from dist/ now, as `oclif manifest` does, in a child (oclif's settings are global). */
function freshManifest(): Manifest {
  const script = `
    import {Plugin} from '@oclif/core'
    const plugin = new Plugin({root: process.argv[1], type: 'core', ignoreManifest: true, errorOnManifestCreate: true, respectNoCacheDefault: true})
    await plugin.load()
    process.stdout.write(JSON.stringify(plugin.manifest))`
  const output = execFileSync(process.execPath, ['--input-type=module', '-e', script, repoRoot], {
    cwd: repoRoot,
    env: {PATH: process.env.PATH, HOME: process.env.HOME, NODE_ENV: 'production'},
    encoding: 'utf8',
  })
  return JSON.parse(output) as Manifest
}

describe('oclif.manifest.json', () => {
  it('lists every built command, as oclif describes it from dist/ now (else run `npm run build`)', () => {
    const manifest = JSON.parse(readFileSync(manifestPath, 'utf8')) as Manifest
    expect(Object.keys(manifest.commands).sort(), 'the commands of the manifest').toEqual(
      builtCommandIds().sort(),
    )
    expect(manifest).toEqual(freshManifest())
  })
})

describe('start-up', () => {
  // A module hook that writes the URL of every module the CLI loads to MODULE_LOG.
  const hooks = mkdtempSync(join(tmpdir(), 'mailring-startup-'))
  writeFileSync(
    join(hooks, 'hooks.mjs'),
    `import {appendFileSync} from 'node:fs'
export async function load(url, context, next) {
  appendFileSync(process.env.MODULE_LOG, url + '\\n')
  return next(url, context)
}\n`,
  )
  writeFileSync(
    join(hooks, 'register.mjs'),
    `import {register} from 'node:module'\nregister('./hooks.mjs', import.meta.url)\n`,
  )
  afterAll(() => rmSync(hooks, {recursive: true, force: true}))

  let runs = 0
  async function modulesLoadedBy(args: string[]): Promise<string[]> {
    const log = join(hooks, `modules-${++runs}.log`)
    writeFileSync(log, '')
    const run = await runCli(args, {
      env: {NODE_OPTIONS: `--import=${pathToFileURL(join(hooks, 'register.mjs')).href}`, MODULE_LOG: log},
    })
    expect(run.exitCode, run.stderr).toBe(0)
    const distRoot = pathToFileURL(join(repoRoot, 'dist')).href
    return readFileSync(log, 'utf8')
      .split('\n')
      .filter((url) => url.startsWith('file:'))
      .map((url) => (url.startsWith(distRoot) ? `dist${url.slice(distRoot.length)}` : url))
  }
  const commandsLoaded = (modules: string[]) => modules.filter((url) => url.startsWith('dist/cli/commands/'))
  const heavyPackages = (modules: string[]) =>
    modules.filter((url) =>
      /\/node_modules\/(mysql2|better-sqlite3|ssh2|ssh-config|prom-client|cli-table3|@oclif\/core|yaml)\//.test(
        url,
      ),
    )

  it('--version and --help import no command, and oclif only from the bundle', async () => {
    for (const args of [['--version'], ['--help'], ['place', '--help']]) {
      const modules = await modulesLoadedBy(args)
      expect(commandsLoaded(modules), args.join(' ')).toEqual([])
      expect(heavyPackages(modules), args.join(' ')).toEqual([])
    }
  })

  it('place --topology imports its own command, and neither a store driver, nor SSH, nor (piped) the terminal table, nor a package the bundle holds', async () => {
    const modules = await modulesLoadedBy(['place', 'alice@example.com', '-t', 'examples/cluster.yaml'])
    expect(commandsLoaded(modules)).toEqual(['dist/cli/commands/place.js'])
    expect(heavyPackages(modules)).toEqual([])
  })
})
