import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { isUserEvent, type RiskEvent } from '../../src/detect/events.ts';
import { silentLogger } from '../../src/log.ts';
import { captureLogs } from '../support/logs.ts';
import { plannedDelivery } from '../../src/notify/route.ts';
import { DeliveryError, type Sink } from '../../src/notify/sink.ts';
import { DEFAULT_DELIVERY_POLICY, DeliveryWorker } from '../../src/notify/worker.ts';
import { Secret } from '../../src/config/secret.ts';
import { WebhookSink } from '../../src/notify/sinks/webhook.ts';
import { SqliteStore } from '../../src/store/sqlite.ts';
import { FakeClock } from '../support/fake-clock.ts';
import { Receiver } from '../support/receiver.ts';
import { ACCOUNT, riskUser, userEvent } from '../support/store-fixtures.ts';

/** A sink whose answer the test decides per attempt. */
class ScriptedSink implements Sink<readonly RiskEvent[]> {
  readonly grouping = 'event';
  readonly attempts: { at: number; delivery: { events: readonly RiskEvent[] } }[] = [];
  /** Ids of the events the sink accepted, in the order it accepted them. */
  readonly delivered: string[] = [];
  readonly name: string;
  readonly #clock: FakeClock;
  readonly #answer: (attempt: number, events: readonly RiskEvent[]) => Error | undefined;
  constructor(name: string, clock: FakeClock, answer: (attempt: number, events: readonly RiskEvent[]) => Error | undefined = () => undefined) {
    this.name = name;
    this.#clock = clock;
    this.#answer = answer;
  }
  render(events: readonly RiskEvent[]) {
    return events;
  }
  renderTest() {
    return [];
  }
  async send(events: readonly RiskEvent[]): Promise<void> {
    this.attempts.push({ at: this.#clock.now(), delivery: { events } });
    const error = this.#answer(this.attempts.length, events);
    if (error) throw error;
    this.delivered.push(...events.map((e) => e.id));
  }
}

const event = (n: number): RiskEvent => ({
  id: `event-${n}`,
  type: 'behavior.disabled',
  timestamp: '2026-11-22T18:00:00.000Z',
  data: {
    account: { id: 'acc', name: null },
    // One behavior per event: unrelated subjects, which the worker may send side by side.
    behavior: { id: `behavior_${n}`, name: 'Impossible travel', description: '', enabled: false, risk_level: 'high' },
    previous: { enabled: true, risk_level: 'high' },
  },
});

let dir: string;
let store: SqliteStore;
let clock: FakeClock;

beforeEach(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'rw-worker-'));
  clock = new FakeClock();
  store = SqliteStore.open(path.join(dir, 'state.db'));
});

afterEach(async () => {
  await store.close();
  fs.rmSync(dir, { recursive: true, force: true });
});

/** `store` behind a proxy that sees every record: `records` holds how many outcomes each transaction recorded; `refuse` makes the next ones fail. */
function watchedRecords(target: SqliteStore): { store: SqliteStore; records: number[]; refuse: (calls: number, error?: Error) => void } {
  const records: number[] = [];
  let refusals = 0;
  let refusal = new Error('refused');
  const refused = () => refusals > 0 && refusals-- > 0;
  const watched = new Proxy(target, {
    get(t, property) {
      if (property === 'recordOutcomes') {
        return async (...args: Parameters<SqliteStore['recordOutcomes']>) => {
          if (refused()) throw refusal;
          records.push(args[0].length);
          return t.recordOutcomes(...args);
        };
      }
      const value: unknown = Reflect.get(t, property, t);
      return typeof value === 'function' ? value.bind(t) : value;
    },
  });
  return {
    store: watched,
    records,
    refuse: (calls, error = refusal) => {
      refusals = calls;
      refusal = error;
    },
  };
}

