/** Shell quoting for the command lines and scripts mailring sends to a server's POSIX shell. */

/** Single-quotes a string for a POSIX shell. */
export function shellQuote(text: string): string {
  return `'${text.replace(/'/g, `'\\''`)}'`
}
