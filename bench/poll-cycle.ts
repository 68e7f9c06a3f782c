/**
 * One benchmark child, alone in its process so that its CPU time and peak RSS
 * are its own.
 *
 *   baseline: the account's first poll, which stores every user (once per
 *             size); prints one JSON line.
 *   cycle:    a poller started on that state: one poll to warm up, then one
 *             steady-state poll (0.1% of the users changed) per "poll" line
 *             on stdin, each answered with a JSON line.
 *   floor:    the same, only downloading and JSON-parsing the same pages with
 *             the same page size and concurrency.
 *   An "end" line is answered with the peak RSS, and the child exits. The
 *   parent alternates cycle and floor polls, so that both see the machine in
 *   the same state (a 2-core machine drifts by 20% over a minute).
 *
 *   node bench/poll-cycle.ts baseline|cycle <apiBaseUrl> <stateDir>
 *   node bench/poll-cycle.ts floor <apiBaseUrl> <pages>
 */
import { cpuUsage, resourceUsage } from 'node:process';
import { createInterface } from 'node:readline';
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
/** The floor reads with a token of its own, so the fake API can tell its reads from the cycle's. */
export const FLOOR_TOKEN = 'bench-floor';

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

/** What a mode gives the command loop: one measured poll, and what to do at the end. */
interface Subject {
  poll(): Promise<Sample>;
  close(): Promise<void>;
}

async function cycle(baseUrl: string, stateDir: string): Promise<{ first: Sample; subject: Subject }> {
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
    diff: { firstRun: 'baseline' },
    route: { lowered: false },
    sinks: [{ config: { type: 'webhook', name: 'hook', minLevel: 'low', events: undefined, accounts: undefined, url: new Secret('http://127.0.0.1:9/'), secret: undefined, headers: {} }, sink: { grouping: 'event' } }],
    newId: () => crypto.randomUUID(),
    enrich: false,
  });
  const poll = () =>
    measure(async () => {
      const outcome = await poller.poll();
      return { rowsWritten: outcome.rowsWritten, events: outcome.eventTypes.length };
    });
  const first = await poll();
  return {
    first,
    subject: {
      poll,
      close: async () => {
        await store.close();
        await dispatcher.close();
      },
    },
  };
}

/** The floor: the same requests, page size and concurrency, each body downloaded and JSON-parsed, nothing else. */
async function floor(baseUrl: string, pages: number): Promise<Subject> {
  const dispatcher = new Agent({ connections: 16, keepAliveTimeout: 30_000 });
  const headers = { authorization: `Bearer ${FLOOR_TOKEN}`, accept: 'application/json' };
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
  await once(); // warm the connections, as the cycle's first poll does
  return { poll: () => measure(once), close: () => dispatcher.close() };
}

const maxRssMb = () => resourceUsage().maxRSS / 1024;

if (import.meta.main) {
  const [mode, baseUrl, third] = process.argv.slice(2);
  const write = (value: unknown) => process.stdout.write(`${JSON.stringify(value)}\n`);
  if (mode === 'baseline') {
    const { first, subject } = await cycle(baseUrl!, third!);
    await subject.close();
    write({ baseline: first, maxRssMb: maxRssMb() });
  } else {
    const subject = mode === 'floor' ? await floor(baseUrl!, Number(third)) : (await cycle(baseUrl!, third!)).subject;
    write({ ready: true });
    for await (const line of createInterface({ input: process.stdin })) {
      if (line === 'poll') write(await subject.poll());
      else break;
    }
    await subject.close();
    write({ maxRssMb: maxRssMb() });
  }
}
