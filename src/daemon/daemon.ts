import type { Clock } from '../clock.ts';
import type { AccountConfig } from '../config/config.ts';
import type { Logger } from '../log.ts';
import type { DigestScheduler } from '../notify/digest.ts';
import type { DeliveryWorker } from '../notify/worker.ts';
import { LeadershipLostError, type StateStore } from '../store/store.ts';
import type { AccountPoller, PollOutcome } from './poller.ts';

/** Delivered deliveries and their events are kept this long (for inspection), then pruned. */
const RETENTION_MS = 7 * 86_400_000;

/** What `run` does hourly and `once` at its end: delivered deliveries past RETENTION_MS, and history past state.history, go. */
export function pruneHistory(store: StateStore, historyMs: number, now: number): ReturnType<StateStore['prune']> {
  return store.prune({ delivered: now - RETENTION_MS, history: now - historyMs });
}

/** One account this process leads, in /readyz: ready, or why not. */
export type AccountReadiness = { readonly account: string; readonly ready: true; readonly last_success_s_ago: number } | { readonly account: string; readonly ready: false; readonly reason: string };

/** /readyz's body: every account this process leads, ready or not, and the store's problem if it has one. */
export interface Readiness {
  readonly ready: boolean;
  readonly accounts: readonly AccountReadiness[];
  readonly store?: string;
}

/** What the daemon knows of each account's polling, for readiness and logs. */
export interface AccountStatus {
  /** On the clock's monotonic time: in-process only (kept across a reload, never stored), for readiness. */
  lastSuccessAt: number | undefined;
  lastError: string | undefined;
}

export interface DaemonOptions {
  readonly pollers: readonly AccountPoller[];
  readonly worker: DeliveryWorker;
  readonly store: StateStore;
  readonly clock: Clock;
  readonly log: Logger;
  readonly pollIntervalMs: number;
  /** How long in-flight deliveries may take to finish on shutdown. Default 10 s. */
  readonly graceMs?: number;
  /** What a previous daemon knew of the accounts (kept across a reload). */
  readonly status?: ReadonlyMap<string, AccountStatus>;
  /** Called last on shutdown, to release what the daemon's parts share (connection pools). */
  readonly onStopped?: () => Promise<void>;
  /** Told after every poll, for metrics. */
  readonly onPoll?: (account: AccountConfig, durationMs: number, result: PollOutcome | Error) => void;
  /** The sinks' digests (SPEC §9), queued at their slots. */
  readonly digests?: DigestScheduler;
}

/** Longest gap between two accounts' first polls: many accounts never fire in the same second. */
const MAX_START_SPACING_MS = 1000;

/**
 * Polls at once, from their first request to their commit. Each holds what it
 * read until its commit; at start, or when a replica takes over a dead one's
 * accounts, hundreds fall due within seconds, and a store slower than the
 * reads (PostgreSQL: 16 connections) queued them all with their reads. V8
 * keeps the pages such a peak took (its page pool, given back only by a
 * memory-reducing collection, which a process that allocates steadily never
 * gets): a replica leading 1,000 accounts of 1,000 users stayed at 490 MB
 * resident, 296–307 MB capped (docs/PERFORMANCE.md). 64 polls of a second
 * each are still 64 a second, where 1,000 accounts at 20 s need 50.
 */
export const MAX_POLLS_IN_FLIGHT = 64;

/** Turns to run, first come first served, at most `size` at once. */
class Turns {
  #free: number;
  readonly #waiting = new Set<() => void>();

  constructor(size: number) {
    this.#free = size;
  }

