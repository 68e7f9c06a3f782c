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

  it('gives the next grant to the account with the fewest in the window, so one that asks less (or was just taken over) is not starved', async () => {
    const clock = new FakeClock();
    const budget = new RequestBudget(3, clock);
    await budget.acquire(undefined, 'busy');
    await budget.acquire(undefined, 'busy');
    const order: string[] = [];
    const ask = (key: string) => budget.acquire(undefined, key).then(() => order.push(key));
    await Promise.all([ask('busy'), ask('quiet'), ask('busy')]);
    expect(order).toEqual(['quiet', 'busy', 'busy']);
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

describe('allocate: the fleet budget, the same share for every account (SPEC §11)', () => {
  const ACCOUNTS = Array.from({ length: 12 }, (_, i) => `acct-${String(i + 1).padStart(2, '0')}`);
  /** Replica a polls accounts 1-4, b 5-8, c 9-12; `mine` are those the asking replica ('me') polls instead. */
  const window = (spent: Record<string, number>, options: { mine?: readonly string[]; want?: number; limit?: number; unsettled?: number } = {}) => ({
    limit: options.limit ?? 60,
    want: options.want ?? 100,
    accounts: ACCOUNTS,
    me: 'me',
    pollers: new Map(ACCOUNTS.map((a, i) => [a, (options.mine ?? ACCOUNTS.slice(0, 4)).includes(a) ? 'me' : ['a', 'b', 'c'][Math.floor(i / 4)]!])),
    spent: new Map(Object.entries(spent)),
    unsettled: options.unsettled ?? 0,
  });

  it('never grants past what the window has left', () => {
    expect(allocate(window(Object.fromEntries(ACCOUNTS.map((a) => [a, 5]))))).toBe(0);
    expect(allocate(window({}, { unsettled: 60 }))).toBe(0);
    expect(allocate(window({}, { mine: ACCOUNTS, want: 7 }))).toBe(7);
    expect(allocate(window({}, { mine: ACCOUNTS }))).toBe(60);
  });

  it("keeps for the other replicas' accounts what they are still due (5 each of 60 over 12)", () => {
    expect(allocate(window({}))).toBe(20);
    expect(allocate(window({ 'acct-01': 5, 'acct-02': 5, 'acct-03': 5, 'acct-04': 5 }))).toBe(0);
    // Their accounts have had theirs: what is left is anyone's.
    expect(allocate(window(Object.fromEntries(ACCOUNTS.slice(4).map((a) => [a, 5]))))).toBe(20);
    // Batches not settled yet are spent, and what their replica's accounts are due is kept until they are
    // settled against them: the replica may have died holding them, and its accounts are still owed their turns.
    expect(allocate(window({}, { unsettled: 10 }))).toBe(10);
    expect(allocate(window({}, { unsettled: 30 }))).toBe(0);
    expect(allocate(window({ 'acct-05': 5, 'acct-06': 5, 'acct-07': 5, 'acct-08': 5 }, { unsettled: 10 }))).toBe(10);
  });

  it('an account taken over from another replica is owed what it has not had, whoever spent the rest', () => {
    // Replica a spent 30 while it led everything; now it polls 1-4 and has had more than their share.
    const spent = Object.fromEntries(ACCOUNTS.slice(0, 6).map((a) => [a, 5]));
    expect(allocate(window(spent))).toBe(0);
    // Replica b polls 5-8 (5 and 6 had theirs) and is due 10 for 7 and 8; c is due 20.
    expect(allocate(window(spent, { mine: ACCOUNTS.slice(4, 8) }))).toBe(10);
  });

  it("over any sequence of asks, the total stays within the limit and no replica's accounts that keep asking get less than their shares", () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 300 }),
        fc.integer({ min: 1, max: 12 }),
        fc.integer({ min: 1, max: 4 }),
        fc.array(fc.nat(), { maxLength: 200 }),
        (limit, accountCount, replicaCount, asks) => {
          const accounts = ACCOUNTS.slice(0, accountCount);
          const polledBy = (account: string) => accounts.indexOf(account) % replicaCount;
          const spent = new Map<string, number>();
          const pollers = new Map(accounts.map((a) => [a, `r${polledBy(a)}`]));
          const ask = (replica: number, account: string, want: number) => {
            const granted = allocate({ limit, want, accounts, me: `r${replica}`, pollers, spent, unsettled: 0 });
            spent.set(account, (spent.get(account) ?? 0) + granted);
          };
          // Replicas spend on their own accounts in any order, then every account asks until nothing is left.
          for (const n of asks) {
            const account = accounts[n % accounts.length]!;
            ask(polledBy(account), account, 1 + (n % 5));
          }
          for (let round = 0; round <= limit; round++) for (const account of accounts) ask(polledBy(account), account, 1);
          const total = [...spent.values()].reduce((a, b) => a + b, 0);
          expect(total).toBe(limit);
          // Each replica's accounts together have had at least their shares.
          for (let r = 0; r < replicaCount; r++) {
            const theirs = accounts.filter((a) => polledBy(a) === r);
            const had = theirs.reduce((sum, a) => sum + (spent.get(a) ?? 0), 0);
            expect(had).toBeGreaterThanOrEqual(theirs.length * Math.floor(limit / accounts.length));
          }
        },
      ),
    );
  });
});

