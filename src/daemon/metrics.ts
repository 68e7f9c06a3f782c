import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { ApiCall, SkippedKind } from '../cloudflare/client.ts';
import { RISK_LEVELS } from '../model.ts';
import type { DeliveryOutcome, StateStore } from '../store/store.ts';
import type { PollOutcome } from './poller.ts';

/** What keepAccounts needs of a metric with an `account` label. */
interface PerAccountMetric {
  get(): Promise<{ values: readonly { labels: Partial<Record<string, string | number>> }[] }>;
  remove(labels: Record<string, string | number>): void;
}

/**
 * Every series of SPEC §7, prefixed `riskwatch_`, plus Node's process metrics.
 * Components report through the small methods here; pending and
 * dead-lettered counts are read from the store at scrape time.
 */
export class Metrics {
  readonly registry = new Registry();
  readonly #pollDuration: Histogram<'account' | 'outcome'>;
  readonly #pollErrors: Counter<'account'>;
  readonly #usersTracked: Gauge<'account'>;
  readonly #events: Counter<'account' | 'type'>;
  readonly #deliveries: Counter<'sink' | 'outcome'>;
  readonly #requests: Counter<'call' | 'status'>;
  readonly #rateLimited: Counter<'call'>;
  readonly #skipped: Counter<'account' | 'kind'>;
  readonly #users: Gauge<'account' | 'level'>;
  readonly #silenced: Counter<'account'>;
  readonly #flapping: Gauge<'account'>;
  readonly #flappingSuppressed: Counter<'account'>;
  readonly #reloadOk: Gauge;
  readonly #reloadAt: Gauge;
  #store: StateStore | undefined;
  #sinks: () => readonly string[] = () => [];
  #leadership: () => readonly { account: string; leads: boolean }[] = () => [];

