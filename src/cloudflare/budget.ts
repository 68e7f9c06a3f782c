import type { Clock } from '../clock.ts';

export const RATE_WINDOW_MS = 5 * 60_000;

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
  #queue: Promise<void> = Promise.resolve();

  constructor(limit: number, clock: Clock) {
    if (!Number.isInteger(limit) || limit < 1) throw new RangeError('limit must be a positive integer');
    this.limit = limit;
    this.#clock = clock;
    this.#grants = new Float64Array(limit);
  }

  /** Waits for permission to send one request. Callers are served first come, first served. */
  acquire(signal?: AbortSignal): Promise<void> {
    const turn = this.#queue.then(() => this.#grant(signal));
    // One caller giving up (abort) must not stall the queue behind it.
    this.#queue = turn.catch(() => {});
    if (!signal) return turn;
    // A caller that gives up while still queued hears so at once; its turn, when it comes, is skipped.
    return new Promise((resolve, reject) => {
      const abort = () => reject(signal.reason);
      if (signal.aborted) return abort();
      signal.addEventListener('abort', abort, { once: true });
      turn.then(resolve, reject).finally(() => signal.removeEventListener('abort', abort));
    });
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
    const next = new RequestBudget(limit, this.#clock);
    const kept = Math.min(this.#count, limit);
    for (let i = this.#count - kept; i < this.#count; i++) next.#record(this.#grants[(this.#head + i) % this.limit]!);
    next.#lastGrant = this.#lastGrant;
    next.#paceMs = this.#paceMs;
    next.#blockedUntil = this.#blockedUntil;
    return next;
  }

  async #grant(signal?: AbortSignal): Promise<void> {
    for (;;) {
      signal?.throwIfAborted();
      const now = this.#clock.monotonic();
      const windowFree = this.#count < this.limit ? -Infinity : this.#grants[this.#head]! + RATE_WINDOW_MS;
      const at = Math.max(windowFree, this.#blockedUntil, this.#lastGrant + this.#paceMs);
      if (at <= now) {
        this.#record(now);
        return;
      }
      // Re-check after waking: a 429 elsewhere may have pushed #blockedUntil further.
      await this.#clock.sleep(at - now, signal);
    }
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

/** One budget per credential id, created on first use. */
export class BudgetRegistry {
  readonly #budgets = new Map<string, RequestBudget>();
  readonly limit: number;
  readonly #clock: Clock;
  constructor(limit: number, clock: Clock) {
    this.limit = limit;
    this.#clock = clock;
  }
  /** The same credentials under a new limit (a reload changed requests_per_5min), each with its requests in the window and its block. */
  withLimit(limit: number): BudgetRegistry {
    const next = new BudgetRegistry(limit, this.#clock);
    for (const [id, budget] of this.#budgets) next.#budgets.set(id, budget.withLimit(limit));
    return next;
  }

  for(credentialId: string): RequestBudget {
    let budget = this.#budgets.get(credentialId);
    if (!budget) {
      budget = new RequestBudget(this.limit, this.#clock);
      this.#budgets.set(credentialId, budget);
    }
    return budget;
  }
}
