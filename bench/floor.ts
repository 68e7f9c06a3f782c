/**
 * The floor of a poll: the same summary pages and behaviors a poll reads, with
 * the same page size and concurrency, each body downloaded and JSON-parsed,
 * nothing else. This module imports only the HTTP client, so that run as a
 * process of its own it is also the floor of a whole `once` (Node's start
 * included), as cron sees it:
 *
 *   node bench/floor.ts <apiBaseUrl> <pages>    # one read, then exits
 */
import { cpuUsage } from 'node:process';
import { HttpPool } from '../src/http.ts';

export const BENCH_ACCOUNT = 'be7c8be7c8be7c8be7c8be7c8be7c8be';
export const PAGE_SIZE = 1000;
export const PAGE_CONCURRENCY = 4;
/** The floor reads with a token of its own, so the fake API can tell its reads from the cycle's. */
export const FLOOR_TOKEN = 'bench-floor';
/** The end of a benchmark's config for `run`: a webhook nobody answers (nothing is announced) and /metrics on a free port. */
export const RUN_CONFIG_TAIL = `sinks:
  - name: hook
    type: webhook
    url: http://127.0.0.1:9/
http:
  listen: 127.0.0.1:0
`;

export interface Sample {
  readonly wallMs: number;
  readonly cpuMs: number;
  readonly rowsWritten?: number;
  readonly events?: number;
}

// biome-ignore lint/suspicious/noConfusingVoidType: a run may return its counts, or nothing
export async function measure(run: () => Promise<{ rowsWritten?: number; events?: number } | void>): Promise<Sample> {
  const cpu = cpuUsage();
  const start = performance.now();
  const extra = (await run()) ?? {};
  const wallMs = performance.now() - start;
  const used = cpuUsage(cpu);
  return { wallMs, cpuMs: (used.user + used.system) / 1000, ...extra };
}

/** What a benchmark child polls: one measured poll, and what to do at the end. */
export interface Subject {
  poll(): Promise<Sample>;
  close(): Promise<void>;
}

/** The floor: the same requests, page size and concurrency, each body downloaded and JSON-parsed, nothing else. */
export async function floor(baseUrl: string, pages: number): Promise<Subject> {
  const http = new HttpPool();
  const headers = { authorization: `Bearer ${FLOOR_TOKEN}`, accept: 'application/json' };
  const get = async (url: string) => {
    const response = await http.request(url, { method: 'GET', headers, signal: AbortSignal.timeout(30_000) });
    const chunks: Buffer[] = [];
    for await (const chunk of response.body) chunks.push(chunk as Buffer);
    return JSON.parse(Buffer.concat(chunks).toString('utf8')) as unknown;
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
  return { poll: () => measure(once), close: async () => http.close() };
}

if (import.meta.main) {
  const [baseUrl, pages] = process.argv.slice(2);
  await (await floor(baseUrl!, Number(pages))).close();
}
