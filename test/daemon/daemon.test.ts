import { afterEach, describe, expect, it } from 'vitest';
import type { Clock } from '../../src/clock.ts';
import type { AccountConfig } from '../../src/config/config.ts';
import { Daemon, MAX_POLLS_IN_FLIGHT, type Readiness } from '../../src/daemon/daemon.ts';
import type { AccountPoller, PollOutcome } from '../../src/daemon/poller.ts';
import { silentLogger } from '../../src/log.ts';
import { DeliveryWorker } from '../../src/notify/worker.ts';
import type { StateStore } from '../../src/store/store.ts';
import { tokenCredential } from '../support/cloudflare.ts';

/** A clock whose sleeps wait until the test moves time past them; stepWall() moves only the wall clock, as NTP does. */
class ManualClock implements Clock {
  time = Date.UTC(2026, 10, 23, 6, 0, 0);
  #monotonic = 0;
  readonly #sleepers = new Set<{ at: number; resolve: () => void }>();
  now(): number {
    return this.time;
  }
  monotonic(): number {
    return this.#monotonic;
  }
  stepWall(ms: number): void {
    this.time += ms;
  }
  sleep(ms: number, signal?: AbortSignal): Promise<void> {
    signal?.throwIfAborted();
    return new Promise((resolve, reject) => {
      // Timers run on monotonic time, as Node's do.
      const sleeper = { at: this.#monotonic + Math.max(0, ms), resolve };
      this.#sleepers.add(sleeper);
      signal?.addEventListener('abort', () => {
        this.#sleepers.delete(sleeper);
        reject(signal.reason);
      });
    });
  }
  /** Moves time forward by `ms`, waking each sleeper in turn and letting what it starts run. */
  async advance(ms: number): Promise<void> {
    const until = this.#monotonic + ms;
    const passTo = (at: number) => {
      this.time += at - this.#monotonic;
      this.#monotonic = at;
    };
    for (;;) {
      await settle();
      const next = [...this.#sleepers].sort((a, b) => a.at - b.at)[0];
      if (!next || next.at > until) break;
      this.#sleepers.delete(next);
      passTo(Math.max(this.#monotonic, next.at));
      next.resolve();
    }
    passTo(until);
    await settle();
  }
}

const settle = () => new Promise<void>((resolve) => setImmediate(resolve));

const ACCOUNTS = ['a', 'b', 'c'].map(
  (name, i): AccountConfig => ({
    id: String(i).repeat(32),
    name,
    label: name,
    credential: tokenCredential(),
  }),
);

/** A poller that records its polls and can be held mid-poll. */
function fakePoller(account: AccountConfig, polls: string[], forgotten: string[]): AccountPoller {
  const outcome: PollOutcome = {
    users: 0,
    levels: { low: 0, medium: 0, high: 0 },
    silenced: 0,
    flappingSuppressed: 0,
    flapping: 0,
    eventTypes: [],
    rowsWritten: 1,
    deliveries: 0,
    firstRun: false,
  };
  return {
    account,
    forget: () => forgotten.push(account.label),
    poll: async () => {
      polls.push(account.label);
      return outcome;
    },
  } as unknown as AccountPoller;
}

/** The parts of a store the daemon asks about leadership, with `lead` under the test's control. */
function leadershipStore(lead: () => ReadonlySet<string>): StateStore {
  return {
    lead: async () => lead(),
    leadershipCheckMs: 1000,
    replica: 'test-replica',
    deliveryCounts: async () => new Map(),
    nextDueAt: async () => undefined,
  } as unknown as StateStore;
}

let daemon: Daemon | undefined;
afterEach(async () => {
  await daemon?.stop();
  daemon = undefined;
});

function start(store: StateStore, clock: ManualClock) {
  const polls: string[] = [];
  const forgotten: string[] = [];
  daemon = new Daemon({
    pollers: ACCOUNTS.map((a) => fakePoller(a, polls, forgotten)),
    worker: new DeliveryWorker({ store, sinks: [], clock, log: silentLogger }),
    store,
    clock,
    log: silentLogger,
    pollIntervalMs: 10_000,
    graceMs: 0,
  });
  daemon.start();
  return { daemon, polls, forgotten };
}

const ids = (...labels: string[]) => new Set(ACCOUNTS.filter((a) => labels.includes(a.label!)).map((a) => a.id));

describe('a replica polls only the accounts the store says it leads', () => {
  it('starts polling an account when it is led, stops (and forgets it) when another replica leads it, and reads it afresh when led again', async () => {
    const clock = new ManualClock();
    let led = ids('a', 'b');
    const { daemon, polls, forgotten } = start(
      leadershipStore(() => led),
      clock,
    );
    await clock.advance(30_000);
    expect(new Set(polls)).toEqual(new Set(['a', 'b']));
    expect(polls.filter((p) => p === 'a').length).toBe(4); // at start, then every 10 s
    expect(daemon.leads).toEqual(ids('a', 'b'));

    led = ids('b', 'c');
    polls.length = 0;
    await clock.advance(30_000);
    expect(new Set(polls)).toEqual(new Set(['b', 'c']));
    expect(daemon.leads).toEqual(ids('b', 'c'));
    // `a` is let go of as soon as its loop has stopped: a replica holds only the accounts it leads.
    expect(forgotten).toEqual(['a', 'b', 'c', 'a']);

    led = ids('a', 'b', 'c');
    await clock.advance(2000);
    // Led anew: whatever it remembered of `a` may be behind what another replica committed.
    expect(forgotten).toEqual(['a', 'b', 'c', 'a', 'a']);
  });

  it('counts only the accounts it leads for readiness', async () => {
    const clock = new ManualClock();
    const { daemon } = start(
      leadershipStore(() => ids('a')),
      clock,
    );
    await clock.advance(5000);
    expect(daemon.readiness(30_000)).toEqual({ ready: true, accounts: [{ account: 'a', ready: true, last_success_s_ago: expect.any(Number) }] });
  });
});

describe('polls in flight are capped: hundreds falling due at once never hold all their reads together', () => {
  it(`runs at most ${MAX_POLLS_IN_FLIGHT} at once, the others wait their turn in order, and none waiting starts once stopped`, async () => {
    const clock = new ManualClock();
    const accounts = Array.from(
      { length: MAX_POLLS_IN_FLIGHT + 10 },
      (_, i): AccountConfig => ({ id: i.toString(16).padStart(32, '0'), name: `n${i}`, label: `n${i}`, credential: tokenCredential() }),
    );
    const started: string[] = [];
    const finish = new Map<string, () => void>();
    let inFlight = 0;
    let most = 0;
    const pollers = accounts.map(
      (account) =>
        ({
          account,
          forget: () => {},
          recordFailure: async () => {},
          poll: (signal: AbortSignal) =>
            new Promise((resolve, reject) => {
              started.push(account.label!);
              most = Math.max(most, ++inFlight);
              const end = () => finish.delete(account.label!) && inFlight--;
              finish.set(account.label!, () => {
                end();
                resolve({ users: 0, levels: { low: 0, medium: 0, high: 0 }, silenced: 0, flappingSuppressed: 0, flapping: 0, eventTypes: [], rowsWritten: 1, deliveries: 0, firstRun: false });
              });
              signal.addEventListener('abort', () => {
                end();
                reject(signal.reason);
              });
            }),
        }) as unknown as AccountPoller,
    );
    const store = leadershipStore(() => new Set(accounts.map((a) => a.id)));
    const running = new Daemon({ pollers, worker: new DeliveryWorker({ store, sinks: [], clock, log: silentLogger }), store, clock, log: silentLogger, pollIntervalMs: 10_000, graceMs: 0 });
    daemon = running;
    running.start();
    // Every account's first poll falls due within a quarter of the interval.
    await clock.advance(5000);
    expect(most).toBe(MAX_POLLS_IN_FLIGHT);
    expect(started).toEqual(accounts.slice(0, MAX_POLLS_IN_FLIGHT).map((a) => a.label));

    // Each poll that commits hands its turn to the longest waiting.
    for (const label of ['n3', 'n0', 'n7']) finish.get(label)!();
    await settle();
    expect(started.slice(MAX_POLLS_IN_FLIGHT)).toEqual(accounts.slice(MAX_POLLS_IN_FLIGHT, MAX_POLLS_IN_FLIGHT + 3).map((a) => a.label));
    expect(most).toBe(MAX_POLLS_IN_FLIGHT);

    await running.stop();
    daemon = undefined;
    expect(started).toHaveLength(MAX_POLLS_IN_FLIGHT + 3);
    expect(inFlight).toBe(0);
  });
});

describe('while the store cannot be reached, nothing is polled, and polling resumes by itself', () => {
  it('pauses every account, is not ready (naming the store), retries with growing waits up to a lease, and resumes soon after it answers', async () => {
    const clock = new ManualClock();
    let down = false;
    let asked = 0;
    const { daemon, polls } = start(
      leadershipStore(() => {
        asked++;
        if (down) throw new Error('state database postgres://rw@db/rw: cannot take the lead: connection refused');
        return ids('a', 'b', 'c');
      }),
      clock,
    );
    await clock.advance(5000);
    expect(new Set(polls)).toEqual(new Set(['a', 'b', 'c']));

    down = true;
    await clock.advance(1000);
    polls.length = 0;
    asked = 0;
    await clock.advance(60_000);
    expect(polls).toEqual([]);
    expect(daemon.leads.size).toBe(0);
    // 1, 2, then every 3 s (a lease's length) rather than every second.
    expect(asked).toBeGreaterThanOrEqual(19);
    expect(asked).toBeLessThanOrEqual(22);
    const state = daemon.readiness(30_000);
    expect(state.ready).toBe(false);
    expect(state.store).toMatch(/connection refused/);

    down = false;
    // Within a lease (3 s) it asks again, and its accounts' first polls are spread over a quarter interval.
    await clock.advance(3000 + 2500);
    expect(new Set(polls)).toEqual(new Set(['a', 'b', 'c']));
    expect(daemon.readiness(30_000).store).toBeUndefined();
  });
});

/** Whether the daemon is ready, and the accounts /readyz lists as ready. */
function readyAccounts(daemon: { readiness(withinMs: number): Readiness }) {
  const state = daemon.readiness(30_000);
  return {
    ready: state.ready,
    accounts: state.accounts
      .filter((a) => a.ready)
      .map((a) => a.account)
      .sort(),
  };
}

describe('polling follows the monotonic clock, not the wall clock', () => {
  const HOUR = 3_600_000;
  const singleStore = { deliveryCounts: async () => new Map(), nextDueAt: async () => undefined } as unknown as StateStore;

  it('keeps polling every interval, and stays ready, when the wall clock steps back or forward an hour', async () => {
    const clock = new ManualClock();
    const { daemon, polls } = start(singleStore, clock);
    await clock.advance(5000);
    expect(polls.sort()).toEqual(['a', 'b', 'c']);

    polls.length = 0;
    clock.stepWall(-HOUR);
    await clock.advance(30_000);
    expect(polls.filter((p) => p === 'a')).toHaveLength(3);
    expect(polls.filter((p) => p === 'c')).toHaveLength(3);
    expect(readyAccounts(daemon)).toEqual({ ready: true, accounts: ['a', 'b', 'c'] });

    polls.length = 0;
    clock.stepWall(2 * HOUR);
    await clock.advance(10_000);
    expect(polls.sort()).toEqual(['a', 'b', 'c']);
    expect(readyAccounts(daemon)).toEqual({ ready: true, accounts: ['a', 'b', 'c'] });
  });
});
