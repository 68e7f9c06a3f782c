import { randomUUID } from 'node:crypto';
import { Agent } from 'undici';
import { type Clock, systemClock } from '../clock.ts';
import { BudgetRegistry } from '../cloudflare/budget.ts';
import { CloudflareClient } from '../cloudflare/client.ts';
import type { Config } from '../config/config.ts';
import type { Logger } from '../log.ts';
import { createSink, type SinkDeps } from '../notify/sinks/create.ts';
import { DEFAULT_DELIVERY_POLICY, DeliveryWorker } from '../notify/worker.ts';
import { SqliteStore } from '../store/sqlite.ts';
import { Daemon } from './daemon.ts';
import { AccountPoller } from './poller.ts';

export interface AssembleDeps extends Partial<SinkDeps> {
  readonly log: Logger;
  readonly newId?: () => string;
}

/**
 * Builds the pipeline a config describes: one Cloudflare client per
 * credential (sharing its request budget), one poller per account, the sinks,
 * the delivery worker and the store, driven by one Daemon.
 */
export function assemble(config: Config, deps: AssembleDeps): Daemon {
  const clock = deps.clock ?? systemClock;
  const log = deps.log;
  const dispatcher = new Agent({ connections: 16, keepAliveTimeout: 30_000 });
  const sinks = config.sinks.map((sinkConfig) => ({ config: sinkConfig, sink: createSink(sinkConfig, { clock, dispatcher, ...deps }) }));
  const store = SqliteStore.open(config.state.sqlite);

  const budgets = new BudgetRegistry(config.cloudflare.requestsPer5Min, clock);
  const clients = new Map<string, CloudflareClient>();
  const clientFor = (credential: Config['accounts'][number]['credential']) => {
    let client = clients.get(credential.id);
    if (!client) {
      client = new CloudflareClient({
        baseUrl: config.cloudflare.apiBaseUrl,
        credential,
        budget: budgets.for(credential.id),
        clock,
        log: log.child({ credential: credential.id }),
        dispatcher,
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
        diff: { firstRun: config.firstRun, lowered: config.notify.lowered },
        enrich: config.notify.enrich,
        sinks,
        newId: deps.newId ?? randomUUID,
      }),
  );
  const worker = new DeliveryWorker({
    store,
    sinks: sinks.map((s) => s.sink),
    clock,
    log,
    policy: { ...DEFAULT_DELIVERY_POLICY, maxAgeMs: config.notify.maxAgeMs },
  });
  return new Daemon({ pollers, worker, store, clock, log, pollIntervalMs: config.pollIntervalMs, onStopped: () => dispatcher.close() });
}
