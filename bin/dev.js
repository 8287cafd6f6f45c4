#!/usr/bin/env -S node --import tsx
import {readFileSync} from 'node:fs'
import {dirname, join} from 'node:path'
import {fileURLToPath} from 'node:url'

import {Config, Plugin, execute, settings} from '@oclif/core'

// Runs the commands of src/ through tsx (the shebang), never the built ones of dist/:
// - the root plugin ignores oclif.manifest.json, which `npm run build` writes and which lists dist/'s
//   commands (stale ones, or none for a command not built yet);
// - it finds its commands in src/commands itself: oclif's own mapping of dist/ to src/ registers tsx
//   again, which fails with this tsx, and then silently falls back to dist/.
process.env.NODE_ENV = 'development'
settings.enableAutoTranspile = false
const root = dirname(dirname(fileURLToPath(import.meta.url)))
const pjson = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8'))
pjson.oclif.commands = './src/commands'
const rootPlugin = new Plugin({root, isRoot: true, ignoreManifest: true, pjson})
await rootPlugin.load()
const config = await Config.load({root, pjson, plugins: new Map([[rootPlugin.name, rootPlugin]])})
// Given plugins replace oclif's discovery of them: load the others (help, autocomplete) as it would.
await config.loadPluginsAndCommands({force: true})

await execute({development: true, loadOptions: config})
