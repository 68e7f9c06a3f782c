import type { Clock } from '../clock.ts';

export const RATE_WINDOW_MS = 5 * 60_000;

/**
 * Where the replicas of a fleet take one credential's requests from (SPEC §11):
 * a PostgreSQL store, on the database's clock. A replica takes a few grants at
 * a time (a batch), uses them within `leaseMs`, and says how many it left
 * unused when it takes the next batch or stops; until then the whole batch
 * counts as spent, so the fleet never exceeds the limit, whatever a replica
 * does (a replica killed holding a batch costs the fleet at most that batch,
 * for the rest of the window).
 */
export interface GrantPool {
  take(request: GrantRequest): Promise<GrantAnswer>;
  /** Gives back what a batch left unused, saying which accounts used the rest (a replica stopping). */
  settle(credentialId: string, batch: number, used: ReadonlyMap<string, number>): Promise<void>;
  /** A 429 seen by one replica holds every replica back until then (`forMs` from now, on the database's clock). */
  block(credentialId: string, forMs: number): Promise<void>;
}

export interface GrantRequest {
  readonly credentialId: string;
  /** The accounts polled with this credential: each is due the same share of the limit. */
  readonly accountIds: readonly string[];
  readonly limit: number;
  /** How many grants this replica would like now (its waiting requests, a batch at most). */
  readonly want: number;
  /** The previous batch, and how many of it each account used: the rest no longer counts. */
  readonly settle?: { readonly batch: number; readonly used: ReadonlyMap<string, number> };
}

export interface GrantAnswer {
  readonly granted: number;
  /** The batch's id, to settle it; undefined when nothing was granted. */
  readonly batch: number | undefined;
  /** With nothing granted: how long to wait before asking again. */
  readonly waitMs: number;
  /** How long a 429 still holds this credential back, for every replica (0: not blocked). */
  readonly blockedMs: number;
  /**
   * Requests other replicas made (and settled) in the window for accounts this replica polls now: those it
   * took over. Its turn-taking counts them, so an account polled elsewhere a moment ago does not go first.
   */
  readonly elsewhere: ReadonlyMap<string, number>;
  /** Grants of this batch not used within this long are not used at all. */
  readonly leaseMs: number;
}

/** What the fleet spent in the current window and who polls which account, for allocate(). */
export interface FleetWindow {
  readonly limit: number;
  readonly want: number;
  /** Every account polled with the credential. */
  readonly accounts: readonly string[];
  /** The replica asking, and which replica polls each account ('' for those no replica leads, which a process passing through polls). */
  readonly me: string;
  readonly pollers: ReadonlyMap<string, string>;
  /** Requests each account made in the window, as settled. */
  readonly spent: ReadonlyMap<string, number>;
  /** Requests granted in the window and not yet settled, whichever replica holds them. */
  readonly unsettled: number;
}

/**
 * How many of the fleet's requests a replica gets now (SPEC §11): never more
 * than the window has left, nor what the other replicas' accounts are still
 * due. Every account of the credential is due the same share of the limit
 * (in whole requests: the remainder to the first accounts by id), so an
 * account keeps its turns whichever replica polls it, and one taken over from
 * another replica is due what it has not had yet. What a replica's accounts
 * are due is summed over them (one that had more makes up for one that had
 * less: which of its accounts goes first is that replica's own turn-taking).
 * What no account is due is anyone's.
 */
export function allocate(window: FleetWindow): number {
  const n = window.accounts.length;
  const due = new Map<string, number>();
  for (const [i, account] of window.accounts.toSorted().entries()) {
    const poller = window.pollers.get(account) ?? '';
    if (poller === window.me) continue;
    const share = Math.floor(window.limit / n) + (i < window.limit % n ? 1 : 0);
    due.set(poller, (due.get(poller) ?? 0) + share - (window.spent.get(account) ?? 0));
  }
  // A replica's unsettled batch is spent, and does not lessen what its accounts are due until it is settled
  // against them: a replica killed holding one would otherwise have given its accounts' turns away, and the
  // replica taking them over find nothing left for them (an account polled once in 30 s). Until it settles
  // (its next batch, a second or so), the others get that much less.
  let dueToOthers = 0;
  for (const owed of due.values()) dueToOthers += Math.max(0, owed);
  let spent = window.unsettled;
  for (const used of window.spent.values()) spent += used;
  return Math.max(0, Math.min(window.want, window.limit - spent - dueToOthers));
}

