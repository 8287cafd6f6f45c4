import {describe, expect, it} from 'vitest'

import {withPrintedExit} from '../../src/remote/doveadm.js'

describe('the exit code a doveadm over SSH prints', () => {
  it('stands in for a lost exit status, and leaves the output as doveadm wrote it', () => {
    const r = withPrintedExit({exitCode: null, stdout: 'guid\nabc\nmailring-doveadm-exit 0\n', stderr: ''})
    expect(r).toEqual({exitCode: 0, stdout: 'guid\nabc\n', stderr: ''})
  })

  it('tells a failure with no output, and is what counts when both came', () => {
    expect(withPrintedExit({exitCode: null, stdout: 'mailring-doveadm-exit 75\n'})).toEqual({
      exitCode: 75,
      stdout: '',
    })
    expect(withPrintedExit({exitCode: 0, stdout: 'x\nmailring-doveadm-exit 2\n'})).toEqual({
      exitCode: 2,
      stdout: 'x\n',
    })
  })

  it('changes nothing when the line is missing (the command was cut short): a lost status stays a failure', () => {
    const cut = {exitCode: null, stdout: 'guid\nab'}
    expect(withPrintedExit(cut)).toBe(cut)
    expect(withPrintedExit({exitCode: null, stdout: 'abcmailring-doveadm-exit 0\n'}).exitCode).toBeNull()
  })
})
