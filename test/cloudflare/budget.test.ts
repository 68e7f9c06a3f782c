import { describe, expect, it } from 'vitest';
import { BudgetRegistry, RATE_WINDOW_MS, RequestBudget } from '../../src/cloudflare/budget.ts';
import { FakeClock } from '../support/fake-clock.ts';

describe('RequestBudget: never more than the limit in any five minutes', () => {
  it('grants up to the limit at once, then one more each time the oldest grant leaves the window', async () => {
    const clock = new FakeClock();
    const budget = new RequestBudget(3, clock);
    const start = clock.now();
    const times: number[] = [];
    for (let i = 0; i < 7; i++) {
      await budget.acquire();
      times.push(clock.now() - start);
    }
    expect(times).toEqual([0, 0, 0, RATE_WINDOW_MS, RATE_WINDOW_MS, RATE_WINDOW_MS, 2 * RATE_WINDOW_MS]);
  });

  it('serves waiters first come, first served, so accounts sharing a credential take turns', async () => {
    const clock = new FakeClock();
    const budget = new RequestBudget(1, clock);
    const order: string[] = [];
    const ask = (who: string) => budget.acquire().then(() => order.push(who));
    await Promise.all([ask('a1'), ask('a2'), ask('b1'), ask('a3'), ask('b2')]);
    expect(order).toEqual(['a1', 'a2', 'b1', 'a3', 'b2']);
  });

  it('holds every request back until a Retry-After block has passed', async () => {
    const clock = new FakeClock();
    const budget = new RequestBudget(100, clock);
    const start = clock.now();
    budget.blockUntil(start + 42_000);
    await budget.acquire();
    expect(clock.now() - start).toBe(42_000);
  });

  it('spaces requests out when Cloudflare says few are left, and stops when they recover', async () => {
    const clock = new FakeClock();
    const budget = new RequestBudget(1200, clock);
    budget.observeRemaining(60, 1200);
    await budget.acquire();
    await budget.acquire();
    expect(clock.sleeps).toEqual([500]);
    budget.observeRemaining(1000, 1200);
    await budget.acquire();
    expect(clock.sleeps).toEqual([500]);
  });

  it('lets a caller give up without stalling the queue behind it', async () => {
    const clock = new FakeClock();
    const budget = new RequestBudget(1, clock);
    await budget.acquire();
    const gaveUp = new AbortController();
    gaveUp.abort(new Error('stopped'));
    await expect(budget.acquire(gaveUp.signal)).rejects.toThrow('stopped');
    await budget.acquire();
    expect(clock.now()).toBeGreaterThan(0);
  });

  it('tells a queued caller that gives up at once, without waiting for its turn', async () => {
    // A clock whose sleeps never end: once the window is full, the next in line waits forever.
    const neverSettles = new Promise<void>(() => {});
    const stuckClock = { now: () => 0, monotonic: () => 0, sleep: () => neverSettles };
    const stuck = new RequestBudget(1, stuckClock);
    await stuck.acquire();
    void stuck.acquire();
    const gaveUp = new AbortController();
    const waiting = stuck.acquire(gaveUp.signal);
    gaveUp.abort(new Error('enrichment deadline'));
    await expect(waiting).rejects.toThrow('enrichment deadline');
  });
});

describe('RequestBudget: a wall clock that steps neither stalls nor bursts it', () => {
  const HOUR = 3_600_000;

  it('frees the window five minutes after the oldest grant, though the wall clock stepped back an hour', async () => {
    const clock = new FakeClock();
    const budget = new RequestBudget(3, clock);
    for (let i = 0; i < 3; i++) await budget.acquire();
    clock.stepWall(-HOUR);
    await budget.acquire();
    expect(clock.sleeps).toEqual([RATE_WINDOW_MS]);
  });

  it('keeps the window full when the wall clock steps forward an hour', async () => {
    const clock = new FakeClock();
    const budget = new RequestBudget(3, clock);
    for (let i = 0; i < 3; i++) await budget.acquire();
    clock.stepWall(HOUR);
    await budget.acquire();
    expect(clock.sleeps).toEqual([RATE_WINDOW_MS]);
  });

  it('ends a Retry-After block when it was due, whichever way the wall clock stepped', async () => {
    for (const step of [-HOUR, HOUR]) {
      const clock = new FakeClock();
      const budget = new RequestBudget(100, clock);
      budget.blockUntil(clock.now() + 42_000);
      clock.stepWall(step);
      await budget.acquire();
      expect(clock.sleeps).toEqual([42_000]);
    }
  });
});

describe('BudgetRegistry.withLimit: a reload that changes requests_per_5min', () => {
  it('keeps the requests already in the window: 1000 of 1200 used, reloaded to 1100, allows only 100 more', async () => {
    const clock = new FakeClock();
    const budgets = new BudgetRegistry(1200, clock);
    for (let i = 0; i < 1000; i++) await budgets.for('cred').acquire();
    clock.time += 60_000;
    const reloaded = budgets.withLimit(1100);
    for (let i = 0; i < 100; i++) await reloaded.for('cred').acquire();
    expect(clock.sleeps).toEqual([]);
    await reloaded.for('cred').acquire();
    // The 101st waits for the first of the 1000 to leave the window.
    expect(clock.sleeps).toEqual([RATE_WINDOW_MS - 60_000]);
  });

  it('to a limit below what the window holds, waits until enough of them leave it; a block stays', async () => {
    const clock = new FakeClock();
    const budgets = new BudgetRegistry(10, clock);
    for (let i = 0; i < 10; i++) {
      await budgets.for('cred').acquire();
      clock.time += 1000;
    }
    const reloaded = budgets.withLimit(4);
    await reloaded.for('cred').acquire();
    // Four in any five minutes: the newest four were granted 6 to 9 s after the first; the 7th must leave.
    expect(clock.sleeps).toEqual([RATE_WINDOW_MS + 6000 - 10_000]);

    const blocked = new BudgetRegistry(10, clock);
    blocked.for('cred').blockUntil(clock.now() + 42_000);
    const after = blocked.withLimit(20);
    expect(after.for('cred').blockedUntil).toBe(clock.now() + 42_000);
  });
});