/** A sink whose send waits until the worker aborts it (a receiver that never answers), then fails as a transport failure does. */
class HangingSink implements Sink<readonly RiskEvent[]> {
  readonly grouping = 'event';
  readonly name: string;
  /** The signal of each send begun, in order. */
  readonly signals: AbortSignal[] = [];
  constructor(name: string) {
    this.name = name;
  }
  render(events: readonly RiskEvent[]) {
    return events;
  }
  renderTest() {
    return [];
  }
  send(_events: readonly RiskEvent[], signal: AbortSignal): Promise<void> {
    this.signals.push(signal);
    return new Promise((_, reject) =>
      signal.addEventListener('abort', () => reject(new DeliveryError(`sink ${this.name}: no answer in time (timed out)`, { retryable: true, receiver: true, cause: signal.reason })), { once: true }),
    );
  }
}

/** Lets the event loop turn (timers aside) until `done` holds, at most `turns` times. */
async function turnsUntil(done: () => Promise<boolean> | boolean, turns = 200): Promise<void> {
  for (let i = 0; i < turns && !(await done()); i++) await new Promise((resolve) => setImmediate(resolve));
}

let version = 0;
async function commit(sinks: string[], count: number) {
  const events = Array.from({ length: count }, (_, i) => event(version * 100 + i));
  await store.commitPoll({
    accountId: 'acc',
    expectedVersion: version++,
    polledAt: clock.now(),
    delta: { upsertUsers: [], removeUserIds: [], upsertBehaviors: [], removeBehaviorIds: [] },
    events,
    deliveries: sinks.flatMap((sink) => events.map((e) => plannedDelivery(sink, 'acc', [e]))),
  });
}
beforeEach(() => {
  version = 0;
});

/** Commits `events` of ACCOUNT as one first poll, one delivery each to `sink`. */
async function commitEvents(sink: string, events: readonly RiskEvent[]): Promise<void> {
  await store.commitPoll({
    accountId: ACCOUNT.id,
    expectedVersion: 0,
    polledAt: clock.now(),
    delta: { upsertUsers: [], removeUserIds: [], upsertBehaviors: [], removeBehaviorIds: [] },
    events,
    deliveries: events.map((e) => plannedDelivery(sink, ACCOUNT.id, [e])),
  });
}

const worker = (sinks: Sink[]) => new DeliveryWorker({ store, sinks, clock, log: silentLogger, random: () => 0.5 });
const transient = (retryAfterMs?: number) => new DeliveryError('HTTP 503', { retryable: true, receiver: true, status: 503, ...(retryAfterMs ? { retryAfterMs } : {}) });

