/** `mailring rebalance` executing, for people: a line per move that needs attention, and a summary. */
import {formatBytes} from '../core/bytes.js'
import type {MoveOutcome} from '../engine/rebalance/move.js'
import type {RebalanceRunResult} from '../engine/rebalance/run.js'

/** A move in a line: `A -> B`, `+ B` (a copy added), `A -> (dropped)`. */
function servers(m: MoveOutcome): string {
  return m.from === null ? `+ ${String(m.to)}` : `${m.from} -> ${m.to ?? '(dropped)'}`
}

/** One line for a move that failed or finished with a note; undefined for the others. */
export function moveLine(m: MoveOutcome): string | undefined {
  if (m.error !== undefined) return `${m.user} ${servers(m)}: failed (${m.state}): ${m.error}`
  if (m.note !== undefined) return `${m.user} ${servers(m)}: ${m.note}`
  return undefined
}

export function rebalanceSummaryLines(run: RebalanceRunResult): string[] {
  const s = run.summary
  const messages = run.moves.reduce((n, m) => n + (m.error === undefined ? m.messages : 0), 0)
  const parts = [`${s.moved} moved`, `${s.failed} failed`]
  if (s.resumed > 0) parts.push(`${s.resumed} resumed from an earlier run`)
  if (s.left > 0) parts.push(`${s.left} left for the next run`)
  const lines = [
    `Rebalance ${s.interrupted ? 'stopped' : 'finished'}: ${parts.join(', ')}; ${messages} messages, ${formatBytes(s.bytes)}, in ${s.seconds.toFixed(1)} s (${s.movesPerSecond.toFixed(2)} moves/s, ${formatBytes(s.bytesPerSecond)}/s).`,
  ]
  if (s.failed > 0)
    lines.push(
      'Failed moves changed nothing (the old copies still serve): fix the cause and run `mailring rebalance` again, or `mailring rebalance cancel`.',
    )
  for (const server of run.emptied)
    lines.push(`${server} holds no copies now: \`mailring node remove ${server}\` deletes it.`)
  return lines
}
