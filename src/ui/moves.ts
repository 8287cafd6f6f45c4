/** Journaled moves as a table. */
import type {MoveRecord} from '../store/store.js'
import {renderTable} from './table.js'

export function movesTable(moves: readonly MoveRecord[]): string {
  return renderTable(
    ['ID', 'USER', 'FROM', 'TO', 'STATE', 'ATTEMPTS', 'LAST ERROR'],
    moves.map((m) => [
      m.id,
      m.user,
      m.from ?? '(added)',
      m.to ?? '(dropped)',
      m.state,
      m.attempts,
      m.lastError ?? '-',
    ]),
  )
}
