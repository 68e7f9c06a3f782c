import type { Server } from 'node:http';
import { type Clock, systemClock } from '../clock.ts';
import { BudgetRegistry } from '../cloudflare/budget.ts';
import type { Config, SinkConfig, StateConfig } from '../config/config.ts';
import { HttpPool } from '../http.ts';
import type { Logger } from '../log.ts';
import { openStore } from '../store/open.ts';
import { type StateStore, StoreUnavailableError } from '../store/store.ts';
import { VERSION } from '../version.ts';
import { assemble } from './assemble.ts';
import { type Daemon, pruneHistory, type Readiness } from './daemon.ts';
import { boundAddress, type ConsoleHandler, startHttp } from './http.ts';
import { applyIncidentPlan, type IncidentPlan, planIncidentCloses } from './incidents.ts';
import { Metrics } from './metrics.ts';

export interface ServiceDeps {
  readonly log: Logger;
  readonly clock?: Clock;
  readonly writeLine?: (line: string) => void;
  /** Aborted when the process is asked to stop while still starting (waiting for its database, say). */
  readonly signal?: AbortSignal;
}

/** Longest wait between two tries to reach the state database at start. */
const MAX_OPEN_RETRY_MS = 30_000;

/**
 * `run` as a service: owns the state file, the HTTP endpoint and the metrics
 * for the life of the process, and the Daemon built from the current config,
 * which a reload (SIGHUP) replaces without losing state or pending deliveries.
 */
export class Service {
  #config: Config;
  /** Both set by start(), before anything can reach them. */
  #daemon!: Daemon;
  #http!: Server;
  readonly #store: StateStore;
  readonly #metrics: Metrics;
  readonly #deps: ServiceDeps;
  readonly #clock: Clock;
  /** What a reload cannot change: as the process started. */
  readonly #state: StateConfig;
  readonly #listen: Config['http'];
  readonly #logFormat: Config['log']['format'];
  /** Kept across reloads: Cloudflare's window and a 429's block do not restart with the config. */
  #budgets: BudgetRegistry;
  readonly #pool = new HttpPool();
  #pruning: NodeJS.Timeout | undefined;
  /** Sinks of an old key kept to close incidents with it (daemon/incidents.ts), while they have deliveries. */
  #retired: readonly SinkConfig[] = [];

  private constructor(config: Config, store: StateStore, metrics: Metrics, deps: ServiceDeps) {
    this.#config = config;
    this.#state = config.state;
    this.#listen = config.http;
    this.#logFormat = config.log.format;
    this.#store = store;
    this.#metrics = metrics;
    this.#deps = deps;
    this.#clock = deps.clock ?? systemClock;
    this.#budgets = new BudgetRegistry(config.cloudflare.requestsPer5Min, this.#clock, store.grants);
  }

  #assemble(config: Config, previous: Daemon | undefined, retired: readonly SinkConfig[]): Promise<Daemon> {
    if (this.#budgets.limit !== config.cloudflare.requestsPer5Min) this.#budgets = this.#budgets.withLimit(config.cloudflare.requestsPer5Min);
    return assemble(config, {
      store: this.#store,
      metrics: this.#metrics,
      budgets: this.#budgets,
      http: this.#pool,
      retired,
      ...(previous ? { status: previous.status } : {}),
      ...this.#deps,
    });
  }

