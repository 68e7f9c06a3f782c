import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { allocate, BudgetRegistry, type GrantPool, RATE_WINDOW_MS, RequestBudget } from '../../src/cloudflare/budget.ts';
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

describe('allocate: the fleet budget shared by accounts led (SPEC §11)', () => {
  const window = (spent: Record<string, number>, leads: Record<string, number>, want = 100, me = 'a', limit = 60) => ({
    limit,
    want,
    me,
    spent: new Map(Object.entries(spent)),
    leads: new Map(Object.entries(leads)),
  });

  it('never grants past what the window has left, whoever asks', () => {
    expect(allocate(window({ a: 10, b: 20, c: 30 }, { a: 4, b: 4, c: 4 }))).toBe(0);
    expect(allocate(window({ a: 0, b: 0, c: 58 }, { a: 1 }))).toBe(2);
    expect(allocate(window({}, {}, 5))).toBe(5);
  });

  it('keeps what the others are due by the accounts they lead, and lets a replica use its own share', () => {
    // Three replicas of four accounts each: 20 apiece.
    expect(allocate(window({}, { a: 4, b: 4, c: 4 }))).toBe(20);
    expect(allocate(window({ a: 20 }, { a: 4, b: 4, c: 4 }))).toBe(0);
    expect(allocate(window({ a: 20, b: 20, c: 5 }, { a: 4, b: 4, c: 4 }))).toBe(0);
    // A replica leading 10 of 12 accounts is due 50.
    expect(allocate(window({ b: 10 }, { a: 10, b: 2 }))).toBe(50);
    // Past its own share, only what the others are not due: b still is (10 of 30), then no longer (it went over).
    expect(allocate(window({ a: 30, b: 10 }, { a: 1, b: 1 }))).toBe(0);
    expect(allocate(window({ a: 20, b: 35 }, { a: 1, b: 1 }))).toBe(5);
  });

  it('a replica that leads nothing yet still gets a share of one account', () => {
    expect(allocate(window({}, { b: 11 }))).toBe(5);
  });

  it('a replica whose leases lapsed is due nothing: its share goes back to the others', () => {
    expect(allocate(window({ a: 20, b: 20 }, { a: 4, b: 4, c: 4 }))).toBe(0);
    // c's four accounts went to a and b: each is now due 30.
    expect(allocate(window({ a: 20, b: 20 }, { a: 6, b: 6 }))).toBe(10);
  });

  it('over any sequence of asks, the total stays within the limit and every replica that keeps asking gets its share', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 500 }), fc.array(fc.integer({ min: 1, max: 10 }), { minLength: 1, maxLength: 5 }), fc.array(fc.nat(), { maxLength: 300 }), (limit, leadCounts, asks) => {
        const replicas = leadCounts.map((_, i) => `r${i}`);
        const leads = new Map(replicas.map((r, i) => [r, leadCounts[i]!]));
        const spent = new Map<string, number>();
        for (const ask of asks) {
          const me = replicas[ask % replicas.length]!;
          const granted = allocate({ limit, want: 1 + (ask % 7), me, spent, leads });
          spent.set(me, (spent.get(me) ?? 0) + granted);
        }
        // Then everyone asks until nothing more is granted.
        for (let round = 0; round < limit + 1; round++) {
          for (const me of replicas) spent.set(me, (spent.get(me) ?? 0) + allocate({ limit, want: 1, me, spent, leads }));
        }
        const total = [...spent.values()].reduce((a, b) => a + b, 0);
        expect(total).toBeLessThanOrEqual(limit);
        const all = leadCounts.reduce((a, b) => a + b, 0);
        for (const [i, r] of replicas.entries()) expect(spent.get(r) ?? 0).toBeGreaterThanOrEqual(Math.floor((limit * leadCounts[i]!) / all));
        expect(total).toBe(limit);
      }),
    );
  });
});