/** Largest batch a replica takes: small against the limit, so that the shares stay fair and little is held. */
export function batchSize(limit: number): number {
  return Math.max(1, Math.min(20, Math.floor(limit / 20)));
}

/**
 * The request budget of one Cloudflare credential, shared by every account that
 * uses it. Cloudflare counts requests per user over five minutes and, past the
 * limit, refuses every call of that user for five minutes (SPEC §1); so this
 * never grants more than `limit` requests in any window, grants them in the
 * order asked (accounts sharing a credential take turns), slows down when
 * Cloudflare reports its own remaining count running low (the dashboard and
 * other tools spend the same budget), and holds everything back while a
 * Retry-After is in force.
 *
 * With a GrantPool (replicas on PostgreSQL), each request also takes a grant
 * from the fleet's budget, in batches; the in-process window stays as a bound.
 *
 * Every time kept here is the clock's monotonic time: the window and a block
 * are intervals measured in this process, and a wall clock stepped back (NTP,
 * a VM resume) must neither stall requests for as long nor, stepped forward,
 * end a window or a block early. Only the API speaks in epoch ms (blockUntil,
 * blockedUntil), converted at the moment of the call.
 */
export class RequestBudget {
  readonly limit: number;
  readonly #clock: Clock;
  /** Grant times (monotonic) of the last `limit` requests, oldest at #head once full. */
  readonly #grants: Float64Array;
  #count = 0;
  #head = 0;
  #lastGrant = -Infinity;
  #paceMs = 0;
  /** Monotonic time before which nothing is granted. */
  #blockedUntil = -Infinity;
  /** Callers waiting for a grant, in the order they asked. */
  readonly #waiters: Waiter[] = [];
  #asked = 0;
  /** Grant times (monotonic) per key (an account) within the window: the key with fewest goes first. */
  #byKey = new Map<string, number[]>();
  #sweptAt = -Infinity;
  /** Whether the loop handing out grants runs, and how to stop its sleep when nobody waits any more. */
  #serving = false;
  #idle: AbortController | undefined;
  readonly #fleet: Fleet | undefined;

  constructor(limit: number, clock: Clock, fleet?: Fleet) {
    if (!Number.isInteger(limit) || limit < 1) throw new RangeError('limit must be a positive integer');
    this.limit = limit;
    this.#clock = clock;
    this.#grants = new Float64Array(limit);
    this.#fleet = fleet;
  }

