/**
 * A unified diff of two texts (as `diff -u` prints it), for configuration files of a few hundred lines:
 * the longest common subsequence of lines (O(n·m)), hunks with `context` lines around each change.
 */

type Op = {kind: ' ' | '-' | '+'; line: string}

function splitLines(text: string): string[] {
  if (text === '') return []
  const lines = text.split('\n')
  if (lines[lines.length - 1] === '') lines.pop()
  return lines
}

function diffLines(a: string[], b: string[]): Op[] {
  const n = a.length
  const m = b.length
  // lcs[i][j]: length of the LCS of a[i..] and b[j..]
  const lcs: Uint32Array[] = Array.from({length: n + 1}, () => new Uint32Array(m + 1))
  for (let i = n - 1; i >= 0; i--) {
    const row = lcs[i]!
    const below = lcs[i + 1]!
    for (let j = m - 1; j >= 0; j--) {
      row[j] = a[i] === b[j] ? below[j + 1]! + 1 : Math.max(below[j]!, row[j + 1]!)
    }
  }
  const ops: Op[] = []
  let i = 0
  let j = 0
  while (i < n && j < m) {
    if (a[i] === b[j]) {
      ops.push({kind: ' ', line: a[i]!})
      i++
      j++
    } else if (lcs[i + 1]![j]! >= lcs[i]![j + 1]!) {
      ops.push({kind: '-', line: a[i++]!})
    } else {
      ops.push({kind: '+', line: b[j++]!})
    }
  }
  while (i < n) ops.push({kind: '-', line: a[i++]!})
  while (j < m) ops.push({kind: '+', line: b[j++]!})
  return ops
}

/** '' when the texts are equal; otherwise `--- fromLabel`, `+++ toLabel` and the hunks. */
export function unifiedDiff(
  from: string,
  to: string,
  options: {fromLabel: string; toLabel: string; context?: number},
): string {
  if (from === to) return ''
  const context = options.context ?? 3
  const ops = diffLines(splitLines(from), splitLines(to))
  const out = [`--- ${options.fromLabel}`, `+++ ${options.toLabel}`]
  // Positions (in ops) of changes, grouped into hunks when their context overlaps.
  const changes = ops.flatMap((op, k) => (op.kind === ' ' ? [] : [k]))
  let h = 0
  while (h < changes.length) {
    const start = Math.max(0, changes[h]! - context)
    let end = changes[h]!
    while (h + 1 < changes.length && changes[h + 1]! - end <= 2 * context) end = changes[++h]!
    h++
    const stop = Math.min(ops.length, end + context + 1)
    // Line numbers at `start`.
    let aLine = 1
    let bLine = 1
    for (let k = 0; k < start; k++) {
      if (ops[k]!.kind !== '+') aLine++
      if (ops[k]!.kind !== '-') bLine++
    }
    const slice = ops.slice(start, stop)
    const aCount = slice.filter((op) => op.kind !== '+').length
    const bCount = slice.filter((op) => op.kind !== '-').length
    const range = (line: number, count: number) =>
      count === 1 ? `${line}` : `${count === 0 ? line - 1 : line},${count}`
    out.push(`@@ -${range(aLine, aCount)} +${range(bLine, bCount)} @@`)
    for (const op of slice) out.push(`${op.kind}${op.line}`)
  }
  const noNewline = (text: string) => text !== '' && !text.endsWith('\n')
  if (noNewline(from) || noNewline(to)) out.push('\\ (one of the files does not end with a newline)')
  return out.join('\n') + '\n'
}