describe('the delivery worker: one retry policy around every sink', () => {
  it('delivers what is due and records it, so it is never sent again', async () => {
    const sink = new ScriptedSink('a', clock);
    await commit(['a'], 3);
    expect(await worker([sink]).drainDue()).toEqual({ attempted: 3, failed: 0 });
    expect(await worker([sink]).drainDue()).toEqual({ attempted: 0, failed: 0 });
    expect(sink.attempts.map((a) => a.delivery.events[0]!.id)).toEqual(['event-0', 'event-1', 'event-2']);
    expect(await store.deliveryCounts()).toEqual(new Map());
  });

  it('retries a transient failure after an exponential, jittered backoff, keeping the event id', async () => {
    const sink = new ScriptedSink('a', clock, (n) => (n < 3 ? transient() : undefined));
    await commit(['a'], 1);
    const w = worker([sink]);
    const start = clock.now();
    await w.drainDue();
    expect(await store.nextDueAt('a')).toBe(start + 1500); // 3/4 of the 2 s base
    clock.time = start + 1500;
    await w.drainDue();
    expect(await store.nextDueAt('a')).toBe(start + 1500 + 3000);
    clock.time = start + 4500;
    await w.drainDue();
    expect(sink.attempts.map((a) => a.delivery.events[0]!.id)).toEqual(['event-0', 'event-0', 'event-0']);
    expect(await store.deliveryCounts()).toEqual(new Map());
  });

  it('waits at least as long as Retry-After says', async () => {
    const sink = new ScriptedSink('a', clock, (n) => (n === 1 ? transient(90_000) : undefined));
    await commit(['a'], 1);
    await worker([sink]).drainDue();
    expect(await store.nextDueAt('a')).toBe(clock.now() + 90_000);
  });

  it('dead-letters a permanent refusal at once', async () => {
    const sink = new ScriptedSink('a', clock, () => new DeliveryError('HTTP 404: no such webhook', { retryable: false, status: 404 }));
    await commit(['a'], 1);
    expect(await worker([sink]).drainDue()).toEqual({ attempted: 1, failed: 1 });
    expect(await store.deliveryCounts()).toEqual(new Map([['a', { pending: 0, dead: 1 }]]));
    expect(await store.nextDueAt('a')).toBeUndefined();
  });

  it("keeps a receiver's raw reply storable: a NUL in it (PostgreSQL refuses one) is stored as U+FFFD", async () => {
    const sink = new ScriptedSink('a', clock, () => new DeliveryError('sink a: Invalid greeting. response=220\0mail', { retryable: false }));
    await commit(['a'], 1);
    await worker([sink]).drainDue();
    const [dead] = await store.listDeliveries({ state: 'dead' });
    expect(dead!.lastError).toBe('sink a: Invalid greeting. response=220\uFFFDmail');
  });

  it('logs a delivery at info, and a dead letter, naming the events and whom they are about', async () => {
    const logs = captureLogs('info');
    await commit(['ok', 'refused'], 1);
    const sinks = [new ScriptedSink('ok', clock), new ScriptedSink('refused', clock, () => new DeliveryError('HTTP 410 (permanent): "gone"', { retryable: false, status: 410 }))];
    await new DeliveryWorker({ store, sinks, clock, log: logs.log, random: () => 0.5 }).drainDue();
    const [sent] = logs.lines().filter((l) => l.msg === 'delivered');
    const [dead] = logs.lines().filter((l) => l.msg === 'delivery refused permanently; dead-lettered');
    const [only] = (await store.listEvents({ since: 0, limit: 1 })).map((r) => r.event);
    const who = isUserEvent(only!) ? only.data.user.email : `behavior ${only!.data.behavior.id}`;
    expect(sent).toMatchObject({ level: 30, sink: 'ok', types: [only!.type], events: [only!.id], about: [who] });
    expect(dead).toMatchObject({ sink: 'refused', types: [only!.type], events: [only!.id], about: [who], err: 'HTTP 410 (permanent): "gone"' });
  });

  it('dead-letters a delivery still failing past its max age, and not before', async () => {
    const sink = new ScriptedSink('a', clock, () => transient());
    await commit(['a'], 1);
    const w = worker([sink]);
    const start = clock.now();
    for (;;) {
      await w.drainDue();
      const due = await store.nextDueAt('a');
      if (due === undefined) break;
      clock.time = due;
    }
    expect(clock.now() - start).toBeLessThanOrEqual(DEFAULT_DELIVERY_POLICY.maxAgeMs);
    expect(clock.now() - start).toBeGreaterThan(DEFAULT_DELIVERY_POLICY.maxAgeMs - DEFAULT_DELIVERY_POLICY.maxDelayMs);
    expect(await store.deliveryCounts()).toEqual(new Map([['a', { pending: 0, dead: 1 }]]));
  });

  it('does not let a failing sink hold up a healthy one', async () => {
    const dead = new ScriptedSink('dead', clock, () => transient());
    const healthy = new ScriptedSink('healthy', clock);
    await commit(['dead', 'healthy'], 10);
    await worker([dead, healthy]).drainDue();
    expect(healthy.attempts).toHaveLength(10);
    expect(await store.deliveryCounts()).toEqual(new Map([['dead', { pending: 10, dead: 0 }]]));
  });

  it('dead-letters an error that does not say it is retryable (a bug will not fix itself)', async () => {
    const sink = new ScriptedSink('a', clock, () => new Error('bug'));
    await commit(['a'], 1);
    await worker([sink]).drainDue();
    expect(await store.deliveryCounts()).toEqual(new Map([['a', { pending: 0, dead: 1 }]]));
  });

  it("holds a struggling sink's queue, so a receiver that was down gets everything in commit order", async () => {
    let recoverAt = Infinity;
    const sink = new ScriptedSink('a', clock, () => (clock.now() < recoverAt ? transient() : undefined));
    const delivered = sink.delivered;
    const w = worker([sink]);
    await commit(['a'], 6);
    await w.drainDue(); // the first batch fails: the whole queue waits
    expect(await store.claimDue('a', clock.now(), 10)).toEqual([]);
    await commit(['a'], 2); // more arrive while the receiver is down: they wait too
    recoverAt = clock.now() + 60_000;
    for (let i = 0; i < 100 && delivered.length < 8; i++) {
      const due = await store.nextDueAt('a');
      if (due !== undefined) clock.time = Math.max(clock.time, due);
      await w.drainDue();
    }
    expect(delivered).toEqual(['event-0', 'event-1', 'event-2', 'event-3', 'event-4', 'event-5', 'event-100', 'event-101']);
  });

  it('queues deliveries committed while the sink is held behind the held ones, even once the receiver is back', async () => {
    let down = true;
    const sink = new ScriptedSink('a', clock, () => (down ? transient() : undefined));
    const delivered = sink.delivered;
    const w = worker([sink]);
    await commit(['a'], 1);
    await w.drainDue();
    down = false; // back, but the first delivery's retry is not due yet
    await commit(['a'], 1);
    await w.drainDue();
    expect(delivered).toEqual([]);
    clock.time = (await store.nextDueAt('a'))!;
    await w.drainDue();
    expect(delivered).toEqual(['event-0', 'event-100']);
  });

  it('lets a payload the receiver keeps failing with a plain 500 wait alone, without stalling the sink', async () => {
    const sink = new ScriptedSink('a', clock, (_attempt, events) => (events[0]!.id === 'event-0' ? new DeliveryError('HTTP 500', { retryable: true, status: 500 }) : undefined));
    const delivered = sink.delivered;
    await commit(['a'], 6);
    const w = worker([sink]);
    await w.drainDue(); // the first batch of four
    await w.drainDue(); // the rest, not held back by event-0
    expect(delivered).toEqual(['event-1', 'event-2', 'event-3', 'event-4', 'event-5']);
    expect(await store.deliveryCounts()).toEqual(new Map([['a', { pending: 1, dead: 0 }]]));
  });

  it('does not hold back new deliveries behind a payload that alone keeps failing with a 500', async () => {
    const sink = new ScriptedSink('a', clock, (n) => (n === 1 ? new DeliveryError('HTTP 500', { retryable: true, status: 500 }) : undefined));
    await commit(['a'], 1);
    const w = worker([sink]);
    await w.drainDue();
    await commit(['a'], 1);
    await w.drainDue();
    expect(sink.attempts.map((a) => a.delivery.events[0]!.id)).toEqual(['event-0', 'event-100']);
  });

  it('keeps commit order among deliveries that failed together, whatever their jitter', async () => {
    let down = true;
    let roll = 0;
    const jitter = [0.99, 0.99, 0];
    const sink = new ScriptedSink('a', clock, () => (down ? transient() : undefined));
    const delivered = sink.delivered;
    const w = new DeliveryWorker({ store, sinks: [sink], clock, log: silentLogger, random: () => jitter[roll++ % 3]! });
    await commit(['a'], 3);
    await w.drainDue();
    down = false;
    for (let i = 0; i < 10 && delivered.length < 3; i++) {
      clock.time = Math.max(clock.time, (await store.nextDueAt('a')) ?? clock.time);
      await w.drainDue();
    }
    expect(delivered).toEqual(['event-0', 'event-1', 'event-2']);
  });
});