  /**
   * Waits for permission to send one request. Each grant goes to the waiter
   * whose `key` (the account it is for) had the fewest in the last five
   * minutes, first come first served among equals: when requests are scarce,
   * every account gets its turn, and one that has waited longest (or was just
   * taken over from another replica) is not starved by those that ask more.
   */
  acquire(signal?: AbortSignal, key = ''): Promise<void> {
    return new Promise((resolve, reject) => {
      if (signal?.aborted) return reject(signal.reason);
      const abort = () => {
        this.#forget(waiter);
        reject(signal!.reason);
      };
      const waiter: Waiter = {
        key,
        order: this.#asked++,
        resolve: () => {
          signal?.removeEventListener('abort', abort);
          resolve();
        },
        reject: (error) => {
          signal?.removeEventListener('abort', abort);
          reject(error);
        },
      };
      signal?.addEventListener('abort', abort, { once: true });
      this.#waiters.push(waiter);
      if (!this.#serving) {
        this.#serving = true;
        // From the next microtask: callers asking in the same turn are all counted in the first batch.
        queueMicrotask(() => void this.#serve());
      }
    });
  }

  #forget(waiter: Waiter): void {
    const at = this.#waiters.indexOf(waiter);
    if (at >= 0) this.#waiters.splice(at, 1);
    if (this.#waiters.length === 0) this.#idle?.abort();
  }

  /** Hands out grants while anyone waits; a caller that gives up while queued is simply no longer there. */
  async #serve(): Promise<void> {
    try {
      while (this.#waiters.length > 0) {
        const idle = new AbortController();
        this.#idle = idle;
        let fromFleet: boolean;
        try {
          fromFleet = await this.#grant(idle.signal);
        } catch (error) {
          // Nobody waits any more (each gave up), or the fleet's store failed: those waiting hear why.
          if (!idle.signal.aborted) for (const waiter of this.#waiters.splice(0)) waiter.reject(error);
          continue;
        }
        const waiter = this.#next();
        if (waiter === undefined) {
          // Everyone gave up while the grant was being taken: it goes back, unused.
          if (fromFleet) this.#fleet!.giveBack();
          continue;
        }
        if (fromFleet) this.#fleet!.spend(waiter.key);
        this.#record(this.#clock.monotonic());
        waiter.resolve();
      }
    } finally {
      // In the same turn as the last look at the list: a caller arriving after it starts the loop again.
      this.#serving = false;
    }
  }

  /** The waiter with the fewest grants for its key in the window (then the one that asked first), taken off the list. */
  #next(): Waiter | undefined {
    const now = this.#clock.monotonic();
    let best: Waiter | undefined;
    let fewest = Infinity;
    for (const waiter of this.#waiters) {
      const n = this.#inWindow(waiter.key, now) + (this.#fleet?.elsewhere.get(waiter.key) ?? 0);
      if (n < fewest) [best, fewest] = [waiter, n];
    }
    if (best === undefined) return undefined;
    this.#waiters.splice(this.#waiters.indexOf(best), 1);
    // Keys nobody asks for any more (an account removed, or led elsewhere now) go once a window, not at every grant:
    // a walk of a thousand accounts' windows per grant was most of a round's garbage at MSSP scale (issue 28).
    if (now - this.#sweptAt >= RATE_WINDOW_MS) {
      this.#sweptAt = now;
      for (const key of this.#byKey.keys()) this.#inWindow(key, now);
    }
    const times = this.#byKey.get(best.key) ?? [];
    times.push(now);
    this.#byKey.set(best.key, times);
    return best;
  }

  /** Grants for `key` in the window ending `now`; older ones are dropped, and the key with them once it has none. */
  #inWindow(key: string, now: number): number {
    const times = this.#byKey.get(key);
    if (times === undefined) return 0;
    let old = 0;
    while (old < times.length && times[old]! <= now - RATE_WINDOW_MS) old++;
    if (old === times.length) {
      this.#byKey.delete(key);
      return 0;
    }
    if (old > 0) times.splice(0, old);
    return times.length;
  }

  /** Cloudflare's `x-ratelimit-remaining`: below a tenth of the limit, requests are spaced out. */
  observeRemaining(remaining: number, limit = this.limit): void {
    const lowWater = Math.max(1, Math.floor(limit / 10));
    this.#paceMs = remaining >= lowWater ? 0 : Math.min(30_000, (RATE_WINDOW_MS / limit) * (lowWater / Math.max(remaining, 1)));
  }

  /** After a 429: no request on this credential before `until` (epoch ms, as now() reads it at this moment). */
  blockUntil(until: number): void {
    // Held as the wait it means from now, on the monotonic clock: a later step of the wall clock does not move it.
    this.#blockedUntil = Math.max(this.#blockedUntil, this.#clock.monotonic() + (until - this.#clock.now()));
    // The other replicas hear of it at their next batch; should the database not answer, this replica still waits.
    this.#fleet?.block(until - this.#clock.now());
  }

