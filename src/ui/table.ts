import {createRequire} from 'node:module'

import type TableType from 'cli-table3'

import {colourEnabled, paint} from './terminal.js'

// cli-table3 (and the width and colour packages it brings) loads only for a table on a terminal: a
// command piped into a script prints plain columns and starts faster without it.
const require = createRequire(import.meta.url)

export type Cell = string | number
export type Align = 'left' | 'right'

/**
 * A table for people. Numbers align right. Without colour (pipes, NO_COLOR) it is plain text with
 * space-separated columns, so that grep and awk work on it.
 */
export function renderTable(head: string[], rows: Cell[][], options: {align?: Align[]} = {}): string {
  const align = head.map(
    (_, i) => options.align?.[i] ?? (rows.some((row) => typeof row[i] === 'number') ? 'right' : 'left'),
  )
  if (!colourEnabled()) return plainTable(head, rows, align)
  const colour = paint()
  const Table = require('cli-table3') as typeof TableType
  const table = new Table({
    head: head.map((title) => colour.bold(title)),
    style: {head: [], border: []},
    colAligns: align,
  })
  for (const row of rows) table.push(row.map(String))
  return table.toString()
}

function plainTable(head: string[], rows: Cell[][], align: Align[]): string {
  const text = [head, ...rows.map((row) => row.map(String))]
  const widths = head.map((_, i) => Math.max(...text.map((row) => String(row[i] ?? '').length)))
  return text
    .map((row) =>
      row
        .map((cell, i) =>
          align[i] === 'right' ? String(cell).padStart(widths[i]!) : String(cell).padEnd(widths[i]!),
        )
        .join('  ')
        .trimEnd(),
    )
    .join('\n')
}

export function percent(fraction: number, digits = 2): string {
  return `${(fraction * 100).toFixed(digits)}%`
}

export {groupDigits} from '../core/number-format.js'
