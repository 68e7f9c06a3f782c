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
import { resourceUsage } from 'node:process';
import { createInterface } from 'node:readline';
import path from 'node:path';
import { systemClock } from '../src/clock.ts';
import { RequestBudget } from '../src/cloudflare/budget.ts';
import { CloudflareClient } from '../src/cloudflare/client.ts';
import { Secret } from '../src/config/secret.ts';
import { HttpPool } from '../src/http.ts';
import { AccountPoller } from '../src/daemon/poller.ts';
import { silentLogger } from '../src/log.ts';
import { SqliteStore } from '../src/store/sqlite.ts';
import { BENCH_ACCOUNT, floor, measure, PAGE_CONCURRENCY, PAGE_SIZE, type Sample, type Subject } from './floor.ts';

async function cycle(baseUrl: string, stateDir: string): Promise<{ first: Sample; subject: Subject }> {
  const http = new HttpPool();
  const store = SqliteStore.open(path.join(stateDir, 'bench.db'));
  const credential = { scheme: 'token' as const, id: 'cred-bench', token: new Secret('bench-token') };
  const client = new CloudflareClient({
    baseUrl,
    credential,
    budget: new RequestBudget(100_000, systemClock),
    clock: systemClock,
    log: silentLogger,
    http,
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
    sinks: [
      {
        config: { type: 'webhook', name: 'hook', minLevel: 'low', events: undefined, accounts: undefined, url: new Secret('http://127.0.0.1:9/'), secret: undefined, headers: {} },
        sink: { grouping: 'event' },
      },
    ],
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
        http.close();
      },
    },
  };
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
