/**
 * One benchmark child, alone in its process so that its CPU time and peak RSS
 * are its own; it prints one JSON line.
 *
 *   baseline: the account's first poll, which stores every user (once per size).
 *   cycle:    a daemon started on that state: one poll to warm up, then
 *             steady-state polls, each seeing 0.1% of the users change.
 *   floor:    only downloading and JSON-parsing the same pages, with the same
 *             page size and concurrency.
 *
 *   node bench/poll-cycle.ts baseline|cycle <apiBaseUrl> <stateDir> <polls>
 *   node bench/poll-cycle.ts floor <apiBaseUrl> <pages> <polls>
 */
import { cpuUsage, resourceUsage } from 'node:process';
import path from 'node:path';
import { Agent, request } from 'undici';
import { systemClock } from '../src/clock.ts';
import { RequestBudget } from '../src/cloudflare/budget.ts';
import { CloudflareClient } from '../src/cloudflare/client.ts';
import { Secret } from '../src/config/secret.ts';
import { AccountPoller } from '../src/daemon/poller.ts';
import { silentLogger } from '../src/log.ts';
import { SqliteStore } from '../src/store/sqlite.ts';

export const BENCH_ACCOUNT = 'be7c8be7c8be7c8be7c8be7c8be7c8be';
export const PAGE_SIZE = 1000;
export const PAGE_CONCURRENCY = 4;

interface Sample {
  readonly wallMs: number;
  readonly cpuMs: number;
  readonly rowsWritten?: number;
  readonly events?: number;
}

async function measure(run: () => Promise<{ rowsWritten?: number; events?: number } | void>): Promise<Sample> {
  const cpu = cpuUsage();
  const start = performance.now();
  const extra = (await run()) ?? {};
  const wallMs = performance.now() - start;
  const used = cpuUsage(cpu);
  return { wallMs, cpuMs: (used.user + used.system) / 1000, ...extra };
}

async function cycle(baseUrl: string, stateDir: string, polls: number, baselineOnly: boolean): Promise<unknown> {
  const dispatcher = new Agent({ connections: 16, keepAliveTimeout: 30_000 });
  const store = SqliteStore.open(path.join(stateDir, 'bench.db'));
  const credential = { scheme: 'token' as const, id: 'cred-bench', token: new Secret('bench-token') };
  const client = new CloudflareClient({
    baseUrl,
    credential,
    budget: new RequestBudget(100_000, systemClock),
    clock: systemClock,
    log: silentLogger,
    dispatcher,
    pageSize: PAGE_SIZE,
    pageConcurrency: PAGE_CONCURRENCY,
  });
  const poller = new AccountPoller({
    account: { id: BENCH_ACCOUNT, name: 'bench', label: 'bench', credential },
    client,
    store,
    clock: systemClock,
    log: silentLogger,
    diff: { firstRun: 'baseline', lowered: false },
    sinks: [{ config: { type: 'webhook', name: 'hook', minLevel: 'low', events: undefined, accounts: undefined, url: new Secret('http://127.0.0.1:9/'), secret: undefined, headers: {} }, sink: { grouping: 'event' } }],
    newId: () => crypto.randomUUID(),
    enrich: false,
  });
  const first = await measure(async () => {
    const outcome = await poller.poll();
    return { rowsWritten: outcome.rowsWritten, events: outcome.eventTypes.length };
  });
  if (baselineOnly) {
    await store.close();
    await dispatcher.close();
    return { baseline: first, maxRssMb: resourceUsage().maxRSS / 1024 };
  }
  const steady: Sample[] = [];
  for (let i = 0; i < polls; i++) {
    steady.push(
      await measure(async () => {
        const outcome = await poller.poll();
        return { rowsWritten: outcome.rowsWritten, events: outcome.eventTypes.length };
      }),
    );
  }
  await store.close();
  await dispatcher.close();
  return { warmup: first, steady, maxRssMb: resourceUsage().maxRSS / 1024 };
}

/** The floor: the same requests, page size and concurrency, each body downloaded and JSON-parsed, nothing else. */
async function floor(baseUrl: string, pages: number, polls: number): Promise<unknown> {
  const dispatcher = new Agent({ connections: 16, keepAliveTimeout: 30_000 });
  const headers = { authorization: 'Bearer bench-token', accept: 'application/json' };
  const get = async (url: string) => {
    const response = await request(url, { headers, dispatcher });
    return JSON.parse(await response.body.text()) as unknown;
  };
  const summaryUrl = (page: number) => `${baseUrl}/accounts/${BENCH_ACCOUNT}/zt_risk_scoring/summary?page=${page}&per_page=${PAGE_SIZE}`;
  const once = async () => {
    await Promise.all([get(summaryUrl(1)), get(`${baseUrl}/accounts/${BENCH_ACCOUNT}/zt_risk_scoring/behaviors`)]);
    let next = 2;
    await Promise.all(
      Array.from({ length: Math.min(PAGE_CONCURRENCY, Math.max(0, pages - 1)) }, async () => {
        while (next <= pages) await get(summaryUrl(next++));
      }),
    );
  };
  await once(); // warm the connections, as the cycle's baseline poll does
  const samples: Sample[] = [];
  for (let i = 0; i < polls; i++) samples.push(await measure(once));
  await dispatcher.close();
  return { steady: samples, maxRssMb: resourceUsage().maxRSS / 1024 };
}

if (import.meta.main) {
  const [mode, baseUrl, third, polls] = process.argv.slice(2);
  const result = mode === 'floor' ? await floor(baseUrl!, Number(third), Number(polls)) : await cycle(baseUrl!, third!, Number(polls), mode === 'baseline');
  process.stdout.write(`${JSON.stringify(result)}\n`);
}
