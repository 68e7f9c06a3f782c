import type { Clock } from '../clock.ts';
import type { AccountConfig } from '../config/config.ts';
import type { Logger } from '../log.ts';
import type { DeliveryWorker } from '../notify/worker.ts';
import type { StateStore } from '../store/store.ts';
import type { AccountPoller, PollOutcome } from './poller.ts';

/** What the daemon knows of each account's polling, for readiness and logs. */
export interface AccountStatus {
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
}

/** Longest gap between two accounts' first polls: many accounts never fire in the same second. */
const MAX_START_SPACING_MS = 1000;

/**
 * Drives everything: polls each account every interval (accounts independent,
 * never two polls of one account at once, start times spread), keeps the
 * delivery worker draining, and owns shutdown.
 */
export class Daemon {
  readonly #options: DaemonOptions;
  readonly status = new Map<string, AccountStatus>();
  readonly #stop = new AbortController();
  #loops: Promise<void>[] = [];

  constructor(options: DaemonOptions) {
    this.#options = options;
    for (const poller of options.pollers) {
      const known = options.status?.get(poller.account.id);
      this.status.set(poller.account.id, { lastSuccessAt: known?.lastSuccessAt, lastError: known?.lastError });
    }
  }

  /** `run`: start polling and delivering until stop(). */
  start(): void {
    const { pollers, pollIntervalMs, worker } = this.#options;
    worker.start();
    const spacing = Math.min(MAX_START_SPACING_MS, pollIntervalMs / Math.max(1, pollers.length));
    this.#loops = pollers.map((poller, i) => this.#pollLoop(poller, i * spacing));
  }

  /** `once`: poll every account, then deliver what is due. True when everything was polled and delivered. */
  async runOnce(): Promise<boolean> {
    const polled = await Promise.all(this.#options.pollers.map((poller) => this.#pollSafely(poller)));
    const { failed } = await this.#options.worker.drainDue();
    const counts = await this.#options.store.deliveryCounts();
    // Only the configured sinks count: deliveries kept for a removed sink wait for it to come back.
    const pending = this.#options.worker.sinkNames.reduce((n, sink) => n + (counts.get(sink)?.pending ?? 0), 0);
    if (pending > 0) this.#options.log.warn({ pending }, `${pending} deliveries are still pending; they go out on a later run`);
    return polled.every(Boolean) && failed === 0 && pending === 0;
  }

  /**
   * Stops polling (a poll in flight is abandoned uncommitted) and lets
   * deliveries in flight finish within the grace period. The store stays open:
   * it belongs to whoever opened it.
   */
  async stop(): Promise<void> {
    this.#stop.abort(new Error('shutting down'));
    await Promise.allSettled(this.#loops);
    await this.#options.worker.stop(this.#options.graceMs ?? 10_000);
    await this.#options.onStopped?.();
  }

  /** Ready when every account's last successful poll is within `withinMs`; else which are not, and why. */
  readiness(now: number, withinMs: number): { ready: boolean; accounts: { account: string; reason: string }[] } {
    const accounts: { account: string; reason: string }[] = [];
    for (const poller of this.#options.pollers) {
      const status = this.status.get(poller.account.id)!;
      const error = status.lastError ? `; last error: ${status.lastError}` : '';
      if (status.lastSuccessAt === undefined) {
        accounts.push({ account: poller.account.label, reason: `not polled successfully yet${error}` });
      } else if (now - status.lastSuccessAt > withinMs) {
        accounts.push({ account: poller.account.label, reason: `last successful poll ${Math.round((now - status.lastSuccessAt) / 1000)} s ago${error}` });
      }
    }
    return { ready: accounts.length === 0, accounts };
  }

  async #pollLoop(poller: AccountPoller, offsetMs: number): Promise<void> {
    const { clock, pollIntervalMs } = this.#options;
    const signal = this.#stop.signal;
    let next = clock.now() + offsetMs;
    while (!signal.aborted) {
      try {
        await clock.sleep(next - clock.now(), signal);
      } catch {
        return;
      }
      await this.#pollSafely(poller);
      // A poll that overran its interval skips the missed ticks rather than firing back to back.
      next += pollIntervalMs;
      const now = clock.now();
      if (next <= now) next += Math.ceil((now - next + 1) / pollIntervalMs) * pollIntervalMs;
    }
  }

  /** One poll; a failure is logged and recorded, never thrown: one account never stops the others. */
  async #pollSafely(poller: AccountPoller): Promise<boolean> {
    const { clock, log, worker, onPoll } = this.#options;
    const account = poller.account;
    const status = this.status.get(account.id)!;
    const started = clock.now();
    try {
      const outcome = await poller.poll(this.#stop.signal);
      status.lastSuccessAt = clock.now();
      status.lastError = undefined;
      onPoll?.(account, clock.now() - started, outcome);
      log[outcome.eventTypes.length > 0 || outcome.firstRun ? 'info' : 'debug'](
        { account: account.label, users: outcome.users, events: outcome.eventTypes.length, deliveries: outcome.deliveries, ms: clock.now() - started },
        outcome.firstRun ? 'first poll of the account committed' : 'poll committed',
      );
      if (outcome.deliveries > 0) worker.wake();
      return true;
    } catch (error) {
      const message = error instanceof Error ? error.message : String(error);
      if (this.#stop.signal.aborted) {
        // Stopping: an abandoned poll is expected; anything else (a failed commit) is still said.
        if (error !== this.#stop.signal.reason && (error as Error).name !== 'AbortError') log.error({ account: account.label, err: message }, 'poll failed while stopping');
        return false;
      }
      status.lastError = message;
      onPoll?.(account, clock.now() - started, error instanceof Error ? error : new Error(message));
      log.error({ account: account.label, err: message }, 'poll failed; nothing was committed, the next poll tries again');
      return false;
    }
  }
}
