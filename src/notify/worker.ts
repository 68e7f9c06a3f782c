import type { Clock } from '../clock.ts';
import { isUserEvent } from '../detect/events.ts';
import type { Logger } from '../log.ts';
import { storable } from '../model.ts';
import { isRetryable, type RetryPolicy, retryDelay } from '../retry.ts';
import type { Delivery, DeliveryOutcome, SettledDelivery, StateStore } from '../store/store.ts';
import { cutsOf, DeliveryError, type Sink } from './sink.ts';

export interface DeliveryPolicy extends Omit<RetryPolicy, 'attempts' | 'maxWaitMs'> {
  /** A delivery still failing this long after its event was committed is dead-lettered. */
  readonly maxAgeMs: number;
  /** Deliveries of one sink in flight at once. */
  readonly concurrency: number;
  /** Longest wait for one send before it counts as a (retryable) failure. */
  readonly sendTimeoutMs: number;
}

export const DEFAULT_DELIVERY_POLICY: DeliveryPolicy = {
  baseDelayMs: 2000,
  maxDelayMs: 10 * 60_000,
  maxAgeMs: 24 * 3_600_000,
  concurrency: 16,
  sendTimeoutMs: 30_000,
};

/** How often an idle sink looks at the outbox for what another process made due (SPEC §3: retried deliveries within 5 s). */
const IDLE_CHECK_MS = 4_000;

export interface DeliveryWorkerOptions {
  readonly store: StateStore;
  readonly sinks: readonly Sink[];
  readonly clock: Clock;
  readonly log: Logger;
  readonly policy?: DeliveryPolicy;
  readonly random?: () => number;
  /** Told every outcome, for metrics. */
  readonly onOutcome?: (sink: string, outcome: DeliveryOutcome['kind']) => void;
}

/** How long an outcome that could not be recorded is tried again before the worker gives up on it (its lease then lapses). */
const RECORD_PATIENCE_MS = 60_000;

/**
 * Drains the outbox: per sink, claims due deliveries oldest first, sends them
 * with bounded concurrency and records each outcome (delivered, retry at T,
 * dead-lettered), those that settle together in one transaction. The retry
 * policy is applied here, once, around every sink: a sink in backoff holds
 * its own queue, so deliveries reach a receiver that was down in the order
 * they were committed; one sink's failures never hold up another's, nor
 * polling.
 */
export class DeliveryWorker {
  readonly #options: DeliveryWorkerOptions;
  readonly #policy: DeliveryPolicy;
  readonly #lanes: Lane[];
  #running = false;
  readonly #stopSends = new AbortController();
  /** Each send in flight, aborted by its own timeout or by shutdown (see #send). */
  readonly #sends = new Set<AbortController>();

  constructor(options: DeliveryWorkerOptions) {
    this.#options = options;
    this.#policy = options.policy ?? DEFAULT_DELIVERY_POLICY;
    this.#lanes = options.sinks.map((sink) => new Lane(sink));
  }

  /** The sinks this worker delivers to. */
  get sinkNames(): readonly string[] {
    return this.#lanes.map((lane) => lane.sink.name);
  }