describe('one subject at a time, against a real receiver: a user’s later event waits for their earlier one', () => {
  let receiver: Receiver;
  const arrivals: string[] = [];
  beforeEach(async () => {
    arrivals.length = 0;
    receiver = await Receiver.start();
  });
  afterEach(async () => {
    await receiver.close();
  });

  const webhook = () =>
    new WebhookSink({ type: 'webhook', name: 'hook', url: new Secret(receiver.url()), secret: undefined, headers: {}, minLevel: 'low', events: undefined, accounts: undefined }, { clock });
  // The receiver was down across two polls: user 1's raise and reset are both pending, beside an unrelated rise.
  const raise = userEvent('evt-raise', riskUser(1, 'high'), 'low', 'high');
  const reset = userEvent('evt-reset', riskUser(1, 'high'), 'high', null);
  const unrelated = userEvent('evt-other', riskUser(2, 'high'), null, 'high');
  async function bothPending(): Promise<void> {
    await commitEvents('hook', [raise, unrelated, reset]);
  }
  it('on a slow receiver, the reset is sent only after the raise was answered; the unrelated rise goes alongside', async () => {
    // What the receiver had answered (accepted) when each request arrived.
    const answeredBefore = new Map<string, string[]>();
    receiver.answer = (request) => {
      answeredBefore.set(
        String(request.headers['webhook-id']),
        receiver.accepted.map((r) => String(r.headers['webhook-id'])),
      );
      return { status: 200, delayMs: 500 };
    };
    await bothPending();
    expect(await worker([webhook()]).drainDue()).toEqual({ attempted: 3, failed: 0 });
    expect(receiver.accepted.map((r) => r.headers['webhook-id'])).toEqual(['evt-raise', 'evt-other', 'evt-reset']);
    expect(answeredBefore.get('evt-reset')).toContain('evt-raise');
    // The unrelated rise was in flight with the raise, not queued behind it.
    expect(answeredBefore.get('evt-other')).toEqual([]);
  });

  it('a 503 on the raise holds the reset back: it goes after the raise is delivered, never alone before it', async () => {
    let refused = false;
    receiver.answer = (request) => {
      arrivals.push(String(request.headers['webhook-id']));
      if (request.headers['webhook-id'] === 'evt-raise' && !refused) {
        refused = true;
        return { status: 503 };
      }
      return { status: 200 };
    };
    await bothPending();
    const w = worker([webhook()]);
    await w.drainDue();
    expect(arrivals).not.toContain('evt-reset');
    clock.time = (await store.nextDueAt('hook'))!;
    await w.drainDue();
    const accepted = receiver.accepted.map((r) => String(r.headers['webhook-id']));
    expect(accepted.filter((id) => id !== 'evt-other')).toEqual(['evt-raise', 'evt-reset']);
    expect(await store.deliveryCounts()).toEqual(new Map());
  });
});

