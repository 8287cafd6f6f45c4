/**
 * The test tiers (vitest.config.ts): the `unit` project runs every `*.test.ts` that is not `*.int.test.ts`,
 * fast and without servers, and sets MAILRING_TEST_TIER=unit; the `integration` project runs the
 * `*.int.test.ts` files. Every way test/support has of starting a server or the built CLI asks here first,
 * so that a test needing one cannot slip into the fast tier unnoticed: it fails there, saying why.
 */
export function refuseInUnitTier(what: string): void {
  if (process.env.MAILRING_TEST_TIER === 'unit')
    throw new Error(
      `${what} in the unit tier: a test that starts servers or the built CLI goes in a *.int.test.ts file (see vitest.config.ts)`,
    )
}
