import {mkdtempSync, rmSync, writeFileSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'

import {afterAll, describe, expect, it} from 'vitest'

import {JsonObjectError, readJsonObject, type JsonObjectPart} from '../../src/config/json-object.js'

const dir = mkdtempSync(join(tmpdir(), 'mailring-json-'))
afterAll(() => rmSync(dir, {recursive: true, force: true}))
let counter = 0

async function read(
  text: string,
  options: {elementsOf?: string[]; skip?: string[]; chunkSize?: number} = {},
): Promise<JsonObjectPart[]> {
  const path = join(dir, `f${counter++}.json`)
  writeFileSync(path, text)
  const parts: JsonObjectPart[] = []
  for await (const part of readJsonObject(path, options)) parts.push(part)
  return parts
}

const TEXT = `\uFEFF{
  "format": "mailring-plan",
  "target": {"servers": [{"name": "mx01", "zone": "a \\"b\\" [c] {d}"}], "copies": 2},
  "moves": [
    {"user": "a@example.com", "from": "mx01", "to": null},
    {"user": "b,\\\\\\"]@example.com", "from": null, "to": "mx02"}, [1, [2, {"x": "]"}]], 3.5e2, "é", true
  ],
  "empty": [],
  "n": -12
}
`

describe('a JSON object read member by member', () => {
  it('gives every member, and the elements of a list member in order, whatever the chunk size', async () => {
    const whole = JSON.parse(TEXT.slice(1))
    for (const chunkSize of [1, 2, 7, 64, 1 << 20]) {
      const parts = await read(TEXT, {elementsOf: ['moves', 'empty'], chunkSize})
      const members = Object.fromEntries(parts.flatMap((p) => ('value' in p ? [[p.key, p.value]] : [])))
      expect(members).toEqual({format: whole.format, target: whole.target, n: -12})
      const moves = parts.flatMap((p) => (p.key === 'moves' && 'elements' in p ? p.elements : []))
      expect(moves).toEqual(whole.moves)
      expect(parts.filter((p) => 'count' in p)).toEqual([
        {key: 'moves', count: 6},
        {key: 'empty', count: 0},
      ])
    }
  })

  it('reads past a skipped member without parsing it', async () => {
    const parts = await read(TEXT, {skip: ['moves', 'target'], chunkSize: 5})
    expect(parts).toEqual([
      {key: 'format', value: 'mailring-plan'},
      {key: 'target', skipped: true},
      {key: 'moves', skipped: true},
      {key: 'empty', value: []},
      {key: 'n', value: -12},
    ])
  })

  it.each([
    ['not an object', '[1, 2]', /expected "\{", found "\["/],
    ['a file cut short', TEXT.slice(0, 150), /the file ends inside/],
    ['text after the object', '{"a": 1} {"b": 2}', /text after the object at character 9/],
    ['a trailing comma in a list', '{"moves": [1, 2,]}', /not a list of JSON values/],
    ['a bad value', '{"a": tru}', /not a JSON value: tru/],
    ['a missing colon', '{"a" 1}', /expected ":", found "1"/],
    ['a name that is not a string', '{1: 2}', /a member name must be a string/],
  ])('refuses %s, saying where', async (_, text, message) => {
    for (const chunkSize of [3, 1 << 20]) {
      const error = await read(text, {elementsOf: ['moves'], chunkSize}).catch((e: unknown) => e)
      expect(error).toBeInstanceOf(JsonObjectError)
      expect((error as Error).message).toMatch(message)
    }
  })
})
