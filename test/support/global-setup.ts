/**
 * vitest globalSetup: gives the tests a PostgreSQL server when nobody else did.
 *
 * CI (.ci/run) starts the shared server itself and exports
 * RISKWATCH_TEST_DATABASE_URL; so may a developer. When the variable is unset,
 * we are not in CI and the server binaries are installed, this starts a
 * throwaway server for the run and sets the variable. It runs in vitest's main
 * process before any worker exists, and workers inherit its environment, so
 * freshDatabase() in the tests sees it. In CI nothing is started here: without
 * the variable freshDatabase() throws, and the tests that need PostgreSQL fail.
 */
import type { TestProject } from 'vitest/node';
import { findPostgresBin, type PostgresServer, startPostgres, TEST_DATABASE_ERROR_ENV, TEST_DATABASE_URL_ENV } from './postgres.ts';

export default async function setup(_project: TestProject): Promise<(() => Promise<void>) | undefined> {
  if (process.env[TEST_DATABASE_URL_ENV] || process.env.CI || findPostgresBin() === undefined) return undefined;
  let server: PostgresServer;
  try {
    server = await startPostgres();
  } catch (err) {
    // Fail only the tests that need PostgreSQL (freshDatabase() reports this), not the whole run.
    process.env[TEST_DATABASE_ERROR_ENV] = err instanceof Error ? err.message : String(err);
    return undefined;
  }
  process.env[TEST_DATABASE_URL_ENV] = server.url;
  return async () => {
    delete process.env[TEST_DATABASE_URL_ENV];
    await server.stop();
  };
}
