/**
 * The `doveadm` section of the config file (src/remote/doveadm-settings.ts) and where the doveadm password
 * comes from: the environment, or a file only its owner can read; never printed.
 */
import * as fs from 'node:fs'
import * as path from 'node:path'

import {afterAll, describe, expect, it} from 'vitest'

import {
  DEFAULT_DOVEADM_SETTINGS,
  doveadmPassword,
  httpPortOf,
  parseDoveadmSettings,
  transportOf,
} from '../../src/remote/doveadm-settings.js'
import {configText, refusal} from '../support/config-text.js'
import {makeTempDir, removeDir} from '../support/proc.js'

const FILE = '/etc/mailring/config.yaml'
const dir = makeTempDir('mr-doveadm-settings')
afterAll(() => removeDir(dir))
const config = (text: string) => configText(text, FILE)
const problems = (text: string) => refusal(parseDoveadmSettings, text, FILE)

describe('doveadm section', () => {
  it('has defaults: the HTTP API on 8080 for every server', () => {
    const s = parseDoveadmSettings(undefined)
    expect(s).toEqual({...DEFAULT_DOVEADM_SETTINGS, transports: {}, httpPorts: {}})
    expect(transportOf(s, 'mx01')).toBe('http')
    expect(httpPortOf(s, 'mx01')).toBe(8080)
  })

  it('reads every key, per-server transports and ports, and paths relative to the config file', () => {
    const s = parseDoveadmSettings(
      config(
        [
          'doveadm:',
          '  transport: http',
          '  transports: {mx03: ssh}',
          '  http_port: 8081',
          '  http_ports: {mx07: 9090}',
          '  https: true',
          '  password_file: secrets/doveadm',
          '  timeout: 30',
          '  retries: 0',
          '  per_server: 2',
          '  lock_timeout: 20',
        ].join('\n'),
      ),
    )
    expect(transportOf(s, 'mx03')).toBe('ssh')
    expect(transportOf(s, 'mx01')).toBe('http')
    expect(httpPortOf(s, 'mx07')).toBe(9090)
    expect(httpPortOf(s, 'mx01')).toBe(8081)
    expect(s).toMatchObject({
      https: true,
      passwordFile: '/etc/mailring/secrets/doveadm',
      timeoutMs: 30_000,
      retries: 0,
      perServer: 2,
      lockSeconds: 20,
    })
  })

  it('names the file, line and key of each bad value', () => {
    const message = problems(
      ['doveadm:', '  transport: smtp', '  http_port: 70000', '  colour: red'].join('\n'),
    )
    expect(message).toContain(`${FILE}:2: doveadm.transport: a transport is http or ssh (got "smtp")`)
    expect(message).toContain(
      `${FILE}:3: doveadm.http_port: http_port is a TCP port, from 1 to 65535 (got 70000)`,
    )
    expect(message).toContain(`${FILE}:4: doveadm.colour: unknown key "colour"`)
    expect(problems('doveadm:\n  transports: {mx03: ftp}\n')).toContain('doveadm.transports.mx03')
  })
})

describe('the doveadm password', () => {
  it('comes from MAILRING_DOVEADM_PASSWORD first', () => {
    expect(doveadmPassword(parseDoveadmSettings(undefined), {MAILRING_DOVEADM_PASSWORD: 's3cret'})).toBe(
      's3cret',
    )
  })

  it('comes from a file only its owner can read, and a readable one is refused with the fix', () => {
    const file = path.join(dir, 'doveadm-password')
    fs.writeFileSync(file, 'from-file\n', {mode: 0o600})
    const settings = {...parseDoveadmSettings(undefined), passwordFile: file}
    expect(doveadmPassword(settings, {})).toBe('from-file')
    fs.chmodSync(file, 0o644)
    expect(() => doveadmPassword(settings, {})).toThrow(`run \`chmod 600 ${file}\``)
  })

  it('says how to set it when there is none, without a value', () => {
    expect(() => doveadmPassword(parseDoveadmSettings(undefined), {})).toThrow(
      /The doveadm password is not set: set MAILRING_DOVEADM_PASSWORD, or name a file/,
    )
  })
})
