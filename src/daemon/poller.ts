import type { Clock } from '../clock.ts';
import type { CloudflareClient } from '../cloudflare/client.ts';
import type { AccountConfig, SinkConfig } from '../config/config.ts';
import { type CurrentSnapshot, type DiffOptions, diff, type PreviousSnapshot, type SnapshotDelta } from '../detect/diff.ts';
import { buildEvents } from '../detect/events.ts';
import type { Logger } from '../log.ts';
import type { Behavior, RiskLevel } from '../model.ts';
import { routeEvents } from '../notify/route.ts';
import type { Sink } from '../notify/sink.ts';
import { StaleSnapshotError, type StateStore } from '../store/store.ts';

export interface PollOutcome {
  readonly users: number;
  readonly events: number;
  readonly deliveries: number;
  readonly firstRun: boolean;
}

export interface AccountPollerOptions {
  readonly account: AccountConfig;
  readonly client: CloudflareClient;
  readonly store: StateStore;
  readonly clock: Clock;
  readonly log: Logger;
  readonly diff: DiffOptions;
  readonly sinks: readonly { readonly config: SinkConfig; readonly sink: Pick<Sink, 'grouping'> }[];
  readonly newId: () => string;
}

/**
 * One poll of one account, start to commit: fetch the summary and behaviors,
 * diff them with the last committed snapshot, build and route the events, and
 * commit it all in one transaction. A poll that fails anywhere commits nothing.
 * The last snapshot is kept in memory between polls (levels only, so it stays
 * small) and reloaded from the store whenever a commit did not go as expected.
 */
export class AccountPoller {
  readonly #options: AccountPollerOptions;
  #previous: { version: number; snapshot: PreviousSnapshot | undefined } | undefined;

  constructor(options: AccountPollerOptions) {
    this.#options = options;
  }

  get account(): AccountConfig {
    return this.#options.account;
  }

  async poll(signal?: AbortSignal): Promise<PollOutcome> {
    const { account, client, store, clock } = this.#options;
    const polledAt = clock.now();
    const [summary, behaviorList] = await Promise.all([client.fetchSummary(account.id, signal), client.fetchBehaviors(account.id, signal)]);
    signal?.throwIfAborted();

    const previous = this.#previous ?? (await store.loadSnapshot(account.id));
    const current: CurrentSnapshot = {
      users: summary.users,
      behaviors: behaviorList.behaviors,
      skippedUserIds: summary.skippedUserIds,
      unidentifiedSkips: summary.unidentifiedSkips,
      skippedBehaviorIds: behaviorList.skippedIds,
    };
    const { transitions, delta } = diff(previous.snapshot, current, this.#options.diff);
    const departed = transitions.flatMap((t) => (t.kind === 'user' && !t.user ? [t.userId] : []));
    const events = buildEvents(transitions, {
      account: { id: account.id, name: account.name ?? null },
      at: polledAt,
      newId: this.#options.newId,
      departedUsers: departed.length > 0 ? await store.loadUsers(account.id, departed) : new Map(),
    });
    const deliveries = routeEvents(account.id, events, this.#options.sinks);

    let version: number;
    try {
      version = await store.commitPoll({ accountId: account.id, expectedVersion: previous.version, polledAt, delta, events, deliveries });
    } catch (error) {
      // Whatever happened, the store is the truth: read it again next time.
      this.#previous = undefined;
      if (error instanceof StaleSnapshotError) this.#options.log.warn({ account: account.label }, error.message);
      throw error;
    }
    this.#previous = { version, snapshot: applyDelta(previous.snapshot, delta) };
    return { users: summary.users.size, events: events.length, deliveries: deliveries.length, firstRun: previous.snapshot === undefined };
  }
}

/** The snapshot after a commit, reusing (and changing) the previous maps: only the delta is touched. */
function applyDelta(previous: PreviousSnapshot | undefined, delta: SnapshotDelta): PreviousSnapshot {
  const userLevels = (previous?.userLevels as Map<string, RiskLevel> | undefined) ?? new Map<string, RiskLevel>();
  const behaviors = (previous?.behaviors as Map<string, Behavior> | undefined) ?? new Map<string, Behavior>();
  for (const user of delta.upsertUsers) userLevels.set(user.user_id, user.max_risk_level);
  for (const id of delta.removeUserIds) userLevels.delete(id);
  for (const behavior of delta.upsertBehaviors) behaviors.set(behavior.id, behavior);
  for (const id of delta.removeBehaviorIds) behaviors.delete(id);
  return { userLevels, behaviors };
}
