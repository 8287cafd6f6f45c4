import {createReadStream} from 'node:fs'

/**
 * Reads a JSON file whose top level is an object, member by member, without ever holding the whole file:
 * a plan of a million moves is read in the memory of one move.
 */
export type JsonObjectPart =
  /** A member, parsed. */
  | {key: string; value: unknown}
  /** Elements of an array member named in `elementsOf`, parsed, a chunk at a time; then their count. */
  | {key: string; from: number; elements: unknown[]}
  | {key: string; count: number}
  /** A member named in `skip`, read past without keeping or parsing any of it. */
  | {key: string; skipped: true}

/** The file is not one JSON object: `at` is the character where that shows. */
export class JsonObjectError extends Error {
  constructor(
    message: string,
    readonly at: number,
  ) {
    super(`${message} at character ${at}`)
  }
}

export async function* readJsonObject(
  path: string,
  options: {elementsOf?: readonly string[]; skip?: readonly string[]; chunkSize?: number} = {},
): AsyncGenerator<JsonObjectPart> {
  const input = createReadStream(path, {encoding: 'utf8', highWaterMark: options.chunkSize ?? 1 << 20})
  try {
    const reader = new JsonReader(input[Symbol.asyncIterator]())
    if ((await reader.peek()) === '\uFEFF') await reader.take('\uFEFF')
    await reader.take('{')
    if ((await reader.peek()) === '}') await reader.take('}')
    else {
      for (;;) {
        const key = reader.parse(await reader.value())
        if (typeof key !== 'string') throw reader.error('a member name must be a string')
        await reader.take(':')
        if (options.skip?.includes(key)) {
          await reader.value(false)
          yield {key, skipped: true}
        } else if (options.elementsOf?.includes(key) && (await reader.peek()) === '[') {
          await reader.take('[')
          let count = 0
          if ((await reader.peek()) === ']') await reader.take(']')
          else {
            for (;;) {
              const {elements, closed} = reader.elementsInBuffer()
              if (elements.length > 0) {
                yield {key, from: count, elements}
                count += elements.length
              }
              if (closed) break
              if (!(await reader.more())) throw reader.error('the file ends inside a list')
            }
          }
          yield {key, count}
        } else yield {key, value: reader.parse(await reader.value())}
        if ((await reader.peek()) === '}') {
          await reader.take('}')
          break
        }
        await reader.take(',')
      }
    }
    if ((await reader.peek()) !== undefined) throw reader.error('text after the object')
  } finally {
    input.destroy()
  }
}

const QUOTE = 0x22
const BACKSLASH = 0x5c
const COMMA = 0x2c
const COLON = 0x3a
const OPEN_BRACE = 0x7b
const CLOSE_BRACE = 0x7d
const OPEN_BRACKET = 0x5b
const CLOSE_BRACKET = 0x5d

function isSpace(c: number): boolean {
  return c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09
}

/** Where the scan of one value stands, carried from one chunk of the file to the next. */
interface ValueScan {
  depth: number
  inString: boolean
  escaped: boolean
}

/**
 * Scans the text of one JSON value in `text` from `from`: the index just past the value, or -1 when the
 * text ends first (`scan` then holds where it stands, for the next chunk).
 */
function scanValue(text: string, from: number, scan: ValueScan): number {
  for (let i = from; i < text.length; i++) {
    const c = text.charCodeAt(i)
    if (scan.inString) {
      if (scan.escaped) scan.escaped = false
      else if (c === BACKSLASH) scan.escaped = true
      else if (c === QUOTE) {
        scan.inString = false
        if (scan.depth === 0) return i + 1
      }
    } else if (c === QUOTE) scan.inString = true
    else if (c === OPEN_BRACE || c === OPEN_BRACKET) scan.depth++
    else if (c === CLOSE_BRACE || c === CLOSE_BRACKET) {
      if (scan.depth === 0) return i
      if (--scan.depth === 0) return i + 1
    } else if (scan.depth === 0 && (c === COMMA || c === COLON || isSpace(c))) return i
  }
  return -1
}