  /**
   * What this config load does to open incidents it no longer covers (planIncidentCloses), with
   * the sinks of old keys still needed: those the plan names, and those kept from earlier
   * reloads that have deliveries left. A store that cannot say now leaves them to the next load.
   */
  async #planIncidents(config: Config, held: readonly SinkConfig[]): Promise<IncidentPlan> {
    try {
      const plan = await planIncidentCloses(this.#store, config, held);
      const counts = await this.#store.deliveryCounts();
      const kept = this.#retired.filter((s) => !plan.retired.some((r) => r.name === s.name) && (counts.get(s.name)?.pending ?? 0) + (counts.get(s.name)?.dead ?? 0) > 0);
      return { ...plan, retired: [...plan.retired, ...kept] };
    } catch (error) {
      this.#deps.log.error({ err: (error as Error).message }, 'could not check the open incidents against the config; trying again at the next load');
      return { changes: [], retired: this.#retired, stranded: [] };
    }
  }

  async #applyIncidents(plan: IncidentPlan): Promise<void> {
    this.#retired = plan.retired;
    await applyIncidentPlan(this.#store, plan, this.#deps.log, this.#clock.now()).catch((error: unknown) => {
      this.#deps.log.error({ err: (error as Error).message }, 'could not close the incidents the config no longer covers; trying again at the next load');
    });
  }

  static async start(config: Config, deps: ServiceDeps): Promise<Service> {
    const clock = deps.clock ?? systemClock;
    const store = await openWithRetry(config, deps.log, clock, deps.signal);
    if (store.replica !== undefined) deps = { ...deps, log: deps.log.child({ replica: store.replica }) };
    const metrics = new Metrics();
    metrics.watchStore(store);
    metrics.configLoaded(true, clock.now());
    const service = new Service(config, store, metrics, deps);
    let incidents: IncidentPlan;
    try {
      incidents = await service.#planIncidents(config, []);
      service.#daemon = await service.#assemble(config, undefined, incidents.retired);
      service.#http = await startHttp(config.http.listen, () => service.readiness(), metrics, { console: await service.#console(config) });
    } catch (error) {
      await store.close();
      service.#pool.close();
      throw error;
    }
    await service.#applyIncidents(incidents);
    metrics.watchLeadership(() => service.leadership());
    metrics.watchSinks(() => service.#config.sinks.map((sink) => sink.name));
    service.#daemon.start();
    service.#schedulePruning();
    deps.log.info(
      { pid: process.pid, version: VERSION, accounts: config.accounts.length, sinks: config.sinks.length, pollIntervalMs: config.pollIntervalMs, http: boundAddress(service.#http) },
      'riskwatch started',
    );
    await service.#reportOrphans();
    return service;
  }

  /**
   * The web console and /api/ (SPEC §10) on this store, reading the config as reloaded; loaded only
   * when http.console is on, so that it costs nothing otherwise.
   */
  async #console(config: Config): Promise<ConsoleHandler | undefined> {
    if (!config.http.console) return undefined;
    const { createConsole } = await import('../web/console.ts');
    return createConsole({ config: () => this.#config, store: this.#store, now: () => this.#clock.now(), log: this.#deps.log });
  }

  /** Where /healthz, /readyz and /metrics are served. */
  get httpAddress(): string {
    return boundAddress(this.#http);
  }

  /**
   * Ready when every account this process leads was polled successfully within
   * 3 × poll_interval (SPEC §7) and the store answers; replicas also say who they are and what they lead.
   */
  readiness(): Readiness & { replica?: string; leads?: string[] } {
    const state = this.#daemon.readiness(3 * this.#config.pollIntervalMs);
    if (this.#store.replica === undefined) return state;
    const leads = this.leadership().flatMap((a) => (a.leads ? [a.account] : []));
    return { ...state, replica: this.#store.replica, leads };
  }

  /**
   * Swaps in a new config: the old pollers and worker stop (deliveries in
   * flight finish), new ones start on the same state file. What cannot change
   * while running (the state file, the HTTP address) keeps its old value.
   */
  async reload(next: Config): Promise<void> {
    const { log } = this.#deps;
    // What cannot change under a running process keeps its value until the next restart.
    if (stateKey(next.state) !== stateKey(this.#state)) log.warn('state changed: it takes effect at the next restart');
    const { listen: was } = this.#listen;
    const { listen: now } = next.http;
    if (was.host !== now.host || was.port !== now.port) log.warn('http.listen changed: it takes effect at the next restart');
    if (next.http.console !== this.#listen.console || next.http.token?.reveal() !== this.#listen.token?.reveal()) log.warn('http.console or http.token changed: it takes effect at the next restart');
    if (next.log.format !== this.#logFormat) log.warn('log.format changed: it takes effect at the next restart');
    log.level = next.log.level;
    const previous = this.#daemon;
    // The sinks the running config holds can still close what the new one no longer covers.
    const incidents = await this.#planIncidents(next, [...this.#config.sinks, ...this.#retired]);
    // Built before the previous one stops: should building fail (a sink's module that cannot be
    // loaded), the previous daemon runs on, as a refused config leaves it.
    const daemon = await this.#assemble(next, previous, incidents.retired);
    await previous.stop();
    await this.#applyIncidents(incidents);
    // The old daemon reports no more: an account removed or renamed leaves no series behind.
    await this.#metrics.keepAccounts(next.accounts.map((a) => a.label));
    this.#daemon = daemon;
    this.#config = next;
    this.#daemon.start();
    this.#metrics.configLoaded(true, this.#clock.now());
    log.info({ accounts: next.accounts.length, sinks: next.sinks.length }, 'config reloaded');
    await this.#reportOrphans();
  }

  /** A SIGHUP's config was refused: the previous one runs on, and monitoring sees it. */
  reloadFailed(): void {
    this.#metrics.configLoaded(false, this.#clock.now());
  }

  async stop(): Promise<void> {
    clearInterval(this.#pruning);
    await this.#daemon.stop();
    // What this replica took from the fleet's Cloudflare budget and did not use goes back to the others.
    await this.#budgets.release();
    this.#http.closeAllConnections();
    await new Promise<void>((resolve) => this.#http.close(() => resolve()));
    await this.#store.close();
    this.#pool.close();
    this.#deps.log.info('stopped');
  }

  /** Whether this process leads each configured account (all of them, unless replicas share the store). */
  leadership(): { account: string; leads: boolean }[] {
    const leads = this.#daemon.leads;
    return this.#config.accounts.map((a) => ({ account: a.label, leads: leads.has(a.id) }));
  }

  /** Hourly, and once at start: delivered history past its keeping goes. */
  #schedulePruning(): void {
    const prune = async () => {
      try {
        // Wall clock: the cut-off is compared with the timestamps stored with the deliveries.
        const now = this.#clock.now();
        const removed = await pruneHistory(this.#store, this.#config.state.historyMs, now);
        if (removed.deliveries + removed.events > 0) this.#deps.log.info(removed, 'pruned delivered history');
      } catch (error) {
        this.#deps.log.error({ err: (error as Error).message }, 'could not prune delivered history');
      }
    };
    void prune();
    this.#pruning = setInterval(prune, 3_600_000);
    this.#pruning.unref();
  }

  /** Deliveries for sinks no longer configured are kept, never dropped, and said out loud (when the store answers). */
  async #reportOrphans(): Promise<void> {
    const configured = new Set([...this.#config.sinks, ...this.#retired].map((s) => s.name));
    let bySink: Map<string, { pending: number; dead: number }>;
    try {
      bySink = await this.#store.deliveryCounts();
    } catch (error) {
      this.#deps.log.warn({ err: (error as Error).message }, 'could not count pending deliveries per sink');
      return;
    }
    for (const [sink, counts] of bySink) {
      if (!configured.has(sink) && counts.pending > 0) {
        this.#deps.log.warn(
          { sink, pending: counts.pending },
          `${counts.pending} pending deliveries are for sink "${sink}", which is not configured; they are kept and go out if the sink comes back, or move them with riskwatch deliveries retry --sink ${sink} --to NEW`,
        );
      }
    }
  }
}

/** What names a store: its file, or its whole URL (a Secret prints masked, so a new password would compare equal). */
function stateKey(state: StateConfig): string {
  return state.kind === 'sqlite' ? `sqlite:${state.file}` : state.url.reveal();
}

/**
 * The store the config names. A database that is not up yet (a replica
 * starting before it, a failover) is waited for with backoff, saying so;
 * one that refuses us (a wrong password, a newer schema) is an error at once.
 */
async function openWithRetry(config: Config, log: Logger, clock: Clock, signal?: AbortSignal): Promise<StateStore> {
  for (let waitMs = 1000; ; waitMs = Math.min(MAX_OPEN_RETRY_MS, waitMs * 2)) {
    try {
      return await openStore(config, { warn: (message) => log.warn(message) });
    } catch (error) {
      if (!(error instanceof StoreUnavailableError) || signal?.aborted) throw error;
      log.warn({ err: error.message, retryInMs: waitMs }, 'the state store cannot be reached yet; trying again');
      await clock.sleep(waitMs, signal).catch(() => {});
      if (signal?.aborted) throw error;
    }
  }
}
