/**
 * ESLint rule `mailring/layers`: the layers of src/ (docs/architecture.md, "Layers") as a lint error.
 * Each folder under src/ is a layer and may import only the layers listed for it; some only for types.
 * src/core stays pure: no other layer, no package, and only the Node modules that do no I/O.
 */
import * as path from 'node:path'

/** What each layer may import (besides itself), lowest first. */
export const LAYERS = {
  core: [],
  config: ['core'],
  store: ['core', 'config'],
  dovecot: ['core', 'config'],
  remote: ['core', 'config', 'dovecot'],
  engine: ['core', 'config', 'store', 'dovecot', 'remote'],
  ui: ['core'],
  cli: ['core', 'config', 'store', 'dovecot', 'remote', 'engine', 'ui'],
  commands: ['core', 'config', 'engine', 'ui', 'cli'],
}

/** Imports allowed for types only: the shapes a layer shows, not its workings. */
export const TYPE_ONLY = {
  ui: ['engine', 'store'],
  commands: ['store', 'dovecot'],
}

/** Node modules src/core may use, and which of their exports (undefined: any). */
const PURE_NODE = {'node:crypto': undefined, 'node:url': ['domainToASCII'], 'node:net': ['isIP']}

function layerOf(file, srcDir) {
  const rel = path.relative(srcDir, file)
  if (rel.startsWith('..') || path.isAbsolute(rel)) return undefined
  const top = rel.split(path.sep)[0]
  return top in LAYERS ? top : undefined
}

function isTypeOnly(node) {
  if (node.importKind === 'type' || node.exportKind === 'type') return true
  const specifiers = node.specifiers ?? []
  return specifiers.length > 0 && specifiers.every((s) => s.importKind === 'type' || s.exportKind === 'type')
}

export const layersRule = {
  meta: {
    type: 'problem',
    docs: {description: 'Keep the layers of src/ (docs/architecture.md)'},
    schema: [],
  },
  create(context) {
    const file = context.filename ?? context.getFilename()
    const srcDir = path.resolve(context.cwd ?? process.cwd(), 'src')
    const layer = layerOf(file, srcDir)
    if (layer === undefined) return {}

    function check(node, source) {
      if (!source || typeof source.value !== 'string') return
      const spec = source.value
      if (!spec.startsWith('.')) {
        if (layer !== 'core') return
        if (!(spec in PURE_NODE)) {
          context.report({
            node: source,
            message: `src/core is pure: it may not import '${spec}' (only ${Object.keys(PURE_NODE).join(', ')}); do the I/O in src/engine`,
          })
          return
        }
        const names = PURE_NODE[spec]
        const bad = (node.specifiers ?? []).filter(
          (s) => names && (s.type !== 'ImportSpecifier' || !names.includes(s.imported.name)),
        )
        if (bad.length > 0)
          context.report({
            node: source,
            message: `src/core is pure: from '${spec}' it may import only ${names.join(', ')}`,
          })
        return
      }
      const target = layerOf(path.resolve(path.dirname(file), spec), srcDir)
      if (target === undefined) {
        context.report({
          node: source,
          message: `src/${layer} may not import '${spec}', which is outside src/`,
        })
        return
      }
      if (target === layer || LAYERS[layer].includes(target)) return
      if ((TYPE_ONLY[layer] ?? []).includes(target) && isTypeOnly(node)) return
      const typeNote = (TYPE_ONLY[layer] ?? []).includes(target) ? ' except with `import type`' : ''
      context.report({
        node: source,
        message: `src/${layer} may not import src/${target}${typeNote} ('${spec}'): ${layer} may use ${
          [...LAYERS[layer]].join(', ') || 'only itself'
        } (docs/architecture.md, Layers)`,
      })
    }

    return {
      ImportDeclaration: (node) => check(node, node.source),
      ExportNamedDeclaration: (node) => check(node, node.source),
      ExportAllDeclaration: (node) => check(node, node.source),
      ImportExpression: (node) => check(node, node.source),
    }
  },
}

export default {rules: {layers: layersRule}}
