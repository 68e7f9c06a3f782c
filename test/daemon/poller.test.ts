import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { AccountConfig, SinkConfig } from '../../src/config/config.ts';
import type { CloudflareClientOptions } from '../../src/cloudflare/client.ts';
import { AccountPoller } from '../../src/daemon/poller.ts';
import { silentLogger } from '../../src/log.ts';
import type { RiskLevel } from '../../src/model.ts';
import type { Sink } from '../../src/notify/sink.ts';
import { DeliveryWorker } from '../../src/notify/worker.ts';
import { FakeRiskApi, success } from '../../src/simulator/fake-api.ts';
import { PostgresStore } from '../../src/store/postgres.ts';
import { SqliteStore } from '../../src/store/sqlite.ts';
import type { StateStore } from '../../src/store/store.ts';
import type { RiskEvent } from '../../src/detect/events.ts';
import { ACCOUNT, behavior, clientFor, tokenCredential, user } from '../support/cloudflare.ts';
import { FakeClock } from '../support/fake-clock.ts';
import { freshDatabase } from '../support/postgres.ts';

const account: AccountConfig = { id: ACCOUNT, name: 'production', label: 'production', credential: tokenCredential() };
const consoleSink: SinkConfig = { type: 'console', name: 'out', minLevel: 'low', events: undefined, accounts: undefined };

/** A sink that keeps what it was sent: the receiver side of these tests. */
class RecordingSink implements Sink<{ events: readonly RiskEvent[] }> {
  readonly name = 'out';
  readonly grouping = 'event';
  readonly received: { events: readonly RiskEvent[] }[] = [];
  render(events: readonly RiskEvent[]) {
    return { events };
  }
  renderTest() {
    return { events: [] };
  }
  async send(message: { events: readonly RiskEvent[] }): Promise<void> {
    this.received.push(message);
  }
}

let api: FakeRiskApi;
let dir: string;
let file: string;
let store: SqliteStore;
let clock: FakeClock;
let ids: number;

beforeEach(async () => {
  api = await FakeRiskApi.start({ maxPerPage: 10 });
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'rw-poll-'));
  file = path.join(dir, 'state.db');
  store = SqliteStore.open(file);
  clock = new FakeClock();
  ids = 0;
});

afterEach(async () => {
  await store.close();
  await api.close();
  fs.rmSync(dir, { recursive: true, force: true });
});

function setUser(n: number, level: RiskLevel) {
  const u = { ...user(n), max_risk_level: level };
  api.account(ACCOUNT).users.set(u.user_id, u);
}

function poller(options: { store?: StateStore; firstRun?: 'baseline' | 'notify'; lowered?: boolean; enrich?: boolean; client?: Partial<CloudflareClientOptions> } = {}) {
  const { client } = clientFor(api, { clock, retry: { attempts: 2, baseDelayMs: 10, maxDelayMs: 10, maxWaitMs: 100 }, ...options.client });
  return new AccountPoller({
    account,
    client,
    store: options.store ?? store,
    clock,
    log: silentLogger,
    diff: { firstRun: options.firstRun ?? 'baseline' },
    route: { lowered: options.lowered ?? false },
    sinks: [{ config: consoleSink, sink: { grouping: 'event' } }],
    newId: () => `event-${++ids}`,
    enrich: options.enrich ?? false,
  });
}

async function drain(into: RecordingSink, from: StateStore = store) {
  const worker = new DeliveryWorker({ store: from, sinks: [into], clock, log: silentLogger });
  return worker.drainDue();
}

const raisedEmails = (sink: RecordingSink) =>
  sink.received.flatMap((d) => d.events).flatMap((e) => (e.type === 'user.risk_level_raised' ? [`${e.data.user.email} ${e.data.previous_level}->${e.data.current_level}`] : []));

describe('a failed or partial poll commits nothing and emits nothing', () => {
  it('commits nothing when one summary page keeps failing', async () => {
    for (let n = 1; n <= 25; n++) setUser(n, 'high');
    api.fault = (r) => (r.call === 'summary' && r.query.get('page') === '3' ? { status: 502, body: '<html>bad gateway</html>' } : undefined);
    await expect(poller({ firstRun: 'notify' }).poll()).rejects.toThrow(/HTTP 502/);
    expect((await store.loadSnapshot(ACCOUNT)).version).toBe(0);
    expect(await store.deliveryCounts()).toEqual(new Map());
  });

  it('commits nothing when the behaviors call fails', async () => {
    setUser(1, 'high');
    api.fault = (r) => (r.call === 'behaviors' ? { status: 403 } : undefined);
    await expect(poller({ firstRun: 'notify' }).poll()).rejects.toThrow(/HTTP 403/);
    expect((await store.loadSnapshot(ACCOUNT)).version).toBe(0);
  });

  it('announces the change once the API recovers, as if the failed poll never happened', async () => {
    setUser(1, 'low');
    const p = poller();
    await p.poll();
    setUser(1, 'high');
    api.fault = () => ({ status: 500 });
    await expect(p.poll()).rejects.toThrow();
    api.fault = undefined;
    await p.poll();
    const sink = new RecordingSink();
    await drain(sink);
    expect(raisedEmails(sink)).toEqual([`${user(1).email} low->high`]);
  });
});

