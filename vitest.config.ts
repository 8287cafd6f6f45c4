import {defineConfig} from 'vitest/config'

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    testTimeout: 60_000,
    hookTimeout: 120_000,
    // Tests that start real servers each take their own ports and folders; two workers fit two cores.
    maxWorkers: 2,
    // SQLite takes file: URIs (a read-only store is opened as ?immutable=1) only when told before the first
    // connection of the process; mailring's CLI says so when src/store/sqlite.ts loads, and a test worker
    // may have opened a database before loading it.
    env: {SQLITE_USE_URI: '1'},
  },
})