  constructor() {
    const registers = [this.registry];
    collectDefaultMetrics({ register: this.registry, prefix: 'riskwatch_' });
    this.#pollDuration = new Histogram({
      name: 'riskwatch_poll_duration_seconds',
      help: 'Time one poll of one account took, from the first request to the commit.',
      labelNames: ['account', 'outcome'],
      buckets: [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300],
      registers,
    });
    this.#pollErrors = new Counter({ name: 'riskwatch_poll_errors_total', help: 'Polls that failed and committed nothing.', labelNames: ['account'], registers });
    const leadership = () => this.#leadership();
    // Accounts another replica leads now: this one's last counts of them are stale, and a sum over
    // replicas must count each account once (its leader's). The next poll here sets them again.
    const notLed = () => leadership().flatMap((a) => (a.leads ? [] : [a.account]));
    this.#usersTracked = new Gauge({
      name: 'riskwatch_users_tracked',
      help: 'Users in the last committed summary of each account this process leads.',
      labelNames: ['account'],
      registers,
      collect() {
        for (const account of notLed()) this.remove({ account });
      },
    });
    this.#users = new Gauge({
      name: 'riskwatch_users',
      help: 'Users at each level in the last committed summary of each account this process leads: who is at risk, over time.',
      labelNames: ['account', 'level'],
      registers,
      collect() {
        for (const account of notLed()) for (const level of RISK_LEVELS) this.remove({ account, level });
      },
    });
    this.#silenced = new Counter({
      name: 'riskwatch_events_silenced_total',
      help: 'Events an active silence muted: recorded, sent to no sink.',
      labelNames: ['account'],
      registers,
    });
    this.#flapping = new Gauge({
      name: 'riskwatch_users_flapping',
      help: 'Users flapping now (notify.flapping): their level changes are recorded and sent to no sink until they settle.',
      labelNames: ['account'],
      registers,
    });
    this.#flappingSuppressed = new Counter({
      name: 'riskwatch_events_flapping_suppressed_total',
      help: 'Level changes of flapping users: recorded, sent to no sink.',
      labelNames: ['account'],
      registers,
    });
    this.#reloadOk = new Gauge({
      name: 'riskwatch_config_last_reload_successful',
      help: '1 when the last read of the config (start or SIGHUP) succeeded; 0 while a broken one was refused and the previous runs on.',
      registers,
    });
    this.#reloadAt = new Gauge({ name: 'riskwatch_config_last_reload_success_timestamp_seconds', help: 'When the config was last read successfully (start or SIGHUP).', registers });
    this.#events = new Counter({ name: 'riskwatch_events_total', help: 'Events committed, by type.', labelNames: ['account', 'type'], registers });
    this.#deliveries = new Counter({
      name: 'riskwatch_deliveries_total',
      help: 'Delivery attempts by sink and outcome (delivered, retry, dead).',
      labelNames: ['sink', 'outcome'],
      registers,
    });
    this.#requests = new Counter({
      name: 'riskwatch_cloudflare_requests_total',
      help: 'Cloudflare API requests by call and HTTP status ("error" when no response came).',
      labelNames: ['call', 'status'],
      registers,
    });
    this.#skipped = new Counter({
      name: 'riskwatch_records_skipped_total',
      help: 'Records of API answers set aside, the state before them kept: malformed ones, and users listed at two levels in one read.',
      labelNames: ['account', 'kind'],
      registers,
    });
    this.#rateLimited = new Counter({ name: 'riskwatch_cloudflare_rate_limited_total', help: 'Cloudflare answers of 429.', labelNames: ['call'], registers });
    new Gauge({
      name: 'riskwatch_account_leader',
      help: '1 for each account this process polls (leads), 0 for one another replica leads.',
      labelNames: ['account'],
      registers,
      collect() {
        this.reset();
        for (const { account, leads } of leadership()) this.set({ account }, leads ? 1 : 0);
      },
    });
    const store = () => this.#store;
    let counts: Promise<Map<string, { pending: number; dead: number }>> | undefined;
    // While the store cannot be read, the last counts stand: a scrape never fails for it (readiness says why).
    let last = new Map<string, { pending: number; dead: number }>();
    // Every configured sink has its series from the start (0), so an alert on them has something to read.
    const sinks = () => this.#sinks();
    // One store read per scrape serves both gauges.
    const read = () =>
      (counts ??= (store()?.deliveryCounts() ?? Promise.resolve(new Map()))
        .then(
          (read) => (last = read),
          () => last,
        )
        .finally(() => setImmediate(() => (counts = undefined))));
    new Gauge({
      name: 'riskwatch_deliveries_pending',
      help: 'Deliveries waiting to be sent (including those waiting to be retried), by sink.',
      labelNames: ['sink'],
      registers,
      async collect() {
        this.reset();
        for (const sink of sinks()) this.set({ sink }, 0);
        for (const [sink, c] of await read()) this.set({ sink }, c.pending);
      },
    });
    let lastSilences = 0;
    new Gauge({
      name: 'riskwatch_silences_active',
      help: 'Silences in force now (silence add; they end by themselves).',
      registers,
      async collect() {
        const source = store();
        if (source)
          lastSilences = await source.listSilences({ all: false, now: Date.now() }).then(
            (active) => active.length,
            () => lastSilences,
          );
        this.set(lastSilences);
      },
    });
    new Gauge({
      name: 'riskwatch_deliveries_dead_lettered',
      help: 'Deliveries given up on and kept in the store, by sink.',
      labelNames: ['sink'],
      registers,
      async collect() {
        this.reset();
        for (const sink of sinks()) this.set({ sink }, 0);
        for (const [sink, c] of await read()) this.set({ sink }, c.dead);
      },
    });
  }

  /** Which accounts this process leads, read at scrape time. */
  watchLeadership(leadership: () => readonly { account: string; leads: boolean }[]): void {
    this.#leadership = leadership;
  }

  /** The configured sinks: each has its outbox series, 0 until it has work. */
  watchSinks(sinks: () => readonly string[]): void {
    this.#sinks = sinks;
  }

  /** The config was read at start or on SIGHUP (`ok`), or a reload failed and the previous config runs on (Alertmanager's pair). */
  configLoaded(ok: boolean, atMs: number): void {
    this.#reloadOk.set(ok ? 1 : 0);
    if (ok) this.#reloadAt.set(atMs / 1000);
  }

  /** The store the outbox gauges read at scrape time. */
  watchStore(store: StateStore): void {
    this.#store = store;
  }

  /**
   * After a reload: drops every per-account series of an account no longer
   * configured (`accounts` are the labels now in use), so that an account
   * removed or renamed is not exported forever.
   */
  async keepAccounts(accounts: Iterable<string>): Promise<void> {
    const keep = new Set(accounts);
    const perAccount: [PerAccountMetric, readonly string[]][] = [
      [this.#pollDuration, ['account', 'outcome']],
      [this.#pollErrors, ['account']],
      [this.#usersTracked, ['account']],
      [this.#users, ['account', 'level']],
      [this.#silenced, ['account']],
      [this.#flapping, ['account']],
      [this.#flappingSuppressed, ['account']],
      [this.#events, ['account', 'type']],
      [this.#skipped, ['account', 'kind']],
    ];
    for (const [metric, labelNames] of perAccount) {
      for (const { labels } of (await metric.get()).values) {
        const account = labels.account;
        if (account === undefined || keep.has(String(account))) continue;
        // A histogram's values carry `le` too: remove() wants exactly the metric's own labels.
        metric.remove(Object.fromEntries(labelNames.map((name) => [name, labels[name] ?? ''])));
      }
    }
  }

  pollSucceeded(account: string, seconds: number, outcome: Pick<PollOutcome, 'users' | 'levels' | 'silenced' | 'eventTypes' | 'flapping' | 'flappingSuppressed'>): void {
    this.#pollDuration.observe({ account, outcome: 'ok' }, seconds);
    this.#usersTracked.set({ account }, outcome.users);
    for (const [level, n] of Object.entries(outcome.levels)) this.#users.set({ account, level }, n);
    for (const type of outcome.eventTypes) this.#events.inc({ account, type });
    if (outcome.silenced > 0) this.#silenced.inc({ account }, outcome.silenced);
    this.#flapping.set({ account }, outcome.flapping);
    if (outcome.flappingSuppressed > 0) this.#flappingSuppressed.inc({ account }, outcome.flappingSuppressed);
  }

  pollFailed(account: string, seconds: number): void {
    this.#pollDuration.observe({ account, outcome: 'error' }, seconds);
    this.#pollErrors.inc({ account });
  }

  cloudflareResponse(call: ApiCall, status: number | 'error'): void {
    this.#requests.inc({ call, status: String(status) });
    if (status === 429) this.#rateLimited.inc({ call });
  }

  recordsSkipped(account: string, kind: SkippedKind, count: number): void {
    this.#skipped.inc({ account, kind }, count);
  }

  delivery(sink: string, outcome: DeliveryOutcome['kind']): void {
    this.#deliveries.inc({ sink, outcome });
  }
}