describe('a poll whose reads fail together: the one left is stopped and settled before the poll returns', () => {
  it('aborts the summary read when the behaviors call fails, so nothing of it runs on into the next poll', async () => {
    for (let n = 1; n <= 30; n++) setUser(n, 'low');
    const answered: [string, number | 'error'][] = [];
    const p = poller({ client: { onResponse: (call, status) => answered.push([call, status]) } });
    await p.poll();
    api.fault = (r) => (r.call === 'summary' && r.query.get('page') === '2' ? { hang: true } : r.call === 'behaviors' ? { status: 403 } : undefined);
    answered.length = 0;
    await expect(p.poll()).rejects.toThrow(/HTTP 403/);
    // The hanging page was given up on before the poll returned, not left to its 30 s timeout.
    expect(answered).toContainEqual(['summary', 'error']);
    api.fault = undefined;
    setUser(5, 'high');
    expect((await p.poll()).eventTypes).toEqual(['user.risk_level_raised']);
  });
});

describe('an answer that contradicts itself or names nobody announces nothing (SPEC §1)', () => {
  /** The summary as it is, plus `extra` rows, all on one page. */
  const withExtraRows = (extra: unknown[]) => {
    api.fault = (r) => {
      if (r.call !== 'summary') return undefined;
      const rows = [...api.account(ACCOUNT).users.values(), ...extra];
      const total = api.account(ACCOUNT).users.size;
      return { status: 200, body: { ...success({ users: rows }), result_info: { page: 1, per_page: 1000, count: rows.length, total_count: total, total_pages: 1 } } };
    };
  };

  it('keeps a user listed twice with two levels at their state, and takes the level once a read agrees with itself', async () => {
    setUser(1, 'low');
    setUser(2, 'low');
    const p = poller({ lowered: true });
    await p.poll();
    // A fabricated duplicate: the real user stays low. No alert, and no all-clear after it.
    withExtraRows([{ ...user(1), max_risk_level: 'high' }]);
    expect((await p.poll()).eventTypes).toEqual([]);
    api.fault = undefined;
    expect((await p.poll()).eventTypes).toEqual([]);
    // A real rise caught mid-read: announced by the next read, which agrees with itself.
    withExtraRows([{ ...user(2), max_risk_level: 'high' }]);
    expect((await p.poll()).eventTypes).toEqual([]);
    api.fault = undefined;
    setUser(2, 'high');
    expect((await p.poll()).eventTypes).toEqual(['user.risk_level_raised']);
    const sink = new RecordingSink();
    await drain(sink);
    expect(raisedEmails(sink)).toEqual([`${user(2).email} low->high`]);
  });

  it('never makes a user of a record whose user_id is not a UUID', async () => {
    setUser(1, 'high');
    const p = poller({ firstRun: 'notify', lowered: true });
    withExtraRows(['not-a-uuid', '../../etc/passwd'].map((id) => ({ ...user(9), user_id: id })));
    await p.poll();
    api.fault = undefined;
    await p.poll();
    const sink = new RecordingSink();
    await drain(sink);
    expect(sink.received.flatMap((d) => d.events).map((e) => e.type)).toEqual(['user.risk_level_raised']);
    expect(raisedEmails(sink)).toEqual([`${user(1).email} null->high`]);
  });
});

describe('a record no store could hold never blocks its account', () => {
  it('commits a NUL in a name or email and an event_count past 2^31-1 on PostgreSQL, and announces the user', async () => {
    const postgres = await PostgresStore.open(await freshDatabase());
    try {
      const eve = { ...user(1, 'high'), name: 'Eve\u0000', email: 'eve\u0000@example.com', event_count: 3_000_000_000 };
      api.account(ACCOUNT).users.set(eve.user_id, eve);
      api.account(ACCOUNT).behaviors.set('imp_travel', { ...behavior('imp_travel'), description: 'NUL\u0000' });
      await postgres.lead([ACCOUNT]);
      const p = poller({ store: postgres, firstRun: 'notify' });
      expect((await p.poll()).eventTypes).toEqual(['user.risk_level_raised', 'behavior.added']);
      const stored = await postgres.loadUsers(ACCOUNT, [eve.user_id]);
      expect(stored.get(eve.user_id)).toMatchObject({ name: 'Eve\uFFFD', email: 'eve\uFFFD@example.com', event_count: 3_000_000_000 });
      // And the next rise of the account is not held up behind that record.
      setUser(2, 'high');
      expect((await p.poll()).eventTypes).toEqual(['user.risk_level_raised']);
    } finally {
      await postgres.close();
    }
  });
});