  /** Epoch ms (on the wall clock as it reads now) before which no request will be granted (0 when never blocked). */
  get blockedUntil(): number {
    if (this.#blockedUntil === -Infinity) return 0;
    return this.#clock.now() + (this.#blockedUntil - this.#clock.monotonic());
  }

  /**
   * This credential's budget under a new limit (a reload changed requests_per_5min): the requests
   * already granted still count in Cloudflare's window (the newest `limit` of them are all a lower
   * limit needs), and the pacing and any Retry-After block stay in force.
   */
  withLimit(limit: number): RequestBudget {
    const next = new RequestBudget(limit, this.#clock, this.#fleet?.withLimit(limit));
    const kept = Math.min(this.#count, limit);
    for (let i = this.#count - kept; i < this.#count; i++) next.#record(this.#grants[(this.#head + i) % this.limit]!);
    next.#lastGrant = this.#lastGrant;
    next.#paceMs = this.#paceMs;
    next.#blockedUntil = this.#blockedUntil;
    next.#byKey = this.#byKey;
    return next;
  }

  /** Waits until one request may go (this window, a block, the pace, and the fleet's grant); true when the fleet granted it. */
  async #grant(signal: AbortSignal): Promise<boolean> {
    for (;;) {
      signal.throwIfAborted();
      const now = this.#clock.monotonic();
      const windowFree = this.#count < this.limit ? -Infinity : this.#grants[this.#head]! + RATE_WINDOW_MS;
      const at = Math.max(windowFree, this.#blockedUntil, this.#lastGrant + this.#paceMs);
      if (at <= now) {
        if (this.#fleet === undefined) return false;
        const wait = await this.#fleet.take(this.#waiters.length, (ms) => this.#holdBack(ms));
        if (wait === 0) return true;
        await this.#clock.sleep(wait, signal);
        continue;
      }
      // Re-check after waking: a 429 elsewhere may have pushed #blockedUntil further.
      await this.#clock.sleep(at - now, signal);
    }
  }

  /** This budget's side of the fleet's, if it has one. */
  get fleet(): Fleet | undefined {
    return this.#fleet;
  }

  /** The fleet says a 429 holds the credential back `ms` more. */
  #holdBack(ms: number): void {
    this.#blockedUntil = Math.max(this.#blockedUntil, this.#clock.monotonic() + ms);
  }

  /** Gives the fleet back what this process holds and has not used (it stops). */
  async release(): Promise<void> {
    await this.#fleet?.release();
  }

  #record(now: number): void {
    this.#lastGrant = now;
    if (this.#count < this.limit) {
      this.#grants[(this.#head + this.#count) % this.limit] = now;
      this.#count++;
    } else {
      this.#grants[this.#head] = now;
      this.#head = (this.#head + 1) % this.limit;
    }
  }
}

interface Waiter {
  readonly key: string;
  readonly order: number;
  readonly resolve: () => void;
  readonly reject: (error: unknown) => void;
}

/**
 * This process's side of a credential's fleet budget: the batch it holds (grants
 * left, and until when they may be used, on the monotonic clock), taken from the
 * pool when used up or stale.
 */
export class Fleet {
  readonly #pool: GrantPool;
  readonly #clock: Clock;
  readonly #credentialId: string;
  readonly #limit: number;
  /** The accounts polled with the credential (a reload may change them). */
  accountIds: readonly string[];
  #batch: { id: number; left: number; until: number; used: Map<string, number> } | undefined;
  /** What other replicas spent in the window on accounts this one polls now, as of the last answer. */
  elsewhere: ReadonlyMap<string, number> = new Map();

  constructor(pool: GrantPool, clock: Clock, credentialId: string, limit: number, accountIds: readonly string[]) {
    this.#pool = pool;
    this.#clock = clock;
    this.#credentialId = credentialId;
    this.#limit = limit;
    this.accountIds = accountIds;
  }

  /** The same credential under a new limit: the batch held goes with it. */
  withLimit(limit: number): Fleet {
    const next = new Fleet(this.#pool, this.#clock, this.#credentialId, limit, this.accountIds);
    next.#batch = this.#batch;
    next.elsewhere = this.elsewhere;
    return next;
  }

  /** One grant: 0 when taken, else how long to wait before asking again. */
  async take(waiting: number, holdBack: (ms: number) => void): Promise<number> {
    const batch = this.#batch;
    if (batch !== undefined && batch.left > 0 && this.#clock.monotonic() < batch.until) {
      batch.left--;
      return 0;
    }
    // The lease counts from before the question: the answer may be late, never the grants.
    const asked = this.#clock.monotonic();
    const answer = await this.#pool.take({
      credentialId: this.#credentialId,
      accountIds: this.accountIds,
      limit: this.#limit,
      want: Math.max(1, Math.min(batchSize(this.#limit), waiting)),
      ...(batch ? { settle: { batch: batch.id, used: batch.used } } : {}),
    });
    this.#batch = undefined;
    this.elsewhere = answer.elsewhere;
    if (answer.blockedMs > 0) holdBack(answer.blockedMs);
    if (answer.granted === 0 || answer.batch === undefined) return Math.max(1, answer.waitMs);
    this.#batch = { id: answer.batch, left: answer.granted - 1, until: asked + answer.leaseMs, used: new Map() };
    return 0;
  }

  /** The grant take() just gave went to this account's request. */
  spend(accountId: string): void {
    const used = this.#batch?.used;
    used?.set(accountId, (used.get(accountId) ?? 0) + 1);
  }

  /** A grant take() gave that nobody used after all: the batch has it again. */
  giveBack(): void {
    if (this.#batch !== undefined) this.#batch.left++;
  }

  block(forMs: number): void {
    if (forMs > 0) this.#pool.block(this.#credentialId, forMs).catch(() => {});
  }

  async release(): Promise<void> {
    const batch = this.#batch;
    this.#batch = undefined;
    if (batch !== undefined) await this.#pool.settle(this.#credentialId, batch.id, batch.used).catch(() => {});
  }
}

/** One budget per credential id, created on first use. */
export class BudgetRegistry {
  readonly #budgets = new Map<string, { budget: RequestBudget; fleet: Fleet | undefined }>();
  readonly limit: number;
  readonly #clock: Clock;
  readonly #pool: GrantPool | undefined;
  /** With a pool (replicas on PostgreSQL), each credential's budget is the fleet's (SPEC §11); else this process's own. */
  constructor(limit: number, clock: Clock, pool?: GrantPool) {
    this.limit = limit;
    this.#clock = clock;
    this.#pool = pool;
  }
  /** The same credentials under a new limit (a reload changed requests_per_5min), each with its requests in the window and its block. */
  withLimit(limit: number): BudgetRegistry {
    const next = new BudgetRegistry(limit, this.#clock, this.#pool);
    for (const [id, { budget }] of this.#budgets) {
      const moved = budget.withLimit(limit);
      next.#budgets.set(id, { budget: moved, fleet: moved.fleet });
    }
    return next;
  }

  /** The budget of a credential, polling these accounts (the fleet shares it by how many of them each replica leads). */
  for(credentialId: string, accountIds: readonly string[] = []): RequestBudget {
    let entry = this.#budgets.get(credentialId);
    if (!entry) {
      const fleet = this.#pool && new Fleet(this.#pool, this.#clock, credentialId, this.limit, accountIds);
      entry = { budget: new RequestBudget(this.limit, this.#clock, fleet), fleet };
      this.#budgets.set(credentialId, entry);
    }
    if (entry.fleet) entry.fleet.accountIds = accountIds;
    return entry.budget;
  }

  /** Gives the fleet back every grant this process holds unused (it stops). */
  async release(): Promise<void> {
    await Promise.all([...this.#budgets.values()].map(({ budget }) => budget.release()));
  }
}