/** Hands out the text of JSON values from a stream of chunks, holding no more than a chunk and a value. */
class JsonReader {
  private text = ''
  private at = 0
  /** Characters dropped from the front of `text` so far, for the position in errors. */
  private passed = 0

  constructor(private readonly chunks: AsyncIterator<string>) {}

  error(message: string): JsonObjectError {
    return new JsonObjectError(message, this.passed + this.at)
  }

  /** The next character that is not white space, not taken; undefined at the end of the file. */
  async peek(): Promise<string | undefined> {
    for (;;) {
      this.skipSpace()
      if (this.at < this.text.length) return this.text[this.at]
      if (!(await this.more())) return undefined
    }
  }

  async take(expected: string): Promise<void> {
    const c = await this.peek()
    if (c !== expected)
      throw this.error(`expected "${expected}", found ${c === undefined ? 'the end' : `"${c}"`}`)
    this.at++
  }

  /**
   * The text of the one JSON value that starts at the next character that is not white space; with `keep`
   * false the value is only read past (nothing of it is kept, however long it is) and '' returned.
   */
  async value(keep = true): Promise<string> {
    const first = await this.peek()
    if (first === undefined) throw this.error('the file ends where a value should be')
    const pieces: string[] = []
    const scan: ValueScan = {depth: 0, inString: false, escaped: false}
    let start = this.at
    for (;;) {
      const end = scanValue(this.text, start, scan)
      if (end >= 0) {
        this.at = end
        if (end === start && pieces.length === 0) throw this.error(`expected a value, found "${first}"`)
        return keep ? pieces.join('') + this.text.slice(start, end) : ''
      }
      if (keep) pieces.push(this.text.slice(start))
      this.at = this.text.length
      if (!(await this.more())) {
        if (scan.inString || scan.depth > 0) throw this.error('the file ends inside a value')
        return pieces.join('')
      }
      start = this.at
    }
  }

  /**
   * The elements of a list that stand whole in what has been read, parsed at once, with the "," after the
   * last of them taken; `closed` once the "]" is. The rest stays for the next chunk (see more).
   */
  elementsInBuffer(): {elements: unknown[]; closed: boolean} {
    const scan: ValueScan = {depth: 0, inString: false, escaped: false}
    let cut = -1
    let closed = false
    for (let i = this.at; i < this.text.length; i++) {
      const c = this.text.charCodeAt(i)
      if (scan.inString) {
        if (scan.escaped) scan.escaped = false
        else if (c === BACKSLASH) scan.escaped = true
        else if (c === QUOTE) scan.inString = false
      } else if (c === QUOTE) scan.inString = true
      else if (c === OPEN_BRACE || c === OPEN_BRACKET) scan.depth++
      else if (c === CLOSE_BRACE || c === CLOSE_BRACKET) {
        if (scan.depth > 0) scan.depth--
        else if (c === CLOSE_BRACKET) {
          cut = i
          closed = true
          break
        } else throw this.error('a "}" closes nothing in a list')
      } else if (c === COMMA && scan.depth === 0) cut = i
    }
    if (cut < 0) return {elements: [], closed: false}
    const text = this.text.slice(this.at, cut)
    let elements: unknown
    try {
      elements = JSON.parse(`[${text}]`) as unknown
    } catch {
      throw this.error('not a list of JSON values')
    }
    this.at = cut + 1
    return {elements: elements as unknown[], closed}
  }

  parse(text: string): unknown {
    try {
      return JSON.parse(text) as unknown
    } catch {
      throw this.error(`not a JSON value: ${text.length > 40 ? `${text.slice(0, 40)}...` : text}`)
    }
  }

  /** Reads the next chunk after what is not taken yet; false at the end of the file. */
  async more(): Promise<boolean> {
    const next = await this.chunks.next()
    if (next.done) return false
    this.passed += this.at
    this.text = this.text.slice(this.at) + (next.value as string)
    this.at = 0
    return true
  }

  private skipSpace(): void {
    while (this.at < this.text.length && isSpace(this.text.charCodeAt(this.at))) this.at++
  }
}
