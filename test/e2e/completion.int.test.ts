import {execFileSync} from 'node:child_process'
import {mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join, relative} from 'node:path'

import {afterAll, beforeAll, describe, expect, it} from 'vitest'

import {runCli} from '../support/cli.js'

describe('shell completion (mailring autocomplete)', () => {
  const dir = mkdtempSync(join(tmpdir(), 'mailring-completion-'))
  const home = join(dir, 'home')
  const cache = join(dir, 'cache')
  const work = join(dir, 'work')
  const env = {HOME: home, XDG_CACHE_HOME: cache, XDG_CONFIG_HOME: join(home, '.config')}
  let bashScript = ''

  beforeAll(async () => {
    for (const folder of [home, work]) mkdirSync(folder)
    const setup = await runCli(['autocomplete', 'bash'], {env, cwd: work})
    expect(setup.exitCode).toBe(0)
    expect(setup.stdout).toContain('mailring autocomplete script bash')
    const script = await runCli(['autocomplete', 'script', 'bash'], {env, cwd: work})
    expect(script.exitCode).toBe(0)
    bashScript = script.stdout
  })
  afterAll(() => rmSync(dir, {recursive: true, force: true}))

  /** What bash completes after typing `words` (the last one is being typed), with the setup sourced. */
  function complete(...words: string[]): string[] {
    const line = ['mailring', ...words].map((word) => `'${word}'`).join(' ')
    const out = execFileSync(
      'bash',
      [
        '-c',
        `${bashScript}\nCOMP_WORDS=(${line}); COMP_CWORD=${words.length}; _mailring_autocomplete; printf '%s\\n' "\${COMPREPLY[@]}"`,
      ],
      {env: {PATH: process.env.PATH, HOME: home}, encoding: 'utf8'},
    )
    return out.split('\n').filter((word) => word !== '')
  }

  it("completes mailring's commands, subcommands and flags in bash", () => {
    expect(complete('')).toEqual(
      expect.arrayContaining(['init', 'node', 'rebalance', 'status', 'sync', 'unlock', 'users', 'verify']),
    )
    expect(complete('un')).toEqual(['unlock'])
    expect(complete('node', '').sort()).toEqual(['add', 'drain', 'list', 'remove', 'set'])
    expect(complete('node', 'add', '--wa')).toEqual(['--wait'])
    expect(complete('unlock', '--')).toEqual(expect.arrayContaining(['--yes', '--json', '--db']))
  })

  it('writes zsh completion that names every command', async () => {
    const script = await runCli(['autocomplete', 'script', 'zsh'], {env, cwd: work})
    expect(script.exitCode).toBe(0)
    const setupPath = /MAILRING_AC_ZSH_SETUP_PATH=(\S+)/.exec(script.stdout)?.[1]
    expect(setupPath).toBe(join(cache, 'mailring', 'autocomplete', 'zsh_setup'))
    const zsh = readFileSync(join(cache, 'mailring', 'autocomplete', 'functions', 'zsh', '_mailring'), 'utf8')
    expect(zsh.startsWith('#compdef mailring')).toBe(true)
    for (const command of ['init', 'node', 'rebalance', 'unlock', 'verify'])
      expect(zsh).toMatch(new RegExp(`^"${command}\\[`, 'm'))
  })

  it('writes only into its cache folder ($XDG_CACHE_HOME/mailring/autocomplete)', () => {
    const written: string[] = []
    const walk = (folder: string): void => {
      for (const entry of readdirSync(folder, {withFileTypes: true})) {
        const path = join(folder, entry.name)
        if (entry.isDirectory()) walk(path)
        else written.push(relative(dir, path))
      }
    }
    walk(dir)
    expect(written.length).toBeGreaterThan(0)
    expect(written.filter((path) => !path.startsWith(join('cache', 'mailring', 'autocomplete')))).toEqual([])
  })
})