describe('an outcome the store cannot take at once (a database restarting)', () => {
  it('is recorded once the store answers: not sent again, and the next delivery of the same subject is not held back', async () => {
    const sink = new ScriptedSink('a', clock);
    const ev = (n: number, from: 'low' | 'medium', to: 'medium' | 'high') => userEvent(`evt-${n}`, riskUser(1, to), from, to, clock.now());
    const [first, second] = [ev(1, 'low', 'medium'), ev(2, 'medium', 'high')];
    await commitEvents('a', [first, second]);
    const restarting = watchedRecords(store);
    restarting.refuse(2, new Error('state database postgres://rw@db/rw: cannot record the outcome: the database system is starting up'));
    const logs = captureLogs();
    const w = new DeliveryWorker({ store: restarting.store, sinks: [sink], clock, log: logs.log, random: () => 0.5 });
    expect(await w.drainDue()).toEqual({ attempted: 2, failed: 0 });
    expect(sink.delivered).toEqual(['evt-1', 'evt-2']);
    expect(sink.attempts).toHaveLength(2);
    expect(await store.deliveryCounts()).toEqual(new Map());
    expect(logs.lines().map((l) => l.msg)).toEqual(expect.arrayContaining(['could not record the outcome; trying again until the store answers', 'outcome recorded once the store answered again']));
  });

  it('records a whole batch once the store answers: each delivery sent once, every outcome recorded, and told to metrics once', async () => {
    const sink = new ScriptedSink('a', clock, (_attempt, events) => (events[0]!.id === 'event-2' ? new DeliveryError('HTTP 404', { retryable: false, status: 404 }) : undefined));
    await commit(['a'], 5);
    const restarting = watchedRecords(store);
    restarting.refuse(3, new Error('state database postgres://rw@db/rw: cannot record 5 delivery outcomes: connection refused'));
    const told: string[] = [];
    const w = new DeliveryWorker({ store: restarting.store, sinks: [sink], clock, log: silentLogger, random: () => 0.5, onOutcome: (name, kind) => told.push(`${name} ${kind}`) });
    expect(await w.drainDue()).toEqual({ attempted: 5, failed: 1 });
    expect(sink.attempts).toHaveLength(5);
    expect(restarting.records).toEqual([5]);
    expect(await store.deliveryCounts()).toEqual(new Map([['a', { pending: 0, dead: 1 }]]));
    expect(told.sort()).toEqual(['a dead', 'a delivered', 'a delivered', 'a delivered', 'a delivered']);
  });

  it('re-sends a batch under the same ids when the process died between the sends and their record, and only once', async () => {
    await commit(['a'], 4);
    const first = new ScriptedSink('a', clock);
    const dying = watchedRecords(store);
    dying.refuse(Infinity, new Error('killed'));
    // The receiver accepts all four; the outcomes never reach the store (the worker's patience runs out, as a dying process's would).
    await expect(new DeliveryWorker({ store: dying.store, sinks: [first], clock, log: silentLogger }).drainDue()).rejects.toThrow('killed');
    expect(first.delivered).toHaveLength(4);
    await store.close();
    store = SqliteStore.open(path.join(dir, 'state.db'));
    const second = new ScriptedSink('a', clock);
    expect(await worker([second]).drainDue()).toEqual({ attempted: 4, failed: 0 });
    expect(second.delivered).toEqual(first.delivered);
    expect(await worker([new ScriptedSink('a', clock)]).drainDue()).toEqual({ attempted: 0, failed: 0 });
  });
});

