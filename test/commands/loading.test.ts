import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { afterEach, beforeEach, expect, it } from 'vitest';
import { ENV } from '../support/config-files.ts';
import { type Cli, makeCli, seed } from './cli.ts';

const REPO = path.resolve(import.meta.dirname, '../..');

let cli: Cli;
beforeEach(async () => {
  cli = makeCli();
  await seed(cli.stateFile, Date.now() - 3_600_000);
});
afterEach(() => cli.tmp.remove());

/** Runs main(argv) in a fresh process and returns every module it loaded (file URLs), and the exit code. */
function modulesLoaded(argv: readonly string[]): { code: number; modules: string[] } {
  const script = `
    import { registerHooks } from 'node:module';
    const seen = new Set();
    registerHooks({ resolve(specifier, context, next) { const r = next(specifier, context); seen.add(r.url); return r; } });
    const { main } = await import(${JSON.stringify(path.join(REPO, 'src/main.ts'))});
    const code = await main(${JSON.stringify(argv)}, { out: () => {}, err: (l) => process.stderr.write(l + '\\n'), env: process.env });
    process.stdout.write(JSON.stringify({ code, modules: [...seen] }));
  `;
  const child = spawnSync(path.join(REPO, 'node_modules/.bin/node'), ['--input-type=module', '-e', script], {
    cwd: REPO,
    env: { PATH: process.env.PATH ?? '', ...ENV },
    encoding: 'utf8',
    timeout: 20_000,
  });
  expect(child.stderr).toBe('');
  return JSON.parse(child.stdout) as { code: number; modules: string[] };
}

it.each([['status'], ['users', '--level', 'high'], ['events'], ['silence', 'list'], ['deliveries']])(
  '%s loads neither undici, the daemon, the sinks, pino nor the PostgreSQL driver',
  (...argv) => {
    const { code, modules } = modulesLoaded([...argv, '--config', cli.config]);
    expect(code).toBe(0);
    expect(modules.some((m) => m.endsWith('/src/store/sqlite.ts'))).toBe(true);
    expect(modules.filter((m) => /\/node_modules\/(undici|pino|pino-pretty|pg|postgres)\/|\/src\/(daemon|notify\/sinks|cloudflare)\/|\/src\/store\/postgres\.ts$/.test(m))).toEqual([]);
  },
  30_000,
);