  /** Waits for a turn (rejects with the signal's reason when it aborts first); call what it returns when done. */
  async take(signal: AbortSignal): Promise<() => void> {
    signal.throwIfAborted();
    if (this.#free > 0) this.#free--;
    else {
      await new Promise<void>((resolve, reject) => {
        const go = () => {
          signal.removeEventListener('abort', abort);
          resolve();
        };
        const abort = () => {
          this.#waiting.delete(go);
          reject(signal.reason);
        };
        this.#waiting.add(go);
        signal.addEventListener('abort', abort, { once: true });
      });
    }
    return () => {
      const next = this.#waiting.values().next();
      if (next.done) this.#free++;
      else {
        // Handed straight on: the turn is never free for a newcomer to take past those waiting.
        this.#waiting.delete(next.value);
        next.value();
      }
    };
  }
}

/** Why a poll loop was stopped while the daemon goes on: another replica polls the account now. */
class LeadershipMoved extends Error {
  constructor() {
    super('leadership moved to another replica');
    this.name = 'LeadershipMoved';
  }
}

/**
 * Drives everything: polls each account it leads every interval (accounts
 * independent, never two polls of one account at once, start times spread),
 * keeps the delivery worker draining, and owns shutdown. With a store shared
 * by replicas, it asks the store which accounts it leads every little while,
 * starts and stops their polling to match, and pauses all polling while the
 * store cannot be reached.
 */
export class Daemon {
  readonly #options: DaemonOptions;
  readonly status = new Map<string, AccountStatus>();
  readonly #stop = new AbortController();
  /** Each account this process leads, and the means to stop its poll loop. */
  readonly #led = new Map<string, AbortController>();
  /** Every poll loop not yet finished, including those stopped because leadership moved: stop() waits for them all. */
  readonly #running = new Set<Promise<void>>();
  #leadership: Promise<void> | undefined;
  /** Why the store could not be asked who leads what, while it cannot. */
  #storeProblem: string | undefined;
  readonly #turns = new Turns(MAX_POLLS_IN_FLIGHT);

  constructor(options: DaemonOptions) {
    this.#options = options;
    this.#takeStatus();
  }

  /** What the previous daemon knew of each account (a reload's), as it stands: taken again at start, once it has stopped. */
  #takeStatus(): void {
    for (const poller of this.#options.pollers) {
      const known = this.#options.status?.get(poller.account.id);
      this.status.set(poller.account.id, { lastSuccessAt: known?.lastSuccessAt, lastError: known?.lastError });
    }
  }