describe('first run: baseline or notify', () => {
  it('baseline stores the snapshot and announces nothing', async () => {
    setUser(1, 'high');
    api.account(ACCOUNT).behaviors.set('imp_travel', behavior('imp_travel'));
    const outcome = await poller().poll();
    expect(outcome).toMatchObject({ users: 1, eventTypes: [], deliveries: 0, firstRun: true });
    expect((await store.loadSnapshot(ACCOUNT)).snapshot?.userLevels.get(user(1).user_id)).toBe('high');
  });

  it('notify announces every user as raised from none and every behavior as added', async () => {
    setUser(1, 'high');
    setUser(2, 'low');
    api.account(ACCOUNT).behaviors.set('imp_travel', behavior('imp_travel'));
    await poller({ firstRun: 'notify' }).poll();
    const sink = new RecordingSink();
    await drain(sink);
    expect(sink.received.flatMap((d) => d.events).map((e) => e.type)).toEqual(['user.risk_level_raised', 'user.risk_level_raised', 'behavior.added']);
    expect(raisedEmails(sink)).toEqual([`${user(1).email} null->high`, `${user(2).email} null->low`]);
  });
});

describe('restarts: nothing lost, nothing announced twice', () => {
  it('delivers after a crash between the commit and the delivery', async () => {
    setUser(1, 'low');
    await poller().poll();
    setUser(1, 'high');
    await poller().poll();
    // Crash: the process dies before the worker ran. A new process opens the same file.
    await store.close();
    store = SqliteStore.open(file);
    const sink = new RecordingSink();
    await drain(sink);
    expect(raisedEmails(sink)).toEqual([`${user(1).email} low->high`]);
  });

  it('re-sends under the same event id when it died after the receiver accepted but before recording it', async () => {
    setUser(1, 'low');
    await poller().poll();
    setUser(1, 'high');
    await poller().poll();
    const first = new RecordingSink();
    // The receiver accepts; the process dies before the outcome reaches the store.
    const dying = new Proxy(store, {
      get(target, prop) {
        if (prop === 'recordOutcomes') return async () => Promise.reject(new Error('killed'));
        const value = Reflect.get(target, prop, target);
        return typeof value === 'function' ? value.bind(target) : value;
      },
    });
    await expect(drain(first, dying)).rejects.toThrow('killed');
    await store.close();
    store = SqliteStore.open(file);
    const second = new RecordingSink();
    await drain(second);
    expect(second.received.map((d) => d.events.map((e) => e.id))).toEqual(first.received.map((d) => d.events.map((e) => e.id)));
    // And once recorded, never again.
    const third = new RecordingSink();
    await drain(third);
    expect(third.received).toEqual([]);
  });

  it('announces changes made while riskwatch was down, and only those', async () => {
    setUser(1, 'low');
    setUser(2, 'medium');
    await poller().poll();
    await store.close();
    setUser(1, 'high'); // while down
    setUser(3, 'medium'); // new while down
    store = SqliteStore.open(file);
    await poller().poll();
    await poller().poll(); // a second poll after the restart finds nothing new
    const sink = new RecordingSink();
    await drain(sink);
    expect(raisedEmails(sink)).toEqual([`${user(1).email} low->high`, `${user(3).email} null->medium`]);
  });

  it('never commits over a snapshot another poller committed since it loaded its own', async () => {
    setUser(1, 'low');
    const a = poller();
    const b = poller();
    await a.poll();
    setUser(1, 'high');
    await b.poll(); // b loads version 1 and commits version 2 with the rise
    await expect(a.poll()).rejects.toThrow(/another poll committed first/); // a still holds version 1
    await a.poll(); // reloaded: nothing new to say
    const sink = new RecordingSink();
    await drain(sink);
    expect(raisedEmails(sink)).toEqual([`${user(1).email} low->high`]);
  });
});

