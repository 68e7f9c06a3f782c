/**
 * The operator commands' queries on a busy account (issue 16): a year of
 * history of a 100,000-user account in a real SQLite state file (the last
 * week's events delivered to a webhook, the last three days' dead-lettered),
 * then how long `events --user`, `events` (the last day), `users --level high`
 * and `status` take, and each page of the web console. Run by bench/run.ts, or alone: `npx node bench/history.ts`.
 */
import fs from 'node:fs';
import { DatabaseSync } from 'node:sqlite';
import os from 'node:os';
import path from 'node:path';
import type { RiskEvent } from '../src/detect/events.ts';
import { RISK_LEVELS, type RiskLevel, type RiskUser } from '../src/model.ts';
import { parseConfig } from '../src/config/load.ts';
import { boundAddress, startHttp } from '../src/daemon/http.ts';
import { Metrics } from '../src/daemon/metrics.ts';
import { SqliteStore } from '../src/store/sqlite.ts';
import { plannedDelivery } from '../src/notify/route.ts';
import { createConsole } from '../src/web/console.ts';
import { median } from './stats.ts';

export const HISTORY_USERS = 100_000;
export const HISTORY_DAYS = 365;
/** Level changes recorded a day: 1% of the users, every day of the year. */
export const EVENTS_PER_DAY = 1_000;
const ACCOUNT = 'b0a7c0ffee0000000000000000000001';
const DAY = 86_400_000;
const RUNS = 7;
/** Days of history whose events have deliveries kept, and of those, the last ones dead-lettered. */
const DELIVERY_DAYS = 7;
const DEAD_DAYS = 3;

/** The bench's user n (every benchmark tenant names its users so). */
export function benchUser(n: number, level: RiskLevel = RISK_LEVELS[n % 3]!): RiskUser {
  return {
    user_id: `00000000-0000-4000-8000-${String(n).padStart(12, '0')}`,
    email: `user${n}@example.com`,
    name: `User ${n}`,
    event_count: n % 9,
    last_event: '2026-11-22T17:59:00Z',
    max_risk_level: level,
  };
}

function event(id: string, u: RiskUser, previous: RiskLevel | null, at: number): RiskEvent {
  const { max_risk_level: current, ...fields } = u;
  const rank = (l: RiskLevel | null) => (l === null ? 0 : RISK_LEVELS.indexOf(l) + 1);
  return {
    id,
    type: rank(current) > rank(previous) ? 'user.risk_level_raised' : 'user.risk_level_lowered',
    timestamp: new Date(at).toISOString(),
    data: {
      account: { id: ACCOUNT, name: 'bench' },
      user: fields,
      previous_level: previous,
      current_level: current,
      risk_events: [{ id: `re-${id}`, name: 'Impossible travel', risk_level: 'high', timestamp: new Date(at - 60_000).toISOString() }],
    },
  };
}

async function time(run: () => Promise<unknown>): Promise<number> {
  const samples: number[] = [];
  for (let i = 0; i < RUNS; i++) {
    const started = performance.now();
    await run();
    samples.push(performance.now() - started);
  }
  return median(samples);
}

export interface HistoryResult {
  readonly users: number;
  readonly events: number;
  readonly fileMb: number;
  readonly buildSeconds: number;
  readonly queries: Record<string, { readonly ms: number; readonly rows: number }>;
  /** The web console's pages and /api/ (issue 27), each a GET over loopback HTTP, median of RUNS. */
  readonly pages: Record<string, { readonly ms: number; readonly kb: number }>;
}

/** Console pages served from this store by the daemon's own HTTP server (web/console.ts), as a browser asks for them. */
async function measurePages(store: SqliteStore, now: number): Promise<HistoryResult['pages']> {
  const config = parseConfig(
    `cloudflare:\n  api_token: bench-token\naccounts:\n  - id: ${ACCOUNT}\n    name: bench\nsinks:\n  - name: hook\n    type: webhook\n    url: http://127.0.0.1:9/\nhttp:\n  console: true\n  token: ${PAGE_TOKEN}\n`,
    path.join(os.tmpdir(), 'bench.yaml'),
    {},
  );
  const server = await startHttp({ host: '127.0.0.1', port: 0 }, () => ({ ready: true, accounts: [] }), new Metrics(), {
    console: createConsole({ config: () => config, store, now: () => now }),
  });
  const base = `http://${boundAddress(server)}`;
  const pages: Record<string, { ms: number; kb: number }> = {};
  try {
    for (const [name, url] of [
      ['overview', '/'],
      ['users at high, first page', '/users?level=high'],
      ['users at high, page 300', '/users?level=high&page=300'],
      ["a user's timeline (200 newest of 365 changes)", `/users/${ACCOUNT}/${benchUser(7).user_id}`],
      ['silences', '/silences'],
      ['dead letters (3,000), first page', '/deliveries?state=dead'],
      ['/api/deliveries?state=dead&limit=100', '/api/deliveries?state=dead&limit=100'],
      ['/api/users?level=high&limit=100', '/api/users?level=high&limit=100'],
      ['/api/status', '/api/status'],
    ] as const) {
      const get = async () => {
        const response = await fetch(base + url, { headers: { authorization: `Bearer ${PAGE_TOKEN}` } });
        if (!response.ok) throw new Error(`${url}: ${response.status}`);
        return response.text();
      };
      const body = await get();
      pages[name] = { ms: await time(get), kb: Buffer.byteLength(body) / 1024 };
    }
  } finally {
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
  }
  return pages;
}

