/**
 * The `dovecot` section of the config file (src/dovecot/settings.ts): defaults, every key parsed, relative
 * paths resolved against the config file, and each bad value reported as `file:line: dovecot.key: message`;
 * and where the password of Dovecot's database user comes from.
 */
import * as fs from 'node:fs'
import * as path from 'node:path'

import {afterAll, beforeAll, describe, expect, it} from 'vitest'

import {
  configPathOf,
  DEFAULT_DOVECOT_SETTINGS,
  dovecotDbPassword,
  parseDovecotSettings,
  versionOf,
} from '../../src/dovecot/settings.js'
import {configText, refusal} from '../support/config-text.js'
import {makeTempDir, removeDir} from '../support/proc.js'

const FILE = '/etc/mailring/config.yaml'

const config = (text: string, file = FILE) => configText(text, file)
const problems = (text: string) => refusal(parseDovecotSettings, text, FILE)

describe('dovecot section', () => {
  it('no config file, no section or an empty one: all defaults', () => {
    expect(parseDovecotSettings(undefined)).toEqual(DEFAULT_DOVECOT_SETTINGS)
    expect(parseDovecotSettings(config('db: sqlite:./x.db\n'))).toEqual(DEFAULT_DOVECOT_SETTINGS)
    expect(parseDovecotSettings(config('dovecot:\n'))).toEqual(DEFAULT_DOVECOT_SETTINGS)
    const s = parseDovecotSettings(undefined)
    expect(s).toMatchObject({version: '2.3', mode: 0o640, doveadmPort: 12345, replicaScheme: 'tcp'})
    expect(configPathOf(s, '2.3')).toBe('/etc/dovecot/dovecot-sql.conf.ext')
    expect(configPathOf(s, '2.4')).toBe('/etc/dovecot/conf.d/mailring-sql.conf')
    // The defaults are not shared: changing one result leaves the next alone.
    s.versions.mx01 = '2.4'
    expect(parseDovecotSettings(undefined).versions).toEqual({})
  })

  it('reads every key', () => {
    const s = parseDovecotSettings(
      config(
        [
          'dovecot:',
          '  version: "2.4"',
          '  versions: {mx01: "2.3", mx02: 2.4}',
          '  config_path: /etc/dovecot/conf.d/sql.conf',
          '  owner: 0',
          '  group: mail',
          '  mode: "0600"',
          '  doveconf: doveconf -c /etc/dovecot/dovecot.conf',
          '  doveadm: doveadm -c /etc/dovecot/dovecot.conf',
          '  verify_lookup: false',
          '  home: /srv/mail/%Ld/%Ln',
          '  uid: 5000',
          '  gid: vmail',
          '  default_pass_scheme: SHA512-CRYPT',
          '  password_column: pw',
          '  doveadm_port: 4000',
          '  replica_scheme: tcps',
          '  proxy_timeout: 10',
          '  sqlite_path: /var/lib/mailring/cluster.db',
          '  db_hosts: [db1, db2]',
          '  db_port: 3307',
          '  db_name: mail',
          '  db_user: dovecot',
          '  db_password_file: secrets/dovecot-db-password',
          '',
        ].join('\n'),
      ),
    )
    expect(s).toEqual({
      version: '2.4',
      versions: {mx01: '2.3', mx02: '2.4'},
      configPath: '/etc/dovecot/conf.d/sql.conf',
      owner: '0',
      group: 'mail',
      mode: 0o600,
      doveconf: 'doveconf -c /etc/dovecot/dovecot.conf',
      doveadm: 'doveadm -c /etc/dovecot/dovecot.conf',
      verifyLookup: false,
      home: '/srv/mail/%Ld/%Ln',
      uid: '5000',
      gid: 'vmail',
      defaultPassScheme: 'SHA512-CRYPT',
      passwordColumn: 'pw',
      doveadmPort: 4000,
      replicaScheme: 'tcps',
      proxyTimeoutSeconds: 10,
      sqlitePath: '/var/lib/mailring/cluster.db',
      dbHosts: ['db1', 'db2'],
      dbPort: 3307,
      dbName: 'mail',
      dbUser: 'dovecot',
      // Relative to the config file.
      dbPasswordFile: '/etc/mailring/secrets/dovecot-db-password',
    })
    expect(versionOf(s, 'mx01')).toBe('2.3')
    expect(versionOf(s, 'mx03')).toBe('2.4')
    expect(configPathOf(s, '2.3')).toBe('/etc/dovecot/conf.d/sql.conf')
  })

  it('accepts a mode without the leading 0, a single db host, and a version written as a number', () => {
    const s = parseDovecotSettings(config('dovecot:\n  mode: "640"\n  db_hosts: db1\n  version: 2.3\n'))
    expect(s).toMatchObject({mode: 0o640, dbHosts: ['db1'], version: '2.3'})
  })

  it('reports each bad value as file:line: dovecot.key', () => {
    const message = problems(
      [
        'dovecot:', // 1
        '  version: "3.0"', // 2
        '  mode: "0999"', // 3
        '  colour: blue', // 4
        '  doveadm_port: 70000', // 5
        '  replica_scheme: udp', // 6
        '  proxy_timeout: 0', // 7
        '  config_path: relative/sql.conf', // 8
        '  sqlite_path: cluster.db', // 9
        '  owner: "root; rm -rf /"', // 10
        '  verify_lookup: "yes"', // 11
        '  db_hosts: []', // 12
        '  db_port: 3306.5', // 13
        '  home: ""', // 14
        '  versions:', // 15
        '    mx01: "2.5"', // 16
        '',
      ].join('\n'),
    )
    const lines = message.split('\n')
    for (const expected of [
      `${FILE}:2: dovecot.version: a Dovecot version is "2.3" or "2.4" (got "3.0")`,
      `${FILE}:3: dovecot.mode: mode is octal permission bits in quotes, e.g. "0640"`,
      `${FILE}:4: dovecot.colour: unknown key "colour" (expected one of version, versions,`,
      `${FILE}:5: dovecot.doveadm_port: doveadm_port must be a whole number from 1 to 65535`,
      `${FILE}:6: dovecot.replica_scheme: replica_scheme is tcp or tcps`,
      `${FILE}:7: dovecot.proxy_timeout: proxy_timeout must be a whole number from 1 to 600`,
      `${FILE}:8: dovecot.config_path: config_path must be an absolute path on the servers`,
      `${FILE}:9: dovecot.sqlite_path: sqlite_path must be an absolute path on the servers`,
      `${FILE}:10: dovecot.owner: must be a user or group name, or a number`,
      `${FILE}:11: dovecot.verify_lookup: verify_lookup is true or false`,
      `${FILE}:12: dovecot.db_hosts: db_hosts is a host name or a list of them`,
      `${FILE}:13: dovecot.db_port: db_port must be a whole number from 1 to 65535`,
      `${FILE}:14: dovecot.home: home must be a non-empty text on one line`,
      `${FILE}:16: dovecot.versions.mx01: a Dovecot version is "2.3" or "2.4" (got "2.5")`,
    ]) {
      expect(
        lines.some((l) => l.startsWith(expected)),
        `${expected}\nin:\n${message}`,
      ).toBe(true)
    }
    expect(lines).toHaveLength(14)
  })

  // YAML reads 0640 as 640 and 0o640 as 416: a number cannot tell which mode was meant.
  it('refuses a mode written as a YAML number, which cannot be read safely', () => {
    expect(problems('dovecot:\n  mode: 0o640\n')).toBe(
      `${FILE}:2: dovecot.mode: write the mode in quotes, e.g. mode: "0640" (got 416)`,
    )
    expect(problems('dovecot:\n  mode: 640\n')).toMatch(/write the mode in quotes/)
    expect(parseDovecotSettings(config('dovecot:\n  mode: "0600"\n')).mode).toBe(0o600)
  })

  it('reports a section that is not a mapping, and a versions value that is not one', () => {
    expect(problems('dovecot: yes\n')).toBe(`${FILE}:1: dovecot: dovecot is a mapping of settings`)
    expect(problems('dovecot: [a]\n')).toMatch(/dovecot is a mapping/)
    expect(problems('dovecot:\n  versions: "2.4"\n')).toBe(
      `${FILE}:2: dovecot.versions: versions maps server names to "2.3" or "2.4", e.g. {mx01: "2.4"}`,
    )
    expect(problems('dovecot:\n  doveadm: "doveadm\\n-c x"\n')).toMatch(
      /:2: dovecot\.doveadm: doveadm must be a non-empty text on one line/,
    )
  })
})