describe('outcomes that settle together are recorded together', () => {
  it('records the outcomes of deliveries answered together in one transaction, not one each', async () => {
    const sink = new ScriptedSink('a', clock, (_attempt, events) => (events[0]!.id === 'event-3' ? new DeliveryError('HTTP 404', { retryable: false, status: 404 }) : undefined));
    await commit(['a'], 10);
    const watched = watchedRecords(store);
    const told: number[] = [];
    const w = new DeliveryWorker({
      store: watched.store,
      sinks: [sink],
      clock,
      log: silentLogger,
      // How many outcomes were recorded when each one is told to metrics: never one not yet recorded.
      onOutcome: () => told.push(watched.records.reduce((sum, n) => sum + n, 0)),
    });
    expect(await w.drainDue()).toEqual({ attempted: 10, failed: 1 });
    expect(watched.records).toEqual([10]);
    expect(told).toEqual(Array.from({ length: 10 }, () => 10));
    expect(await store.deliveryCounts()).toEqual(new Map([['a', { pending: 0, dead: 1 }]]));
  });

  it('lets a slow send hold its own place only: the deliveries after it go out, and are recorded, while it is in flight', async () => {
    const fast = new ScriptedSink('a', clock);
    const slow = Promise.withResolvers<void>();
    const sink: Sink<readonly RiskEvent[]> = {
      name: 'a',
      grouping: 'event',
      render: (events) => events,
      renderTest: () => [],
      send: async (events) => {
        if (events[0]!.id === 'event-0') await slow.promise;
        await fast.send(events);
      },
    };
    await commit(['a'], 12);
    const w = new DeliveryWorker({ store, sinks: [sink], clock, log: silentLogger, policy: { ...DEFAULT_DELIVERY_POLICY, concurrency: 4 } });
    const drained = w.drainDue();
    try {
      await turnsUntil(async () => (await store.deliveryCounts()).get('a')?.pending === 1);
      // Four at a time, but not four by four: eleven went out behind the slow one, and are recorded.
      expect(fast.delivered).toEqual(Array.from({ length: 11 }, (_, i) => `event-${i + 1}`));
      expect(await store.deliveryCounts()).toEqual(new Map([['a', { pending: 1, dead: 0 }]]));
    } finally {
      slow.resolve();
    }
    expect(await drained).toEqual({ attempted: 12, failed: 0 });
    expect(await store.deliveryCounts()).toEqual(new Map());
  });

  it('keeps one subject in order while sending in a window: a user’s later event goes only once the earlier one is recorded', async () => {
    const ev = (n: number, user: number, from: 'low' | 'medium' | null, to: 'medium' | 'high') => userEvent(`evt-${n}`, riskUser(user, to), from, to, clock.now());
    // User 1 rises twice; users 2 to 7 once each, committed between.
    const events = [ev(1, 1, 'low', 'medium'), ...[2, 3, 4, 5, 6, 7].map((u) => ev(u, u, null, 'high')), ev(8, 1, 'medium', 'high')];
    await commitEvents('a', events);
    // What was still pending (in flight or not yet sent) when each event was sent.
    const pendingAtSend = new Map<string, string[]>();
    const sink: Sink<readonly RiskEvent[]> = {
      name: 'a',
      grouping: 'event',
      render: (e) => e,
      renderTest: () => [],
      send: async (sent) => {
        pendingAtSend.set(
          sent[0]!.id,
          (await store.listDeliveries({ sink: 'a', state: 'pending' })).flatMap((row) => row.eventIds),
        );
      },
    };
    const w = new DeliveryWorker({ store, sinks: [sink], clock, log: silentLogger, policy: { ...DEFAULT_DELIVERY_POLICY, concurrency: 3 } });
    expect(await w.drainDue()).toEqual({ attempted: 8, failed: 0 });
    expect(pendingAtSend.get('evt-1')).toContain('evt-1');
    expect(pendingAtSend.get('evt-8')).not.toContain('evt-1');
    expect(await store.deliveryCounts()).toEqual(new Map());
  });
});