describe('a summary that changes while it is paged never makes a present user look gone', () => {
  it('keeps a user a reset shifted onto a page already read, and announces the real departure one read later', async () => {
    await api.close();
    api = await FakeRiskApi.start({ maxPerPage: 2 });
    const [a, b, c, d, e] = [1, 2, 3, 4, 5].map((n) => ({ ...user(n), max_risk_level: 'low' as const }));
    for (const u of [a, b, c, d]) api.account(ACCOUNT).users.set(u!.user_id, u!);
    const p = poller({ lowered: true });
    await p.poll();
    // Between page 1 and page 2 of the next read: b is reset and e appears, so c moves to page 1.
    api.fault = (r) => {
      if (r.call === 'summary' && r.query.get('page') === '2') {
        api.fault = undefined;
        api.account(ACCOUNT).users.delete(b!.user_id);
        api.account(ACCOUNT).users.set(e!.user_id, e!);
      }
      return undefined;
    };
    await p.poll();
    await p.poll();
    await p.poll();
    const sink = new RecordingSink();
    await drain(sink);
    const said = sink.received.flatMap((d) => d.events).map((ev) => (ev.type.startsWith('user.') ? `${ev.type} ${(ev.data as { user: { email: string } }).user.email}` : ev.type));
    expect(said).toEqual([`user.risk_level_raised ${e!.email}`, `user.risk_level_lowered ${b!.email}`]);
  });
});

describe('a departure from a multi-page read is confirmed by the next read, even in another process', () => {
  it('announces the departure on the second read of a new process each time (once from cron), and the return after', async () => {
    await api.close();
    api = await FakeRiskApi.start({ maxPerPage: 2 });
    const users = [1, 2, 3, 4].map((n) => ({ ...user(n), max_risk_level: 'high' as const }));
    for (const u of users) api.account(ACCOUNT).users.set(u.user_id, u);
    await poller({ lowered: true }).poll();
    api.account(ACCOUNT).users.delete(users[1]!.user_id); // reset by an admin
    await poller({ lowered: true }).poll(); // missed once: kept, and marked in the store
    await poller({ lowered: true }).poll(); // missed again, by another process: gone
    api.account(ACCOUNT).users.set(users[1]!.user_id, users[1]!); // back, at high
    await poller({ lowered: true }).poll();
    const sink = new RecordingSink();
    await drain(sink);
    const said = sink.received.flatMap((d) => d.events).map((e) => (e.type.startsWith('user.') ? `${e.type} ${(e.data as { previous_level: string | null }).previous_level}` : e.type));
    expect(said).toEqual(['user.risk_level_lowered high', 'user.risk_level_raised null']);
  });
});

describe('users who leave the summary', () => {
  it('announce the fields last stored for them when lowered is on', async () => {
    setUser(1, 'high');
    await poller({ lowered: true }).poll();
    api.account(ACCOUNT).users.delete(user(1).user_id);
    await poller({ lowered: true }).poll();
    const sink = new RecordingSink();
    await drain(sink);
    const [event] = sink.received.flatMap((d) => d.events);
    expect(event).toMatchObject({
      type: 'user.risk_level_lowered',
      data: { user: { user_id: user(1).user_id, email: user(1).email, name: user(1).name }, previous_level: 'high', current_level: null },
    });
  });
});

describe('enrichment adds the risk events behind a rise, and never holds an alert back', () => {
  it('adds the most recent risk events of a raised user', async () => {
    setUser(1, 'low');
    await poller({ enrich: true }).poll();
    setUser(1, 'high');
    const events = Array.from({ length: 7 }, (_, i) => ({ id: `r${i}`, name: `Event ${i}`, risk_level: 'high' as const, timestamp: `2026-11-22T17:5${i}:00Z` }));
    api.account(ACCOUNT).events.set(user(1).user_id, events);
    await poller({ enrich: true }).poll();
    const sink = new RecordingSink();
    await drain(sink);
    const [event] = sink.received.flatMap((d) => d.events);
    expect(event?.type === 'user.risk_level_raised' && event.data.risk_events?.map((e) => e.id)).toEqual(['r6', 'r5', 'r4', 'r3', 'r2']);
  });

  it('sends the alert without risk events when the per-user call fails', async () => {
    setUser(1, 'low');
    await poller({ enrich: true }).poll();
    setUser(1, 'high');
    api.fault = (r) => (r.call === 'user' ? { status: 403 } : undefined);
    await poller({ enrich: true }).poll();
    const sink = new RecordingSink();
    await drain(sink);
    const [event] = sink.received.flatMap((d) => d.events);
    expect(event?.type).toBe('user.risk_level_raised');
    expect(event && 'risk_events' in event.data).toBe(false);
  });
});