  /** Starts one loop per sink; they run until stop(). */
  start(): void {
    this.#running = true;
    for (const lane of this.#lanes) lane.loop = this.#loop(lane);
  }

  /** Something was committed: look for due deliveries now rather than at the next timer. */
  wake(): void {
    for (const lane of this.#lanes) lane.wake();
  }

  /**
   * Sends every delivery that is due now, once each (for `once`): no waiting
   * for backoff. Returns how many attempts failed.
   */
  async drainDue(): Promise<{ readonly attempted: number; readonly failed: number }> {
    const results = await Promise.all(this.#lanes.map((lane) => this.#drainLane(lane)));
    return { attempted: results.reduce((n, r) => n + r.attempted, 0), failed: results.reduce((n, r) => n + r.failed, 0) };
  }

  /**
   * Stops claiming, lets sends in flight finish for up to `graceMs`, then
   * abandons the rest: their leases lapse and they go out after the restart.
   */
  async stop(graceMs: number): Promise<void> {
    this.#running = false;
    for (const lane of this.#lanes) lane.wake();
    const loops = Promise.allSettled(this.#lanes.map((lane) => lane.loop));
    const graceOver = new AbortController();
    const timer = this.#options.clock.sleep(graceMs, graceOver.signal).then(
      () => 'timeout' as const,
      () => 'done' as const,
    );
    const first = await Promise.race([loops.then(() => 'done' as const), timer]);
    graceOver.abort();
    if (first === 'timeout') {
      this.#options.log.warn({ graceMs }, 'deliveries still in flight after the grace period; they will be retried after restart');
      this.#stopSends.abort(new Error('shutting down'));
      for (const send of this.#sends) send.abort(this.#stopSends.signal.reason);
      await loops;
    }
  }

  async #loop(lane: Lane): Promise<void> {
    const { store, clock, log } = this.#options;
    while (this.#running) {
      try {
        const { attempted } = await this.#drainLane(lane);
        if (attempted > 0 || !this.#running) continue;
        const due = await store.nextDueAt(lane.sink.name);
        // Wake for new deliveries (wake()), for the next retry, or at least every IDLE_CHECK_MS: a
        // dead letter made pending again by `deliveries retry` in another process goes out that soon.
        const waitMs = Math.min(IDLE_CHECK_MS, due === undefined ? IDLE_CHECK_MS : Math.max(0, due - clock.now()));
        if (waitMs > 0) await lane.sleep(clock, waitMs);
      } catch (error) {
        log.error({ sink: lane.sink.name, err: (error as Error).message }, 'delivery loop failed; trying again in 5 s');
        await lane.sleep(clock, 5000);
      }
    }
  }

  /**
   * Sends what is due, up to `concurrency` deliveries in flight: as soon as some of them are
   * recorded, as many more are claimed, rather than the next batch waiting for the slowest send
   * of the last. Claiming stops at the first retry (it may hold the sink's queue, see #deliver:
   * nothing more is due now), on shutdown and after an error; what is in flight then finishes.
   */
  async #drainLane(lane: Lane): Promise<{ attempted: number; failed: number }> {
    const { store, clock } = this.#options;
    const { concurrency } = this.#policy;
    const drain: Drain = { retried: false };
    const inFlight = new Set<Promise<void>>();
    let attempted = 0;
    let failed = 0;
    let failure: { error: unknown } | undefined;
    let progress = Promise.withResolvers<void>();
    for (;;) {
      const claiming = failure === undefined && !drain.retried && !this.#stopSends.signal.aborted && (this.#running || lane.loop === undefined);
      if (claiming && inFlight.size < concurrency) {
        let batch: Delivery[] = [];
        try {
          batch = await store.claimDue(lane.sink.name, clock.now(), concurrency - inFlight.size);
        } catch (error) {
          failure = { error };
        }
        for (const delivery of batch) {
          const sending: Promise<void> = this.#deliver(lane, delivery, drain)
            .then(
              (kind) => {
                attempted++;
                if (kind !== 'delivered') failed++;
              },
              (error: unknown) => {
                failure ??= { error };
              },
            )
            .finally(() => {
              inFlight.delete(sending);
              progress.resolve();
            });
          inFlight.add(sending);
        }
      }
      if (inFlight.size === 0) break;
      await progress.promise;
      progress = Promise.withResolvers<void>();
    }
    if (failure) throw failure.error;
    return { attempted, failed };
  }

  async #deliver(lane: Lane, delivery: Delivery, drain: Drain): Promise<DeliveryOutcome['kind']> {
    const { store, clock, log } = this.#options;
    const { sink } = lane;
    let outcome: DeliveryOutcome;
    let error: unknown;
    try {
      const message = render(sink, delivery);
      const cuts = cutsOf(message);
      if (cuts.length > 0) log.info({ sink: sink.name, delivery: delivery.id, cuts }, "message shortened to fit the receiver's limits");
      await this.#send(sink, message);
      outcome = { kind: 'delivered', at: clock.now() };
      log.info({ sink: sink.name, delivery: delivery.id, ...about(delivery) }, 'delivered');
    } catch (caught) {
      error = caught;
      if (this.#stopSends.signal.aborted) {
        // Cut off by shutdown: free it at once for whoever runs next (a reload's new worker).
        await this.#settle(lane, { deliveryId: delivery.id, outcome: { kind: 'retry', at: clock.now(), nextAttemptAt: clock.now(), error: 'interrupted by shutdown' } });
        return 'retry';
      }
      outcome = this.#failure(sink, delivery, caught);
      // Claim nothing more now, not even while the sink's hold is being written.
      if (outcome.kind === 'retry') drain.retried = true;
    }
    // The receiver itself is struggling (unreachable, rate limiting, overloaded): the whole sink
    // waits until the latest retry any of its deliveries asked for, this one included, so that
    // once it recovers, deliveries go out in the order they were committed. A plain 500 may be
    // about this one payload: it waits alone, and does not stall the sink for a day.
    if (outcome.kind === 'retry' && (!(error instanceof DeliveryError) || error.receiver)) {
      // A store that cannot hold the sink now still records the retry (#record waits for it): the hold is only an order.
      const retryAt = outcome.nextAttemptAt;
      outcome = { ...outcome, nextAttemptAt: await store.holdSink(sink.name, retryAt, clock.now()).catch(() => retryAt) };
    }
    await this.#settle(lane, { deliveryId: delivery.id, outcome });
    this.#options.onOutcome?.(sink.name, outcome.kind);
    return outcome.kind;
  }

  /**
   * One send, cut off when it takes longer than sendTimeoutMs or when shutdown ends the grace
   * period. A controller and a timer of its own, aborted from stop(): AbortSignal.any() over the
   * shutdown signal cost tens of microseconds a delivery, on the path every delivery waits on.
   */
  async #send(sink: Sink, message: unknown): Promise<void> {
    const send = new AbortController();
    if (this.#stopSends.signal.aborted) send.abort(this.#stopSends.signal.reason);
    const timer = setTimeout(() => send.abort(new DOMException('the send timed out', 'TimeoutError')), this.#policy.sendTimeoutMs).unref();
    this.#sends.add(send);
    try {
      await sink.send(message, send.signal);
    } finally {
      clearTimeout(timer);
      this.#sends.delete(send);
    }
  }

  /**
   * Records an outcome together with the lane's others that settle in the same turn of the event
   * loop (the replies that came in together): one transaction for them all, not one each. Nothing
   * waits for a slower send: what has settled is recorded at the end of the turn it settled in,
   * or, while a record is under way (a networked store), right after it. Resolves once recorded.
   */
  #settle(lane: Lane, settled: SettledDelivery): Promise<void> {
    const recorded = Promise.withResolvers<void>();
    lane.settled.push({ ...settled, recorded });
    this.#recordSoon(lane);
    return recorded.promise;
  }

  #recordSoon(lane: Lane): void {
    if (lane.recording) return;
    lane.recording = true;
    setImmediate(() => void this.#recordSettled(lane));
  }

  async #recordSettled(lane: Lane): Promise<void> {
    const batch = lane.settled.splice(0);
    try {
      await this.#record(lane.sink, batch);
      for (const { recorded } of batch) recorded.resolve();
    } catch (error) {
      for (const { recorded } of batch) recorded.reject(error);
    } finally {
      lane.recording = false;
      if (lane.settled.length > 0) this.#recordSoon(lane);
    }
  }

  /**
   * Records what became of deliveries (in one transaction), again and again
   * while the store cannot take it (a database restarting under us): the
   * receiver already has the messages, and an unrecorded outcome would leave a
   * delivery leased for minutes, holding back every later delivery of its user
   * or behavior, then send it once more. Waits grow to 5 s; shutdown ends them
   * (the leases then hand the deliveries to the next process, as after a
   * crash), and so does a minute without an answer.
   */
  async #record(sink: Sink, settled: readonly SettledDelivery[]): Promise<void> {
    const { store, clock, log } = this.#options;
    const outcomes = settled.map(({ deliveryId, outcome }) => ({ deliveryId, outcome }));
    const deliveries = outcomes.map((o) => o.deliveryId);
    const started = clock.monotonic();
    for (let attempt = 1; ; attempt++) {
      try {
        await store.recordOutcomes(outcomes);
        if (attempt > 1) log.info({ sink: sink.name, deliveries, attempt }, 'outcome recorded once the store answered again');
        return;
      } catch (error) {
        if (this.#stopSends.signal.aborted || clock.monotonic() - started > RECORD_PATIENCE_MS) throw error;
        if (attempt === 1) {
          const kinds = outcomes.map((o) => o.outcome.kind);
          log.warn({ sink: sink.name, deliveries, outcomes: kinds, err: (error as Error).message }, 'could not record the outcome; trying again until the store answers');
        }
        await clock.sleep(Math.min(5000, 250 * 2 ** (attempt - 1)), this.#stopSends.signal).catch(() => {});
      }
    }
  }

  /** The one retry policy: retryable failures back off until the max age, the rest are dead at once. */
  #failure(sink: Sink, delivery: Delivery, error: unknown): DeliveryOutcome {
    const { clock, log } = this.#options;
    const now = clock.now();
    // Stored as the delivery's last error: a receiver's raw reply (an SMTP greeting) may hold a NUL, which PostgreSQL refuses.
    const message = storable(error instanceof Error ? error.message : String(error));
    const attempt = delivery.attempts + 1;
    const context = { sink: sink.name, delivery: delivery.id, account: delivery.accountId, ...about(delivery), attempt, err: message };
    if (!isRetryable(error)) {
      log.error(context, 'delivery refused permanently; dead-lettered');
      return { kind: 'dead', at: now, error: message };
    }
    const nextAttemptAt = now + retryDelay(error, attempt, { ...this.#policy, attempts: Infinity, maxWaitMs: Infinity }, this.#options.random ?? Math.random);
    if (nextAttemptAt - delivery.since > this.#policy.maxAgeMs) {
      log.error(context, `delivery still failing after ${attempt} attempts; past its max age, dead-lettered`);
      return { kind: 'dead', at: now, error: `gave up after ${attempt} attempts: ${message}` };
    }
    log.warn({ ...context, retryAt: new Date(nextAttemptAt).toISOString() }, 'delivery failed; will retry');
    return { kind: 'retry', at: now, nextAttemptAt, error: message };
  }
}

/**
 * The message of `delivery` for `sink`: its events', or, for a close the config asked for with
 * no event of its own (`retire`), the sink's close of that incident. A sink that opens no
 * incidents (a retire moved to it by an operator) cannot send one: permanent.
 */
function render(sink: Sink, delivery: Delivery): unknown {
  const { incident, digest } = delivery;
  if (digest) {
    if (!sink.renderDigest) throw new DeliveryError(`sink ${sink.name} takes no digest`, { retryable: false });
    return sink.renderDigest(digest);
  }
  if (incident?.action !== 'retire') return sink.render(delivery.events);
  if (!sink.renderClose) throw new DeliveryError(`sink ${sink.name} opens no incidents, so it cannot close incident ${incident.key}`, { retryable: false });
  return sink.renderClose(incident.key, incident.note ?? 'the config no longer covers it');
}

/** What a delivery is about, for its log lines: its event types and ids, and the users (email) or behaviors (id) they concern, a few of each. */
function about(delivery: Delivery): { types: string[]; events: string[]; about: string[] } {
  const few = <T>(items: T[]) => [...new Set(items)].slice(0, 5);
  if (delivery.digest) return { types: ['digest'], events: [delivery.digest.id], about: [`digest of ${delivery.digest.timestamp}`] };
  return {
    types: few(delivery.events.map((e) => e.type)),
    events: few(delivery.events.map((e) => e.id)),
    about: few(delivery.events.map((e) => (isUserEvent(e) ? e.data.user.email : `behavior ${e.data.behavior.id}`))),
  };
}

/** One pass of a lane over what is due: whether a delivery of it is to be retried (then nothing more is claimed). */
interface Drain {
  retried: boolean;
}

/** One sink's loop and the means to wake it early, and its outcomes waiting to be recorded. */
class Lane {
  readonly sink: Sink;
  loop: Promise<void> | undefined;
  /** Outcomes settled since the last record began, each with the promise its delivery awaits. */
  readonly settled: (SettledDelivery & { readonly recorded: PromiseWithResolvers<void> })[] = [];
  /** A record of this lane is scheduled or under way: what settles meanwhile waits for the next. */
  recording = false;
  #wake = new AbortController();
  constructor(sink: Sink) {
    this.sink = sink;
  }
  wake(): void {
    this.#wake.abort();
  }
  async sleep(clock: Clock, ms: number): Promise<void> {
    if (this.#wake.signal.aborted) {
      this.#wake = new AbortController();
      return;
    }
    try {
      await clock.sleep(ms, this.#wake.signal);
    } catch {
      // woken early
    }
    if (this.#wake.signal.aborted) this.#wake = new AbortController();
  }
}