describe('RequestBudget with a fleet: batches from the pool, settled when unused', () => {
  /** A pool on this process's clock: one replica asking, the others' spending given. */
  function pool(limit: number, clock: FakeClock, options: { leaseMs?: number; blockedMs?: number } = {}) {
    const batches = new Map<number, { at: number; reserved: number }>();
    const calls: { want: number; settle?: { batch: number; unused: number } }[] = [];
    const blocks: number[] = [];
    let next = 1;
    const grants: GrantPool = {
      async take(request) {
        calls.push({ want: request.want, ...(request.settle ? { settle: request.settle } : {}) });
        if (request.settle) batches.get(request.settle.batch)!.reserved -= request.settle.unused;
        for (const [id, b] of batches) if (b.at <= clock.now() - RATE_WINDOW_MS) batches.delete(id);
        const spent = [...batches.values()].reduce((a, b) => a + b.reserved, 0);
        const granted = allocate({ limit, want: request.want, me: 'me', spent: new Map([['me', spent]]), leads: new Map() });
        const blockedMs = options.blockedMs ?? 0;
        if (granted === 0) {
          const oldest = Math.min(...[...batches.values()].map((b) => b.at));
          return { granted, batch: undefined, waitMs: oldest + RATE_WINDOW_MS - clock.now(), blockedMs, leaseMs: options.leaseMs ?? 30_000 };
        }
        batches.set(next, { at: clock.now(), reserved: granted });
        return { granted, batch: next++, waitMs: 0, blockedMs, leaseMs: options.leaseMs ?? 30_000 };
      },
      async settle(_credential, batch, unused) {
        batches.get(batch)!.reserved -= unused;
      },
      async block(_credential, forMs) {
        blocks.push(forMs);
      },
    };
    return { grants, calls, blocks, batches };
  }

  it('asks the pool once per batch, not once per request', async () => {
    const clock = new FakeClock();
    const { grants, calls } = pool(100, clock);
    const budgets = new BudgetRegistry(100, clock, grants);
    const budget = budgets.for('cred', ['acct']);
    await Promise.all(Array.from({ length: 10 }, () => budget.acquire()));
    expect(calls.length).toBeLessThanOrEqual(4);
    expect(calls[0]!.want).toBe(5);
  });

  it('never grants more than the fleet allows in a window, waiting as the pool says', async () => {
    const clock = new FakeClock();
    const { grants } = pool(6, clock);
    const budget = new BudgetRegistry(6, clock, grants).for('cred');
    const start = clock.now();
    const times: number[] = [];
    for (let i = 0; i < 8; i++) {
      await budget.acquire();
      times.push(clock.now() - start);
    }
    expect(times.slice(0, 6)).toEqual([0, 0, 0, 0, 0, 0]);
    expect(times[6]).toBeGreaterThanOrEqual(RATE_WINDOW_MS);
  });

  it('does not use a batch past its lease, and says what it left unused', async () => {
    const clock = new FakeClock();
    const { grants, calls } = pool(100, clock, { leaseMs: 1000 });
    const budget = new BudgetRegistry(100, clock, grants).for('cred');
    await Promise.all([budget.acquire(), budget.acquire(), budget.acquire()]);
    expect(calls).toHaveLength(1);
    expect(calls[0]!.want).toBe(3);
    await budget.acquire();
    clock.time += 2000;
    await budget.acquire();
    expect(calls).toHaveLength(3);
    expect(calls[2]!.settle).toEqual({ batch: 2, unused: calls[1]!.want - 1 });
  });

  it('gives back what it holds unused when it stops, and tells the fleet of a 429', async () => {
    const clock = new FakeClock();
    const { grants, batches, blocks } = pool(100, clock);
    const budgets = new BudgetRegistry(100, clock, grants);
    const budget = budgets.for('cred');
    // A batch of three taken for three waiters, one of which gives up once it is taken.
    const gaveUp = new AbortController();
    const [first, second, third] = [budget.acquire(), budget.acquire(), budget.acquire(gaveUp.signal)];
    await first;
    gaveUp.abort();
    await Promise.all([second, third.catch(() => {})]);
    expect([...batches.values()].map((b) => b.reserved)).toEqual([3]);
    budget.blockUntil(clock.now() + 60_000);
    expect(blocks).toEqual([60_000]);
    await budgets.release();
    expect([...batches.values()].reduce((a, b) => a + b.reserved, 0)).toBe(2);
  });

  it("holds back while the fleet says another replica's 429 is in force", async () => {
    const clock = new FakeClock();
    const { grants } = pool(100, clock, { blockedMs: 45_000 });
    const budget = new BudgetRegistry(100, clock, grants).for('cred');
    const start = clock.now();
    await budget.acquire();
    await budget.acquire();
    expect(clock.now() - start).toBeGreaterThanOrEqual(45_000);
  });
});
