import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { expect, it } from 'vitest';
import { REPO } from './support/process.ts';

/** Logs one line with `options` in a fresh process; returns what it printed and whether pino-pretty was loaded. */
function logOnce(options: string): { stdout: string; prettyLoaded: boolean } {
  const script = `
    import { createRequire } from 'node:module';
    const { configuredLogger } = await import(${JSON.stringify(path.join(REPO, 'src/log.ts'))});
    const log = await configuredLogger(${options});
    log.info({ account: 'production', token: 'cf-secret-token' }, 'hello');
    const loaded = Object.keys(createRequire(import.meta.url).cache).some((f) => f.includes('/node_modules/pino-pretty/'));
    setTimeout(() => process.stderr.write(String(loaded)), 100);
  `;
  const child = spawnSync(path.join(REPO, 'node_modules/.bin/node'), ['--input-type=module', '-e', script], { cwd: REPO, encoding: 'utf8', timeout: 20_000 });
  return { stdout: child.stdout, prettyLoaded: child.stderr === 'true' };
}

it('JSON lines by default, without loading pino-pretty', () => {
  const { stdout, prettyLoaded } = logOnce("{ level: 'info', format: 'json' }");
  const line = JSON.parse(stdout.trim()) as Record<string, unknown>;
  expect(line).toMatchObject({ level: 30, app: 'riskwatch', account: 'production', token: '****', msg: 'hello' });
  expect(prettyLoaded).toBe(false);
});

it('log.format: pretty prints human-readable lines, secrets still blanked', () => {
  const { stdout, prettyLoaded } = logOnce("{ level: 'info', format: 'pretty' }");
  expect(stdout).toMatch(/INFO: hello/);
  expect(stdout).toContain('account: "production"');
  expect(stdout).not.toContain('cf-secret-token');
  expect(prettyLoaded).toBe(true);
});
