// Bundles the built CLI (dist/src, from tsc) for a fast start: dist/cli/main.js is oclif's `execute`, and
// dist/cli/commands/<topic>/<verb>.js one entry per command, sharing chunks in dist/cli/chunks/.
//
// Why: unbundled, `mailring place` read about 250 small files (oclif's 61 and yaml's 72 among them), and
// resolving and compiling them was most of its start-up (`npm run bench -- startup`). oclif is bundled
// too, so the commands and the runner share one copy of it. Each command stays its own entry, so a command
// loads only what it imports; what a command imports with `import()` stays a separate chunk.
// Packages with native parts or heavy lazy loads stay external, loaded from node_modules when used.
import {readdirSync} from 'node:fs'
import process from 'node:process'
import {join, relative, sep} from 'node:path'

import {build} from 'esbuild'

const commandsDir = join('dist', 'src', 'commands')
const commandEntries = Object.fromEntries(
  readdirSync(commandsDir, {withFileTypes: true, recursive: true})
    .filter((entry) => entry.isFile() && entry.name.endsWith('.js'))
    .map((entry) => {
      const file = join(entry.parentPath, entry.name)
      return [join('commands', relative(commandsDir, file).replace(/\.js$/, '')).split(sep).join('/'), file]
    }),
)

// The runner's entry: oclif's execute, from the same bundled oclif as the commands.
const mainEntry = {
  name: 'mailring-main',
  setup(pluginBuild) {
    pluginBuild.onResolve({filter: /^mailring-main$/}, () => ({path: 'main', namespace: 'mailring-main'}))
    pluginBuild.onLoad({filter: /.*/, namespace: 'mailring-main'}, () => ({
      contents: "export {execute} from '@oclif/core'\n",
      resolveDir: process.cwd(),
    }))
  },
}

await build({
  entryPoints: {main: 'mailring-main', ...commandEntries},
  plugins: [mainEntry],
  outdir: join('dist', 'cli'),
  chunkNames: 'chunks/[name]-[hash]',
  bundle: true,
  splitting: true,
  format: 'esm',
  platform: 'node',
  target: 'node20',
  external: [
    'better-sqlite3',
    'mysql2',
    'mysql2/*',
    'ssh2',
    'cpu-features',
    'ssh-config',
    'prom-client',
    // oclif loads its plugins from node_modules itself, and TypeScript only in development.
    '@oclif/plugin-*',
    'typescript',
    'ts-node',
    'tsx',
  ],
  // oclif and other CommonJS packages inside an ES module bundle still call require and read __dirname.
  banner: {
    js: [
      "import {createRequire as __mailringCreateRequire} from 'node:module'",
      "import {fileURLToPath as __mailringFileURLToPath} from 'node:url'",
      "import {dirname as __mailringDirname} from 'node:path'",
      'const require = __mailringCreateRequire(import.meta.url)',
      'const __filename = __mailringFileURLToPath(import.meta.url)',
      'const __dirname = __mailringDirname(__filename)',
    ].join('; '),
  },
  logLevel: 'warning',
})
