import {afterEach, describe, expect, it} from 'vitest'

import {renderTable} from '../../src/ui/table.js'

/** stdout as a terminal or a pipe, for one test: vitest's own stdout is a pipe. */
function stdoutIsTTY(tty: boolean): void {
  Object.defineProperty(process.stdout, 'isTTY', {value: tty, configurable: true})
}

afterEach(() => {
  stdoutIsTTY(false)
  delete process.env.NO_COLOR
})

describe('renderTable', () => {
  it('prints plain space-separated columns to a pipe, numbers aligned right', () => {
    stdoutIsTTY(false)
    expect(
      renderTable(
        ['SERVER', 'COPIES'],
        [
          ['mx01', 7],
          ['mx10', 120],
        ],
      ),
    ).toBe('SERVER  COPIES\nmx01         7\nmx10       120')
  })

  it('draws a table with a bold head on a terminal, and plain columns again with NO_COLOR', () => {
    stdoutIsTTY(true)
    const table = renderTable(['SERVER', 'COPIES'], [['mx01', 7]])
    expect(table).toContain('\u001b[1mSERVER\u001b[22m')
    expect(table).toMatch(/mx01 .* 7/)
    expect(table).toContain('┌')
    expect(table).not.toContain('SERVER  COPIES')
    process.env.NO_COLOR = '1'
    expect(renderTable(['SERVER', 'COPIES'], [['mx01', 7]])).toBe('SERVER  COPIES\nmx01         7')
  })
})