const PAGE_TOKEN = 'bench-console-token-0123456789';

export async function measureHistory(): Promise<HistoryResult> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'rw-bench-history-'));
  const file = path.join(dir, 'state.db');
  try {
    const store = SqliteStore.open(file);
    const started = performance.now();
    const levels = new Map<number, RiskLevel>();
    for (let n = 1; n <= HISTORY_USERS; n++) levels.set(n, RISK_LEVELS[n % 3]!);
    const now = Date.now();
    const start = now - HISTORY_DAYS * DAY;
    await store.commitPoll({
      accountId: ACCOUNT,
      expectedVersion: 0,
      polledAt: start,
      delta: { upsertUsers: [...levels].map(([n, level]) => benchUser(n, level)), removeUserIds: [], upsertBehaviors: [], removeBehaviorIds: [] },
      events: [],
      deliveries: [],
    });
    // One commit a day of EVENTS_PER_DAY level changes; user 7 (a suspect) changes every day.
    let version = 1;
    let id = 0;
    for (let day = 1; day <= HISTORY_DAYS; day++) {
      const at = start + day * DAY;
      const changed: RiskUser[] = [];
      const events: RiskEvent[] = [];
      for (let i = 0; i < EVENTS_PER_DAY; i++) {
        const n = i === 0 ? 7 : (((day * EVENTS_PER_DAY + i) * 7919) % HISTORY_USERS) + 1;
        const before = levels.get(n)!;
        const after = RISK_LEVELS[(RISK_LEVELS.indexOf(before) + 1) % 3]!;
        levels.set(n, after);
        const u = benchUser(n, after);
        changed.push(u);
        events.push(event(`evt-${++id}`, u, before, at));
      }
      // The last week's events each went to a webhook (delivered ones are kept a week); the last three days' failed for good.
      const recent = day > HISTORY_DAYS - DELIVERY_DAYS;
      await store.commitPoll({
        accountId: ACCOUNT,
        expectedVersion: version++,
        polledAt: at,
        delta: { upsertUsers: changed, removeUserIds: [], upsertBehaviors: [], removeBehaviorIds: [] },
        events,
        deliveries: recent ? events.map((e) => plannedDelivery('hook', ACCOUNT, [e])) : [],
      });
    }
    await store.close();
    const raw = new DatabaseSync(file);
    raw.exec(`UPDATE deliveries SET state = 'dead', attempts = 8, last_error = 'HTTP 410 Gone: the webhook was removed', finished_at = created_at
              WHERE created_at > ${start + (HISTORY_DAYS - DEAD_DAYS) * DAY};
              UPDATE deliveries SET state = 'delivered', attempts = 1, finished_at = created_at WHERE state = 'pending';
              DELETE FROM delivery_subjects;`);
    raw.close();
    const buildSeconds = (performance.now() - started) / 1000;

    // The commands open the file as an operator does, beside a daemon.
    const operator = SqliteStore.open(file, { shared: 'read' });
    const queries: Record<string, { ms: number; rows: number }> = {};
    const measure = async (name: string, run: () => Promise<readonly unknown[] | { accounts: readonly unknown[] }>) => {
      const result = await run();
      queries[name] = { ms: await time(run), rows: Array.isArray(result) ? result.length : 1 };
    };
    await measure('events --user (a year, 100 newest)', () => operator.listEvents({ since: start, user: 'user7@example.com', limit: 100 }));
    await measure('events (last 24h, 100 newest)', () => operator.listEvents({ since: now - DAY, limit: 100 }));
    await measure('events --type lowered (a year, 100)', () => operator.listEvents({ since: start, type: 'user.risk_level_lowered', limit: 100 }));
    await measure('users --level high (with since)', () => operator.listUsers({ accountId: ACCOUNT, level: 'high' }));
    await measure('status', async () => (await operator.status(now)).accounts);
    const pages = await measurePages(operator, now);
    await operator.close();
    return { users: HISTORY_USERS, events: id, fileMb: fs.statSync(file).size / 1024 / 1024, buildSeconds, queries, pages };
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

if (import.meta.main) console.log(JSON.stringify(await measureHistory(), null, 2));