describe('RequestBudget with a fleet: batches from the pool, settled when unused', () => {
  /** A pool on this process's clock: one replica asking, the others' spending given. */
  function pool(limit: number, clock: FakeClock, options: { leaseMs?: number; blockedMs?: number; elsewhere?: ReadonlyMap<string, number> } = {}) {
    const batches = new Map<number, { at: number; reserved: number }>();
    const calls: { want: number; settle?: { batch: number; used: ReadonlyMap<string, number> } }[] = [];
    /** A batch becomes what was used of it. */
    const settle = (batch: number, used: ReadonlyMap<string, number>) => {
      batches.get(batch)!.reserved = [...used.values()].reduce((a, b) => a + b, 0);
    };
    const blocks: number[] = [];
    let next = 1;
    const grants: GrantPool = {
      async take(request) {
        calls.push({ want: request.want, ...(request.settle ? { settle: request.settle } : {}) });
        if (request.settle) settle(request.settle.batch, request.settle.used);
        for (const [id, b] of batches) if (b.at <= clock.now() - RATE_WINDOW_MS) batches.delete(id);
        const spent = [...batches.values()].reduce((a, b) => a + b.reserved, 0);
        const granted = allocate({ limit, want: request.want, accounts: ['acct'], me: 'me', pollers: new Map([['acct', 'me']]), spent: new Map(), unsettled: spent });
        const blockedMs = options.blockedMs ?? 0;
        const elsewhere = options.elsewhere ?? new Map();
        if (granted === 0) {
          const oldest = Math.min(...[...batches.values()].map((b) => b.at));
          return { granted, batch: undefined, waitMs: oldest + RATE_WINDOW_MS - clock.now(), blockedMs, leaseMs: options.leaseMs ?? 30_000, elsewhere };
        }
        batches.set(next, { at: clock.now(), reserved: granted });
        return { granted, batch: next++, waitMs: 0, blockedMs, leaseMs: options.leaseMs ?? 30_000, elsewhere };
      },
      async settle(_credential, batch, used) {
        settle(batch, used);
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
    expect(calls[2]!.settle).toEqual({ batch: 2, used: new Map([['', 1]]) });
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

  it('counts what other replicas spent on an account it took over: that account does not go first', async () => {
    const clock = new FakeClock();
    // Five requests in all, four of them for 'moved' on the replica that polled it a moment ago.
    const { grants } = pool(5, clock, { elsewhere: new Map([['moved', 4]]) });
    const budget = new BudgetRegistry(5, clock, grants).for('cred', ['moved', 'mine']);
    await budget.acquire(undefined, 'mine');
    const order: string[] = [];
    const moved = budget.acquire(undefined, 'moved').then(() => order.push('moved'));
    const mine = budget.acquire(undefined, 'mine').then(() => order.push('mine'));
    await Promise.all([moved, mine]);
    // Here 'moved' had none and 'mine' one: counted alone, 'moved' would go first.
    expect(order).toEqual(['mine', 'moved']);
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
