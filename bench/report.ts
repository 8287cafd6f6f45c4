/**
 * Printing helpers for the benchmarks: Markdown tables (so that output can be pasted into docs as is),
 * number formats, and a record of every target checked, summarised at the end of a run.
 */

export interface TargetResult {
  suite: string
  metric: string
  value: string
  target: string
  pass: boolean
}

const results: TargetResult[] = []

/** Records a target check and returns the cell to print for it. */
export function checkTarget(
  suite: string,
  metric: string,
  value: string,
  target: string,
  pass: boolean,
): string {
  results.push({suite, metric, value, target, pass})
  return pass ? 'PASS' : 'FAIL'
}

export function targetResults(): readonly TargetResult[] {
  return results
}

/**
 * A Markdown table with aligned columns. By default the first column is left-aligned and the others
 * right-aligned (a label, then figures); `leftColumns` left-aligns that many leading columns.
 */
export function printTable(
  title: string,
  header: readonly string[],
  rows: readonly (readonly string[])[],
  notes: readonly string[] = [],
  leftColumns = 1,
): void {
  const widths = header.map((cell, column) =>
    Math.max(cell.length, ...rows.map((row) => (row[column] ?? '').length)),
  )
  const line = (cells: readonly string[]): string =>
    `| ${widths.map((width, column) => (column < leftColumns ? (cells[column] ?? '').padEnd(width) : (cells[column] ?? '').padStart(width))).join(' | ')} |`
  console.log('')
  console.log(`### ${title}`)
  console.log('')
  console.log(line(header))
  console.log(
    `|${widths.map((width, column) => (column < leftColumns ? ` ${'-'.repeat(width)} ` : ` ${'-'.repeat(width - 1)}: `)).join('|')}|`,
  )
  for (const row of rows) console.log(line(row))
  if (notes.length > 0) {
    console.log('')
    for (const note of notes) console.log(`- ${note}`)
  }
}

export function seconds(milliseconds: number): string {
  const s = milliseconds / 1000
  return `${s < 10 ? s.toFixed(2) : s < 100 ? s.toFixed(1) : s.toFixed(0)} s`
}

export function times(ratio: number): string {
  return `${ratio < 10 ? ratio.toFixed(2) : ratio < 100 ? ratio.toFixed(1) : ratio.toFixed(0)}x`
}

export function fixed(value: number, digits = 4): string {
  return value.toFixed(digits)
}

export function percent(fraction: number, digits = 2): string {
  return `${fraction >= 0 ? '+' : ''}${(fraction * 100).toFixed(digits)}%`
}

export function count(value: number): string {
  return value.toLocaleString('en-US')
}