describe("the password of Dovecot's database user", () => {
  let dir: string
  beforeAll(() => {
    dir = makeTempDir('mr-dovecot-settings')
  })
  afterAll(() => {
    if (dir) removeDir(dir)
  })

  it('MAILRING_DOVECOT_DB_PASSWORD wins; else the first line of db_password_file', () => {
    const file = path.join(dir, 'pw')
    fs.writeFileSync(file, 'from-file\nsecond line\n', {mode: 0o600})
    const settings = {...DEFAULT_DOVECOT_SETTINGS, dbPasswordFile: file}
    expect(dovecotDbPassword(settings, {MAILRING_DOVECOT_DB_PASSWORD: 'from-env'})).toBe('from-env')
    expect(dovecotDbPassword(settings, {MAILRING_DOVECOT_DB_PASSWORD: ''})).toBe('from-file')
    expect(dovecotDbPassword(settings, {})).toBe('from-file')
  })

  it('says what is missing: no file named, a file that cannot be read, an empty file', () => {
    expect(() => dovecotDbPassword(DEFAULT_DOVECOT_SETTINGS, {})).toThrow(/dovecot\.db_password_file/)
    const missing = path.join(dir, 'missing')
    expect(() => dovecotDbPassword({...DEFAULT_DOVECOT_SETTINGS, dbPasswordFile: missing}, {})).toThrow(
      /Cannot read dovecot\.db_password_file .*missing/,
    )
    const empty = path.join(dir, 'empty')
    fs.writeFileSync(empty, '\nsecond\n')
    expect(() => dovecotDbPassword({...DEFAULT_DOVECOT_SETTINGS, dbPasswordFile: empty}, {})).toThrow(
      /is empty/,
    )
  })
})
