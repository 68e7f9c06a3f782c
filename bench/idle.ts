/**
 * What `run` holds while it waits between polls (issue 17): `bin/riskwatch
 * run` on one 1,000-user account of the fake API, with a webhook sink and the
 * metrics endpoint, as a small deployment runs it. Once the account is ready
 * and a few polls and scrapes have gone by, its resident memory is read from
 * /proc a few times and the median kept, with the part that is the Node
 * binary's own pages (RssFile) apart from what the process allocated
 * (RssAnon). Measured from a clone (the sources, with bin/riskwatch's compile
 * cache) and as shipped (the bundle in the image's layout, started as in a
 * fresh container: no compile cache).
 *
 *   node bench/idle.ts        # prints one JSON line
 *   RISKWATCH_BIN=/app/bin/riskwatch node bench/idle.ts    # another install of it
 */
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import type { RiskUser } from '../src/model.ts';
import { FakeRiskApi } from '../src/simulator/fake-api.ts';
import { DEMO_BEHAVIORS } from '../src/simulator/scenario.ts';
import { benchUser } from './history.ts';
import { BENCH_ACCOUNT, RUN_CONFIG_TAIL } from './floor.ts';
import { shippedApp } from './startup.ts';
import { median, statusMb } from './stats.ts';

const REPO = path.resolve(import.meta.dirname, '..');
const USERS = 1000;
const CONSOLE_TOKEN = 'bench-console-token-0123456789';

interface Rss {
  readonly rssMb: number;
  readonly anonMb: number;
  readonly fileMb: number;
}

export interface IdleResult extends Rss {
  readonly users: number;
  /** As shipped: the bundle (the Docker image's layout), started as in a fresh container, with no compile cache. */
  readonly shipped: Rss;
  /** From a clone, with the web console on and its pages asked for between samples (issue 27). */
  readonly console: Rss;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function memory(pid: number): { rss: number; anon: number; file: number } {
  const mb = statusMb(pid);
  return { rss: mb('VmRSS'), anon: mb('RssAnon'), file: mb('RssFile') };
}

export async function measureIdle(): Promise<IdleResult> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'rw-bench-idle-'));
  const api = await FakeRiskApi.start({ maxPerPage: 1000 });
  const account = api.account(BENCH_ACCOUNT);
  for (let n = 1; n <= USERS; n++) account.users.set(benchUser(n).user_id, benchUser(n) as RiskUser);
  for (const behavior of DEMO_BEHAVIORS) account.behaviors.set(behavior.id, behavior);
  api.fault = () => {
    api.requests.length = 0;
    return undefined;
  };
  const config = path.join(dir, 'riskwatch.yaml');
  fs.writeFileSync(
    config,
    `cloudflare:
  api_base_url: ${api.baseUrl}
  api_token: bench-token
accounts:
  - id: ${BENCH_ACCOUNT}
    name: bench
poll_interval: 2s
state:
  sqlite: ${path.join(dir, 'state.db')}
${RUN_CONFIG_TAIL}`,
  );
  const withConsole = path.join(dir, 'console.yaml');
  fs.writeFileSync(withConsole, `${fs.readFileSync(config, 'utf8')}  console: true\n  token: ${CONSOLE_TOKEN}\n`);
  try {
    // The first start fills bin/riskwatch's compile cache for the daemon's modules (the commands measured
    // before load fewer), as any start after an upgrade does; the second is what a restart holds.
    await idleRss(config, 0);
    const fromClone = await idleRss(config, 5);
    const shipped = await idleRss(config, 5, shippedApp(dir), { NODE_DISABLE_COMPILE_CACHE: '1' });
    await idleRss(withConsole, 0);
    const console = await idleRss(withConsole, 5, undefined, {}, ['/', '/users?level=high', `/users/${BENCH_ACCOUNT}/${benchUser(3).user_id}`, '/api/status']);
    return { users: USERS, ...fromClone, shipped, console };
  } finally {
    await api.close();
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

/** Starts run on `config`, waits until it is ready, and reads its memory `samples` times between polls and scrapes. */
async function idleRss(
  config: string,
  samples: number,
  bin = process.env.RISKWATCH_BIN ?? path.join(REPO, 'bin', 'riskwatch'),
  env: NodeJS.ProcessEnv = {},
  pages: readonly string[] = [],
): Promise<Rss> {
  const proc = spawn(bin, ['run', '--config', config], { stdio: ['ignore', 'pipe', 'inherit'], env: { ...process.env, ...env } });
  try {
    const address = await new Promise<string>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('run did not start within 2 minutes')), 120_000);
      createInterface({ input: proc.stdout! }).on('line', (line) => {
        const http = /"msg":"riskwatch started"/.test(line) ? (JSON.parse(line) as { http?: string }).http : undefined;
        if (http) {
          clearTimeout(timer);
          resolve(http);
        }
      });
      proc.once('exit', (code) => reject(new Error(`run exited ${code} before it started`)));
    });
    const base = `http://${address}`;
    for (let ready = false; !ready; await sleep(200)) ready = (await fetch(`${base}/readyz`)).ok;
    const read: ReturnType<typeof memory>[] = [];
    // A few polls and scrapes go by first, then memory is read between them.
    for (let i = 0; i < 3 + samples; i++) {
      await (await fetch(`${base}/metrics`)).text();
      for (const page of pages) await (await fetch(base + page, { headers: { authorization: `Bearer ${CONSOLE_TOKEN}` } })).text();
      await sleep(1500);
      if (i >= 3) read.push(memory(proc.pid!));
    }
    return samples === 0 ? { rssMb: NaN, anonMb: NaN, fileMb: NaN } : { rssMb: median(read.map((s) => s.rss)), anonMb: median(read.map((s) => s.anon)), fileMb: median(read.map((s) => s.file)) };
  } finally {
    if (proc.exitCode === null && proc.signalCode === null) {
      proc.kill('SIGTERM');
      await new Promise((r) => proc.once('exit', r));
    }
  }
}

if (import.meta.main) console.log(JSON.stringify(await measureIdle()));
