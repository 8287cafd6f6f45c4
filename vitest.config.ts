import {defineConfig} from 'vitest/config'

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    testTimeout: 60_000,
    hookTimeout: 120_000,
    // Tests that start real servers each take their own ports and folders; two workers fit two cores.
    maxWorkers: 2,
  },
})
