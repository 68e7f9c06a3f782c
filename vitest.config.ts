import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // Tests that spawn the real daemon or wait on loopback servers need room on a 2-core machine.
    testTimeout: 20_000,
    hookTimeout: 20_000,
    // Starts a throwaway PostgreSQL for freshDatabase() unless RISKWATCH_TEST_DATABASE_URL names one.
    globalSetup: ['test/support/global-setup.ts'],
  },
});
