import {readFileSync} from 'node:fs'

import {isMap, isNode, isScalar, LineCounter, parseDocument, type Document} from 'yaml'

import {MailringError} from '../core/errors.js'
import {formatPath, type IssuePath, type ValidationIssue} from '../core/validate.js'

/** A parsed YAML file that can say on which line a key stands, so errors name file, line and key. */
export interface YamlFile {
  path: string
  data: unknown
  lineOf(path: IssuePath): number | undefined
}

export function readYamlFile(path: string, what: string): YamlFile {
  return parseYamlText(readTextFile(path, what), path)
}

/** A whole text file, or one line saying what could not be read and why. */
export function readTextFile(path: string, what: string): string {
  try {
    return readFileSync(path, 'utf8')
  } catch (error) {
    const reason =
      (error as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file' : (error as Error).message
    throw new MailringError(`Cannot read ${what} ${path}: ${reason}.`)
  }
}

export function parseYamlText(text: string, path: string): YamlFile {
  const lineCounter = new LineCounter()
  const doc: Document = parseDocument(text, {lineCounter, prettyErrors: false, uniqueKeys: true})
  const [first] = doc.errors
  if (first) {
    const line = lineCounter.linePos(first.pos[0]).line
    throw new MailringError(`${path}:${line}: malformed YAML: ${first.message.split('\n')[0]}`)
  }
  return {
    path,
    data: doc.toJS(),
    lineOf(issuePath) {
      // A key's own line (a list under "servers:" starts a line below it), else the closest node that
      // exists: a missing key is reported at its parent.
      const key = issuePath[issuePath.length - 1]
      const parent = issuePath.length === 1 ? doc.contents : doc.getIn(issuePath.slice(0, -1), true)
      if (typeof key === 'string' && isMap(parent)) {
        const pair = parent.items.find((item) => isScalar(item.key) && item.key.value === key)
        if (isNode(pair?.key) && pair.key.range) return lineCounter.linePos(pair.key.range[0]).line
      }
      for (let depth = issuePath.length; depth >= 0; depth--) {
        const node = depth === 0 ? doc.contents : doc.getIn(issuePath.slice(0, depth), true)
        if (isNode(node) && node.range) return lineCounter.linePos(node.range[0]).line
      }
      return undefined
    },
  }
}

/** One line per issue: `file:line: key: message`. */
export function describeIssues(file: YamlFile, issues: readonly ValidationIssue[]): string {
  return issues
    .map((issue) => {
      const line = file.lineOf(issue.path)
      const key = formatPath(issue.path)
      return `${file.path}${line === undefined ? '' : `:${line}`}: ${key ? `${key}: ` : ''}${issue.message}`
    })
    .join('\n')
}
