/**
 * The `replicator` section of the config file (src/engine/replicator/settings.ts): defaults, every key,
 * errors naming file, line and key, the URL Dovecot posts to, and where the secret comes from.
 */
import * as fs from 'node:fs'
import * as path from 'node:path'

import {afterAll, describe, expect, it} from 'vitest'

import {
  DEFAULT_REPLICATOR_SETTINGS,
  parseListen,
  parseReplicatorSettings,
  replicatorSecret,
  replicatorUrl,
} from '../../../src/engine/replicator/settings.js'
import {configText, refusal} from '../../support/config-text.js'
import {makeTempDir, removeDir} from '../../support/proc.js'

const FILE = '/etc/mailring/config.yaml'
const dir = makeTempDir('mr-replicator-settings')
afterAll(() => removeDir(dir))
const config = (text: string) => configText(text, FILE)
const problems = (text: string) => refusal(parseReplicatorSettings, text, FILE)

describe('replicator section', () => {
  it('has the defaults of the design (docs/decisions/0004)', () => {
    const s = parseReplicatorSettings(undefined)
    expect(s).toEqual(DEFAULT_REPLICATOR_SETTINGS)
    expect(s).toMatchObject({
      listen: {host: '127.0.0.1', port: 8425},
      debounceMs: 500,
      maxDelayMs: 5000,
      fullSyncIntervalMs: 86_400_000,
      perServer: 4,
    })
    expect(replicatorUrl(s)).toBe('http://127.0.0.1:8425')
    expect(parseReplicatorSettings(config('replicator:\n'))).toEqual(DEFAULT_REPLICATOR_SETTINGS)
  })

  it('reads every key; durations as operators write them; paths relative to the config file', () => {
    const s = parseReplicatorSettings(
      config(
        [
          'replicator:',
          '  listen: "[::1]:9000"',
          '  url: http://10.0.0.5:9000/',
          '  secret_file: secrets/replicator',
          '  debounce: 250ms',
          '  max_delay: 1m30s',
          '  full_sync_interval: 12h',
          '  per_server: 2',
          '  probe_interval: 1s',
          '  probe_timeout: 2s',
          '  down_after: 3',
          '  up_after: 5',
        ].join('\n'),
      ),
    )
    expect(s).toEqual({
      listen: {host: '::1', port: 9000},
      url: 'http://10.0.0.5:9000/',
      secretFile: '/etc/mailring/secrets/replicator',
      debounceMs: 250,
      maxDelayMs: 90_000,
      fullSyncIntervalMs: 12 * 3_600_000,
      perServer: 2,
    })
    expect(replicatorUrl(s)).toBe('http://10.0.0.5:9000')
    expect(replicatorUrl({...s, url: undefined})).toBe('http://[::1]:9000')
  })

  it('names the file, line and key of each bad value', () => {
    const message = problems(
      [
        'replicator:',
        '  listen: 127.0.0.1',
        '  debounce: 5x',
        '  per_server: 0',
        '  url: ftp://x',
        '  colour: red',
        '  full_sync_interval: 1s',
      ].join('\n'),
    )
    expect(message).toContain(`${FILE}:2: replicator.listen: listen is HOST:PORT or [IPv6]:PORT`)
    expect(message).toContain(`${FILE}:3: replicator.debounce: debounce is a duration from 0ms to 1h`)
    expect(message).toContain(
      `${FILE}:4: replicator.per_server: per_server is a whole number from 1 to 64 (got 0)`,
    )
    expect(message).toContain(`${FILE}:5: replicator.url: url starts with http:// or https://`)
    expect(message).toContain(`${FILE}:6: replicator.colour: unknown key "colour"`)
    expect(message).toContain(
      `${FILE}:7: replicator.full_sync_interval: full_sync_interval is a duration from 1m`,
    )
    expect(problems('replicator:\n  debounce: 10s\n  max_delay: 5s\n')).toContain(
      `${FILE}:3: replicator.max_delay: max_delay (5s) must not be shorter than debounce (10s)`,
    )
    expect(problems('replicator:\n  url: http://u:p@x:1\n')).toContain('url holds no user or password')
    expect(problems('replicator:\n  url: http://x:1/events\n')).toContain('url has no path')
    expect(problems('replicator: 8425\n')).toContain(`${FILE}:1: replicator: replicator is a mapping`)
  })

  it('parses listen addresses', () => {
    expect(parseListen('0.0.0.0:8425')).toEqual({host: '0.0.0.0', port: 8425})
    expect(parseListen('replicator.example:1')).toEqual({host: 'replicator.example', port: 1})
    expect(parseListen('::1:8425')).toMatch(/HOST:PORT/)
    expect(parseListen('[nothex]:1')).toMatch(/HOST:PORT/)
    expect(parseListen('[1.2.3.4]:1')).toMatch(/not an IP address/)
    expect(parseListen('h:70000')).toMatch(/from 1 to 65535/)
  })

  it('needs url when listening on a wildcard address', () => {
    const s = {...DEFAULT_REPLICATOR_SETTINGS, listen: {host: '0.0.0.0', port: 8425}}
    expect(() => replicatorUrl(s)).toThrow(/set replicator.url/)
  })
})

describe('the replicator secret', () => {
  it('comes from MAILRING_REPLICATOR_SECRET first', () => {
    expect(replicatorSecret(DEFAULT_REPLICATOR_SETTINGS, {MAILRING_REPLICATOR_SECRET: 'from-env'})).toBe(
      'from-env',
    )
  })

  it('comes from a file only its owner can read', () => {
    const file = path.join(dir, 'replicator.secret')
    fs.writeFileSync(file, 'from-file-0123456789\n', {mode: 0o600})
    const settings = {...DEFAULT_REPLICATOR_SETTINGS, secretFile: file}
    expect(replicatorSecret(settings, {})).toBe('from-file-0123456789')
    fs.chmodSync(file, 0o644)
    expect(() => replicatorSecret(settings, {})).toThrow(`run \`chmod 600 ${file}\``)
  })

  it('says how to set it when there is none', () => {
    expect(() => replicatorSecret(DEFAULT_REPLICATOR_SETTINGS, {})).toThrow(
      /The replicator secret is not set: set MAILRING_REPLICATOR_SECRET, or name a file/,
    )
  })
})