describe('sends cut off: by their timeout, and by shutdown', () => {
  it('gives up on a send that takes longer than sendTimeoutMs, as a retryable failure', async () => {
    const sink = new HangingSink('a');
    await commit(['a'], 1);
    const w = new DeliveryWorker({ store, sinks: [sink], clock, log: silentLogger, random: () => 0.5, policy: { ...DEFAULT_DELIVERY_POLICY, sendTimeoutMs: 20 } });
    expect(await w.drainDue()).toEqual({ attempted: 1, failed: 1 });
    expect(sink.signals[0]!.reason).toMatchObject({ name: 'TimeoutError' });
    const [row] = await store.listDeliveries({ sink: 'a' });
    expect(row).toMatchObject({ state: 'pending', attempts: 1, lastError: 'sink a: no answer in time (timed out)' });
    expect(row!.nextAttemptAt).toBeGreaterThan(clock.now());
  });

  it('cuts off a send still in flight when the grace period ends, and frees its delivery for the next process at once', async () => {
    const sink = new HangingSink('a');
    await commit(['a'], 1);
    const w = worker([sink]);
    w.start();
    await turnsUntil(() => sink.signals.length > 0);
    await w.stop(1000);
    expect(sink.signals).toHaveLength(1);
    expect(sink.signals[0]!.aborted).toBe(true);
    const [row] = await store.listDeliveries({ sink: 'a' });
    expect(row).toMatchObject({ state: 'pending', attempts: 1, lastError: 'interrupted by shutdown' });
    expect(eventIdsOf(await store.claimDue('a', clock.now(), 10))).toEqual([['event-0']]);
  });
});

const eventIdsOf = (deliveries: readonly { events: readonly RiskEvent[] }[]) => deliveries.map((d) => d.events.map((e) => e.id));
