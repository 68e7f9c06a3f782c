import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
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

interface Loaded {
  readonly code: number;
  /** File URLs of the modules imported. */
  readonly modules: string[];
  /** Node's built-in modules loaded, however (an import, process.getBuiltinModule). */
  readonly builtins: string[];
}

/** Runs main(argv) in a fresh process and returns every module it loaded, and the exit code. */
function modulesLoaded(argv: readonly string[]): Loaded {
  return inChild(`
    const { main } = await import(${JSON.stringify(path.join(REPO, 'src/main.ts'))});
    code = await main(${JSON.stringify(argv)}, { out: () => {}, err: (l) => process.stderr.write(l + '\\n'), env: process.env });
  `);
}

/** Runs `body` (an ES module's code that sets `code`) in a fresh process, recording every module it loads. */
function inChild(body: string): Loaded {
  const script = `
    import { registerHooks } from 'node:module';
    const seen = new Set();
    registerHooks({ resolve(specifier, context, next) { const r = next(specifier, context); seen.add(r.url); return r; } });
    let code = 0;
    ${body}
    const builtins = process.moduleLoadList.filter((m) => m.startsWith('NativeModule ')).map((m) => m.slice('NativeModule '.length));
    process.stdout.write(JSON.stringify({ code, modules: [...seen], builtins }));
  `;
  const child = spawnSync(path.join(REPO, 'node_modules/.bin/node'), ['--input-type=module', '-e', script], {
    cwd: REPO,
    env: { PATH: process.env.PATH ?? '', ...ENV },
    encoding: 'utf8',
    timeout: 20_000,
  });
  expect(child.stderr).toBe('');
  return JSON.parse(child.stdout) as Loaded;
}

it.each([['status'], ['users', '--level', 'high'], ['events'], ['silence', 'list'], ['deliveries']])(
  "%s loads neither the daemon, the sinks, TLS, pino, the PostgreSQL driver nor Node's crypto, streams and net",
  (...argv) => {
    const { code, modules, builtins } = modulesLoaded([...argv, '--config', cli.config]);
    expect(code).toBe(0);
    expect(modules.some((m) => m.endsWith('/src/store/sqlite.ts'))).toBe(true);
    expect(modules.filter((m) => /\/node_modules\/(pino|pino-pretty|pg|postgres)\/|\/src\/(daemon|notify\/sinks|cloudflare)\/|\/src\/store\/postgres\.ts$/.test(m))).toEqual([]);
    expect(builtins.filter((m) => /^(https|tls|_http_client)$/.test(m))).toEqual([]);
    // What an ES import of a built-in drags in (its facade reads every export: node:fs's streams, node:util's
    // TextDecoder, which loads assert's diff and worker_threads) and what only the daemon needs: ~30 ms of a start.
    expect(builtins.filter((m) => /^(crypto|net|stream|worker_threads|internal\/fs\/streams|internal\/util\/diff)$/.test(m))).toEqual([]);
  },
  30_000,
);

it('a sink is built from its own module only: a webhook loads neither nodemailer nor the Slack library', () => {
  const { modules } = inChild(`
    const { createSink } = await import(${JSON.stringify(path.join(REPO, 'src/notify/sinks/create.ts'))});
    const { Secret } = await import(${JSON.stringify(path.join(REPO, 'src/config/secret.ts'))});
    const url = new Secret('https://hooks.example.com/riskwatch');
    const sink = await createSink({ type: 'webhook', name: 'hook', url, secret: undefined, headers: {}, minLevel: 'low', events: undefined, accounts: undefined }, { clock: {} });
    code = sink.name === 'hook' ? 0 : 1;
  `);
  expect(modules.some((m) => m.endsWith('/src/notify/sinks/webhook.ts'))).toBe(true);
  expect(modules.filter((m) => /\/node_modules\/(nodemailer|@slack)\/|\/src\/notify\/sinks\/(email|slack|teams|pagerduty|opsgenie)\.ts$/.test(m))).toEqual([]);
}, 30_000);

it('no source takes a Node built-in with an ES import (types aside): process.getBuiltinModule loads only what is used', () => {
  // An ES import of a built-in evaluates every export into a facade, and some exports are getters that load
  // more of Node (node:http's WebSocket loads its bundled fetch: 13 MB). Types come from `import type`.
  const offenders: string[] = [];
  for (const file of fs.readdirSync(path.join(REPO, 'src'), { recursive: true, encoding: 'utf8' })) {
    if (!file.endsWith('.ts')) continue;
    const text = fs.readFileSync(path.join(REPO, 'src', file), 'utf8');
    for (const match of text.matchAll(/^import (?!type )[^;]*? from '(node:[^']+)';$/gms)) offenders.push(`src/${file}: ${match[1]}`);
  }
  expect(offenders).toEqual([]);
});

it('run loads the web console only when http.console is on: off, it costs nothing', () => {
  const { modules } = inChild(`
    await import(${JSON.stringify(path.join(REPO, 'src/daemon/service.ts'))});
    await import(${JSON.stringify(path.join(REPO, 'src/commands/run.ts'))});
  `);
  expect(modules.some((m) => m.endsWith('/src/daemon/http.ts'))).toBe(true);
  expect(modules.filter((m) => /\/src\/web\//.test(m))).toEqual([]);
}, 30_000);
