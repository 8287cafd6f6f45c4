import {Chalk, type ChalkInstance} from 'chalk'

/** Colour only on a terminal, never with NO_COLOR (https://no-color.org) or TERM=dumb. */
export function colourEnabled(stream: NodeJS.WriteStream = process.stdout): boolean {
  if (process.env.NO_COLOR !== undefined && process.env.NO_COLOR !== '') return false
  if (process.env.TERM === 'dumb') return false
  return stream.isTTY === true
}

/** Colours for text written to `stream`: none unless colourEnabled. */
export function paint(stream: NodeJS.WriteStream = process.stdout): ChalkInstance {
  return new Chalk({level: colourEnabled(stream) ? 1 : 0})
}
