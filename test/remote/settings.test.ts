/**
 * The `ssh` section of the config file (src/remote/settings.ts): defaults, paths (~ and relative to the
 * config file), "none", and each bad value reported as `file:line: ssh.key: message`.
 */
import {describe, expect, it} from 'vitest'

import {parseSshSettings} from '../../src/remote/settings.js'
import {configText, refusal} from '../support/config-text.js'

const FILE = '/etc/mailring/config.yaml'
const HOME = '/home/op'
const config = (text: string) => configText(text, FILE)
const problems = (text: string) => refusal((c) => parseSshSettings(c, HOME), text, FILE)

describe('ssh section', () => {
  it('no config file, no section or an empty one: nothing set (OpenSSH defaults apply)', () => {
    expect(parseSshSettings(undefined, HOME)).toEqual({})
    expect(parseSshSettings(config('db: sqlite:./x.db\n'), HOME)).toEqual({})
    expect(parseSshSettings(config('ssh:\n'), HOME)).toEqual({})
  })

  it('reads every key: ~ is the home folder, relative paths are relative to the config file', () => {
    const s = parseSshSettings(
      config(
        [
          'ssh:',
          '  config_file: ~/.ssh/mailring_config',
          '  known_hosts: [~/.ssh/known_hosts, known_hosts.d/cluster]',
          '  user: root',
          '  identity_file: /keys/mailring',
          '  connect_timeout: 2.5',
          '',
        ].join('\n'),
      ),
      HOME,
    )
    expect(s).toEqual({
      configFile: '/home/op/.ssh/mailring_config',
      knownHostsFiles: ['/home/op/.ssh/known_hosts', '/etc/mailring/known_hosts.d/cluster'],
      user: 'root',
      identityFiles: ['/keys/mailring'],
      connectTimeoutMs: 2500,
    })
  })

  it('config_file: none reads no OpenSSH config; a single path is a list of one', () => {
    expect(parseSshSettings(config('ssh:\n  config_file: none\n  known_hosts: ~\n'), HOME)).toEqual({
      configFile: false,
    })
    expect(parseSshSettings(config('ssh:\n  known_hosts: "~"\n  identity_file: id\n'), HOME)).toEqual({
      knownHostsFiles: ['/home/op'],
      identityFiles: ['/etc/mailring/id'],
    })
  })

  it('reports each bad value as file:line: ssh.key', () => {
    const message = problems(
      [
        'ssh:', // 1
        '  port: 22', // 2
        '  config_file: ""', // 3
        '  known_hosts: []', // 4
        '  user: "root; id"', // 5
        '  identity_file: [a, 3]', // 6
        '  connect_timeout: 0', // 7
        '',
      ].join('\n'),
    )
    expect(message.split('\n')).toEqual([
      `${FILE}:2: ssh.port: unknown key "port" (expected one of config_file, known_hosts, user, identity_file, connect_timeout)`,
      `${FILE}:3: ssh.config_file: config_file is the path of an OpenSSH client config, or "none"`,
      `${FILE}:4: ssh.known_hosts: known_hosts is a path or a list of paths`,
      `${FILE}:6: ssh.identity_file: identity_file is a path or a list of paths`,
      `${FILE}:5: ssh.user: user is a login name`,
      `${FILE}:7: ssh.connect_timeout: connect_timeout is a number of seconds (at most 600)`,
    ])
  })

  it('bounds connect_timeout, and refuses a non-number', () => {
    expect(parseSshSettings(config('ssh:\n  connect_timeout: 600\n'), HOME).connectTimeoutMs).toBe(600_000)
    expect(problems('ssh:\n  connect_timeout: 601\n')).toMatch(/:2: ssh\.connect_timeout: /)
    expect(problems('ssh:\n  connect_timeout: "20"\n')).toMatch(/:2: ssh\.connect_timeout: /)
  })

  it('reports a section that is not a mapping', () => {
    expect(problems('ssh: root@mx01\n')).toBe(`${FILE}:1: ssh: ssh is a mapping of settings`)
  })
})
