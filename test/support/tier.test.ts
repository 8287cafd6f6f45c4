import {describe, expect, it} from 'vitest'

import {startCli} from './cli.js'
import {startDaemon} from './proc.js'

describe('the unit tier', () => {
  it('refuses to run the built CLI or start a server, naming where such a test goes', () => {
    expect(() => startCli(['--version'])).toThrow(
      'running the built CLI in the unit tier: a test that starts servers or the built CLI goes in a *.int.test.ts file (see vitest.config.ts)',
    )
    expect(() => startDaemon('/usr/sbin/dovecot', ['-F'], {logPath: '/dev/null'})).toThrow(
      /^starting dovecot in the unit tier/,
    )
  })
})
