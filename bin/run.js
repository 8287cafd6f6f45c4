#!/usr/bin/env node
// The bundled runner (`npm run build`: scripts/bundle-cli.mjs), with the same oclif as the bundled commands.
import {execute} from '../dist/cli/main.js'

await execute({dir: import.meta.url})
