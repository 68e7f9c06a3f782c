import { type Clock, systemClock } from '../clock.ts';
import { BudgetRegistry } from '../cloudflare/budget.ts';
import { CloudflareClient } from '../cloudflare/client.ts';
import type { Config, Credential, SinkConfig } from '../config/config.ts';
import { HttpPool } from '../http.ts';
import type { Logger } from '../log.ts';
import { DigestScheduler } from '../notify/digest.ts';
import { createSink } from '../notify/sinks/create.ts';
import { DEFAULT_DELIVERY_POLICY, DeliveryWorker } from '../notify/worker.ts';
import type { StateStore } from '../store/store.ts';
import { type AccountStatus, Daemon } from './daemon.ts';
import type { Metrics } from './metrics.ts';
import { AccountPoller } from './poller.ts';

const { randomUUID } = process.getBuiltinModule('node:crypto');

export interface AssembleDeps {
  readonly store: StateStore;
  /** Request budgets and the connection pool to use; kept by the caller across reloads. Created here when left out. */
  readonly budgets?: BudgetRegistry;
  readonly http?: HttpPool;
  /** What the previous daemon knew of each account (a reload keeps readiness). */
  readonly status?: ReadonlyMap<string, AccountStatus>;
  readonly log: Logger;
  readonly metrics?: Metrics;
  readonly clock?: Clock;
  readonly newId?: () => string;
  /** Where console sinks write; stdout when left out. */
  readonly writeLine?: (line: string) => void;
  /** Sinks of an old key that only close incidents (daemon/incidents.ts): drained, never routed to. */
  readonly retired?: readonly SinkConfig[];
}

/**
 * Builds the pipeline a config describes over an open store: one Cloudflare
 * client per credential (sharing its request budget), one poller per account,
 * the sinks and the delivery worker, driven by one Daemon.
 */
export async function assemble(config: Config, deps: AssembleDeps): Promise<Daemon> {
  const { store, log, metrics } = deps;
  const clock = deps.clock ?? systemClock;
  const ownHttp = deps.http ? undefined : new HttpPool();
  const http = deps.http ?? ownHttp!;
  const build = (sinkConfig: SinkConfig) => createSink(sinkConfig, { clock, http, ...(deps.writeLine ? { writeLine: deps.writeLine } : {}) });
  const sinks = await Promise.all(config.sinks.map(async (sinkConfig) => ({ config: sinkConfig, sink: await build(sinkConfig) })));
  const retired = await Promise.all((deps.retired ?? []).map(build));

  // A store shared by replicas shares each credential's budget too (SPEC §11), `once` beside them included.
  const ownBudgets = deps.budgets ? undefined : new BudgetRegistry(config.cloudflare.requestsPer5Min, clock, store.grants);
  const budgets = deps.budgets ?? ownBudgets!;
  const clients = new Map<string, CloudflareClient>();
  const labels = new Map(config.accounts.map((account) => [account.id, account.label]));
  const clientFor = (credential: Credential) => {
    let client = clients.get(credential.id);
    if (!client) {
      client = new CloudflareClient({
        baseUrl: config.cloudflare.apiBaseUrl,
        credential,
        budget: budgets.for(
          credential.id,
          config.accounts.filter((a) => a.credential.id === credential.id).map((a) => a.id),
        ),
        clock,
        log: log.child({ credential: credential.id }),
        http,
        summaryPaging: config.cloudflare.summaryPaging,
        ...(metrics
          ? {
              onResponse: (call, status) => metrics.cloudflareResponse(call, status),
              onSkipped: (accountId, kind, count) => metrics.recordsSkipped(labels.get(accountId) ?? accountId, kind, count),
            }
          : {}),
      });
      clients.set(credential.id, client);
    }
    return client;
  };

  const pollers = config.accounts.map(
    (account) =>
      new AccountPoller({
        account,
        client: clientFor(account.credential),
        store,
        clock,
        log,
        diff: { firstRun: config.firstRun },
        route: { lowered: config.notify.lowered },
        enrich: config.notify.enrich,
        flapping: config.notify.flapping,
        sinks,
        newId: deps.newId ?? randomUUID,
      }),
  );
  const worker = new DeliveryWorker({
    store,
    sinks: [...sinks.map((s) => s.sink), ...retired],
    clock,
    log,
    policy: { ...DEFAULT_DELIVERY_POLICY, maxAgeMs: config.notify.maxAgeMs },
    ...(metrics ? { onOutcome: (sink, outcome) => metrics.delivery(sink, outcome) } : {}),
  });
  return new Daemon({
    pollers,
    worker,
    digests: new DigestScheduler({ store, sinks: config.sinks, accounts: config.accounts, clock, log }),
    store,
    clock,
    log,
    pollIntervalMs: config.pollIntervalMs,
    onStopped: async () => {
      await ownBudgets?.release();
      ownHttp?.close();
    },
    ...(deps.status ? { status: deps.status } : {}),
    ...(metrics
      ? {
          onPoll: (account, ms, result) => (result instanceof Error ? metrics.pollFailed(account.label, ms / 1000) : metrics.pollSucceeded(account.label, ms / 1000, result)),
        }
      : {}),
  });
}
