import {defineConfig} from 'vitest/config'

export default defineConfig({
  test: {
    testTimeout: 60_000,
    hookTimeout: 120_000,
    // Tests that start real servers each take their own ports and folders; two workers fit two cores.
    maxWorkers: 2,
    // SQLite takes file: URIs (a read-only store is opened as ?immutable=1) only when told before the first
    // connection of the process; mailring's CLI says so when src/store/sqlite.ts loads, and a test worker
    // may have opened a database before loading it.
    env: {SQLITE_USE_URI: '1'},
    // Two tiers, by file name: `npm run test:unit` runs the fast one (no server, no built CLI: a test that
    // starts one fails there, test/support/tier.ts), `npm run test:integration` the `*.int.test.ts` files.
    projects: [
      {
        extends: true,
        test: {
          name: 'unit',
          include: ['test/**/*.test.ts'],
          exclude: ['test/**/*.int.test.ts'],
          env: {MAILRING_TEST_TIER: 'unit'},
          // The files of a worker share one module graph (a third of the time): a unit test that changes
          // something global (fake timers) puts it back in afterEach.
          isolate: false,
        },
      },
      {extends: true, test: {name: 'integration', include: ['test/**/*.int.test.ts']}},
    ],
  },
})