  /** The accounts (ids) this process polls now. */
  get leads(): ReadonlySet<string> {
    return new Set(this.#led.keys());
  }

  /** `run`: start polling and delivering until stop(). */
  start(): void {
    const { pollers, store } = this.#options;
    this.#takeStatus();
    this.#options.worker.start();
    const { digests, worker } = this.#options;
    if (digests?.any) {
      const loop = digests.run(this.#stop.signal, () => worker.wake());
      this.#running.add(loop);
      void loop.finally(() => this.#running.delete(loop));
    }
    if (store.leadershipCheckMs === undefined) {
      this.#follow(new Set(pollers.map((p) => p.account.id)));
    } else {
      this.#leadership = this.#leadershipLoop(store.leadershipCheckMs);
    }
  }

  /**
   * `once`: poll every account this process may lead, then deliver what is
   * due (unless `deliver` is false: `once --dry-run`). True when all of that went well.
   */
  async runOnce(options: { readonly deliver?: boolean } = {}): Promise<boolean> {
    const { pollers, store, log } = this.#options;
    const led = await store.lead(pollers.map((p) => p.account.id));
    const mine = pollers.filter((p) => led.has(p.account.id));
    for (const poller of pollers) if (!led.has(poller.account.id)) log.info({ account: poller.account.label }, 'another replica leads this account: not polled here');
    const polled = await Promise.all(mine.map((poller) => this.#pollSafely(poller, this.#stop.signal)));
    if (options.deliver === false) return polled.every(Boolean);
    // A cron-only setup sends its digests too: the slot that passed since the last run, once.
    let digested = true;
    if (this.#options.digests?.any) {
      await this.#options.digests.due(this.#options.clock.now()).catch((error: unknown) => {
        digested = false;
        log.error({ err: (error as Error).message }, 'could not queue the due digests');
      });
    }
    const { failed } = await this.#options.worker.drainDue();
    const counts = await store.deliveryCounts();
    // Only the configured sinks count: deliveries kept for a removed sink wait for it to come back.
    const sinks = this.#options.worker.sinkNames;
    const pending = sinks.reduce((n, sink) => n + (counts.get(sink)?.pending ?? 0), 0);
    if (pending > 0) {
      // When the next one falls due: a cron entry needs to run again by then.
      const due = (await Promise.all(sinks.map((sink) => store.nextDueAt(sink)))).filter((at) => at !== undefined);
      const next = due.length > 0 ? new Date(Math.min(...due)).toISOString() : undefined;
      log.warn({ pending, nextDueAt: next }, `${pending} deliveries are still pending; they go out on a later run${next ? ` (the next falls due at ${next})` : ''}`);
    }
    return polled.every(Boolean) && digested && failed === 0 && pending === 0;
  }

  /**
   * Stops polling (a poll in flight is abandoned uncommitted) and lets
   * deliveries in flight finish within the grace period. The store stays open:
   * it belongs to whoever opened it.
   */
  async stop(): Promise<void> {
    this.#stop.abort(new Error('shutting down'));
    await Promise.allSettled([this.#leadership, ...this.#running]);
    await this.#options.worker.stop(this.#options.graceMs ?? 10_000);
    await this.#options.onStopped?.();
  }

  /**
   * Ready when the store answers and every account this process leads was
   * polled successfully within `withinMs` (measured on the monotonic clock);
   * else which are not, and why.
   */
  readiness(withinMs: number): Readiness {
    const now = this.#options.clock.monotonic();
    const accounts: AccountReadiness[] = [];
    for (const poller of this.#options.pollers) {
      if (!this.#led.has(poller.account.id)) continue;
      const status = this.status.get(poller.account.id)!;
      const error = status.lastError ? `; last error: ${status.lastError}` : '';
      const account = poller.account.label;
      if (status.lastSuccessAt === undefined) {
        accounts.push({ account, ready: false, reason: `not polled successfully yet${error}` });
      } else {
        const ago = Math.round((now - status.lastSuccessAt) / 1000);
        accounts.push(now - status.lastSuccessAt > withinMs ? { account, ready: false, reason: `last successful poll ${ago} s ago${error}` } : { account, ready: true, last_success_s_ago: ago });
      }
    }
    const store = this.#storeProblem;
    return { ready: accounts.every((a) => a.ready) && store === undefined, accounts, ...(store ? { store } : {}) };
  }

  /** Asks the store which accounts this replica leads, again and again; while it cannot be asked, nothing is polled. */
  async #leadershipLoop(everyMs: number): Promise<void> {
    const { pollers, store, clock, log } = this.#options;
    const ids = pollers.map((p) => p.account.id);
    let retryMs = everyMs;
    while (!this.#stop.signal.aborted) {
      let waitMs = everyMs;
      try {
        const led = await store.lead(ids);
        if (this.#storeProblem !== undefined) log.info('the state store answers again: polling resumes');
        this.#storeProblem = undefined;
        retryMs = everyMs;
        this.#follow(led);
      } catch (error) {
        if (this.#stop.signal.aborted) return;
        const message = (error as Error).message;
        // Nothing is announced from a store that cannot take the commit: polling pauses.
        if (this.#storeProblem === undefined) log.error({ err: message }, 'the state store cannot be reached: polling pauses until it answers');
        this.#storeProblem = message;
        this.#follow(new Set());
        waitMs = retryMs;
        // Backing off, but never past a lease's length: polling resumes soon after the store is back.
        retryMs = Math.min(3 * everyMs, retryMs * 2);
      }
      try {
        await clock.sleep(waitMs, this.#stop.signal);
      } catch {
        return;
      }
    }
  }

  /** Starts polling the accounts newly led (spread over the first interval) and stops those no longer led. */
  #follow(led: ReadonlySet<string>): void {
    const { pollers, pollIntervalMs, log } = this.#options;
    for (const [id, stop] of this.#led) {
      if (led.has(id)) continue;
      stop.abort(new LeadershipMoved());
      this.#led.delete(id);
      log.info({ account: pollers.find((p) => p.account.id === id)?.account.label ?? id }, 'no longer leads this account');
    }
    const starting = pollers.filter((p) => led.has(p.account.id) && !this.#led.has(p.account.id));
    // Spread over a quarter of an interval: at start, and when taking over a dead replica's accounts, which are already late.
    const spacing = Math.min(MAX_START_SPACING_MS, pollIntervalMs / 4 / Math.max(1, starting.length));
    const replicated = this.#options.store.replica !== undefined;
    starting.forEach((poller, i) => {
      const stop = new AbortController();
      // Led anew: what this process remembered of the account may be behind what another one committed.
      poller.forget();
      if (replicated) log.info({ account: poller.account.label }, 'leads this account now');
      const loop = this.#pollLoop(poller, i * spacing, AbortSignal.any([this.#stop.signal, stop.signal])).finally(() => {
        // Led no more (and not led again meanwhile): what it remembers of the account (its stored levels, tens of KB
        // at a thousand users) would be stale when it leads it again, and a replica that started first, leading every
        // account until the others joined, would hold them all for nothing.
        if (stop.signal.aborted && !this.#led.has(poller.account.id)) poller.forget();
      });
      this.#running.add(loop);
      void loop.finally(() => this.#running.delete(loop));
      this.#led.set(poller.account.id, stop);
    });
  }

  async #pollLoop(poller: AccountPoller, offsetMs: number, signal: AbortSignal): Promise<void> {
    const { clock, pollIntervalMs } = this.#options;
    // The schedule is an interval kept in this process: monotonic, so a wall clock stepped back does not stop polling for as long.
    let next = clock.monotonic() + offsetMs;
    while (!signal.aborted) {
      try {
        await clock.sleep(next - clock.monotonic(), signal);
      } catch {
        return;
      }
      await this.#pollSafely(poller, signal);
      // A poll that overran its interval skips the missed ticks rather than firing back to back.
      next += pollIntervalMs;
      const now = clock.monotonic();
      if (next <= now) next += Math.ceil((now - next + 1) / pollIntervalMs) * pollIntervalMs;
    }
  }

  /** One poll; a failure is logged and recorded, never thrown: one account never stops the others. */
  async #pollSafely(poller: AccountPoller, signal: AbortSignal): Promise<boolean> {
    const { clock, log, worker, onPoll } = this.#options;
    const account = poller.account;
    const status = this.status.get(account.id)!;
    // Stopped, or led elsewhere, while waiting for a turn: nothing was started.
    const done = await this.#turns.take(signal).catch(() => undefined);
    if (!done) return false;
    // Durations and readiness are in-process intervals: monotonic. The poll's own timestamps (events) are wall clock, in the poller.
    // A poll's duration is its own work, not its wait for a turn.
    const started = clock.monotonic();
    try {
      const outcome = await poller.poll(signal);
      status.lastSuccessAt = clock.monotonic();
      status.lastError = undefined;
      onPoll?.(account, clock.monotonic() - started, outcome);
      log[outcome.eventTypes.length > 0 || outcome.firstRun ? 'info' : 'debug'](
        { account: account.label, users: outcome.users, events: outcome.eventTypes.length, deliveries: outcome.deliveries, ms: clock.monotonic() - started },
        outcome.firstRun ? 'first poll of the account committed' : 'poll committed',
      );
      if (outcome.deliveries > 0) worker.wake();
      return true;
    } catch (error) {
      const message = error instanceof Error ? error.message : String(error);
      if (signal.aborted) {
        // Stopping, or another replica leads the account now: an abandoned poll is expected; anything else (a failed commit) is still said.
        if (error !== signal.reason && (error as Error).name !== 'AbortError') log.error({ account: account.label, err: message }, 'poll failed while stopping');
        return false;
      }
      if (error instanceof LeadershipLostError) {
        // Not a failure of the account: another replica polls it now, and this poll committed nothing.
        log.warn({ account: account.label }, message);
        return false;
      }
      status.lastError = message;
      onPoll?.(account, clock.monotonic() - started, error instanceof Error ? error : new Error(message));
      log.error({ account: account.label, err: message }, 'poll failed; nothing was committed, the next poll tries again');
      // Kept for `status` (SPEC §8), best effort: the store may be what failed.
      await poller.recordFailure(message).catch((recordError: unknown) => log.debug({ account: account.label, err: (recordError as Error).message }, 'could not record the failed poll'));
      return false;
    } finally {
      done();
    }
  }
}
