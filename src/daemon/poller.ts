import type { Clock } from '../clock.ts';
import type { CloudflareClient } from '../cloudflare/client.ts';
import type { AccountConfig, FlappingRules, SinkConfig } from '../config/config.ts';
import { type CurrentSnapshot, type DiffOptions, diff, type PreviousSnapshot, type SnapshotDelta, type Transition, type UserTransition } from '../detect/diff.ts';
import { buildEvents } from '../detect/events.ts';
import { applyFlapping, type FlapState, flappingCount } from '../detect/flapping.ts';
import { StoredLevels } from '../detect/stored-levels.ts';
import type { Logger } from '../log.ts';
import type { Behavior, EventType, RiskEventDetail, RiskLevel } from '../model.ts';
import { type RouteOptions, routeEvents } from '../notify/route.ts';
import type { Sink } from '../notify/sink.ts';
import { silenceOf, StaleSnapshotError, type StateStore } from '../store/store.ts';
import { together } from '../together.ts';

export interface PollOutcome {
  readonly users: number;
  /** Users per level in the committed snapshot, for riskwatch_users{account,level}. */
  readonly levels: Readonly<Record<RiskLevel, number>>;
  /** Events an active silence muted (recorded, sent to no sink). */
  readonly silenced: number;
  /** Changes of flapping users (recorded, sent to no sink), and the users flapping after the commit (SPEC §9). */
  readonly flappingSuppressed: number;
  readonly flapping: number;
  /** The type of each event committed, in order. */
  readonly eventTypes: readonly EventType[];
  /** Rows the commit wrote: changed users and behaviors, events, deliveries and the account's version. */
  readonly rowsWritten: number;
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
  readonly sinks: readonly { readonly config: SinkConfig; readonly sink: Pick<Sink, 'grouping' | 'accepts' | 'incident'> }[];
  readonly route: RouteOptions;
  readonly newId: () => string;
  /** Add the raised users' recent risk events to their alerts (notify.enrich). */
  readonly enrich: boolean;
  /** notify.flapping (SPEC §9); undefined: off. */
  readonly flapping?: FlappingRules | undefined;
}

/** Enrichment is best effort and small: a few users per poll, a short deadline, a few events each. */
const ENRICH_MAX_USERS = 10;
const ENRICH_DEADLINE_MS = 10_000;
const ENRICH_MAX_EVENTS = 5;

/**
 * One poll of one account, start to commit: fetch the summary and behaviors,
 * diff them with the last committed snapshot, build and route the events, and
 * commit it all in one transaction. A poll that fails anywhere commits nothing.
 * The last snapshot is kept in memory between polls (levels only, so it stays
 * small) and reloaded from the store whenever a commit did not go as expected.
 */
export class AccountPoller {
  readonly #options: AccountPollerOptions;
  #previous: { version: number; snapshot: PreviousSnapshot | undefined; flaps: ReadonlyMap<string, FlapState> } | undefined;
  /** Users missing from the last committed read but not yet taken as gone (also stored, for the next process). */
  #missing: ReadonlySet<string> = new Set();

  constructor(options: AccountPollerOptions) {
    this.#options = options;
  }

  get account(): AccountConfig {
    return this.#options.account;
  }

  /** Stores that a poll of the account failed, for `status`. */
  recordFailure(message: string): Promise<void> {
    return this.#options.store.recordPollFailure(this.#options.account.id, message, this.#options.clock.now());
  }

  /** Forgets what was remembered of the account: the next poll reads it from the store again. */
  forget(): void {
    this.#previous = undefined;
  }

  async poll(signal?: AbortSignal): Promise<PollOutcome> {
    const { account, client, store, clock } = this.#options;
    const previous = this.#previous ?? (await this.#loadState());
    // When either read fails, the other is stopped and settled before the poll returns: a summary read
    // left running would keep marking the stored levels the next poll reads into.
    const [summary, behaviorList] = await together(signal, [
      (both) => client.fetchSummary(account.id, both, previous.snapshot ? { known: previous.snapshot.userLevels as StoredLevels } : {}),
      (both) => client.fetchBehaviors(account.id, both),
    ]);
    signal?.throwIfAborted();
    // When the change was seen: the events' timestamp, and the moment delivery latency counts from.
    // Wall clock: it is stored and compared across processes.
    const polledAt = clock.now();

    const current: CurrentSnapshot = {
      users: summary.users,
      ...(summary.unchanged ? { unchanged: summary.unchanged } : {}),
      behaviors: behaviorList.behaviors,
      skippedUserIds: summary.skippedUserIds,
      unidentifiedSkips: summary.unidentifiedSkips,
      skippedBehaviorIds: behaviorList.skippedIds,
      // One page is one answer, a consistent snapshot; several pages are not.
      ...(summary.pages > 1 ? { missingLastTime: this.#missing } : {}),
    };
    const { transitions, delta, missing } = diff(previous.snapshot, current, this.#options.diff);
    // Missed once and kept: marked in the store, so that the next read confirms it whoever runs it.
    const removed = new Set(delta.removeUserIds);
    const stillMissing = [...missing].filter((id) => !removed.has(id));
    const missed = {
      mark: stillMissing.filter((id) => !this.#missing.has(id)),
      clear: [...this.#missing].filter((id) => !missing.has(id) && !removed.has(id)),
    };
    const departed = transitions.flatMap((t) => (t.kind === 'user' && !t.user ? [t.userId] : []));
    const accountRef = { id: account.id, name: account.name ?? null };
    const changes = buildEvents(transitions, {
      account: accountRef,
      at: polledAt,
      newId: this.#options.newId,
      departedUsers: departed.length > 0 ? await store.loadUsers(account.id, departed) : new Map(),
      riskEvents: this.#options.enrich ? await this.#enrich(transitions, signal) : undefined,
    });
    // Flapping is decided against the states read with the snapshot, and committed with it under its version.
    const { flapping: rules } = this.#options;
    const flapped = rules
      ? applyFlapping(rules, previous.flaps, changes, { at: polledAt, account: accountRef, newId: this.#options.newId })
      : { events: changes, upsert: new Map<string, FlapState>(), remove: [...previous.flaps.keys()], suppressed: 0 };
    const { events } = flapped;
    const flaps = { upsert: flapped.upsert, remove: flapped.remove };
    const deliveries = routeEvents(account.id, events, this.#options.sinks, this.#options.route);
    // The store applies silences in the commit's own transaction; this count is only for the metric.
    const silences = events.length > 0 ? await store.listSilences({ all: false, now: polledAt }) : [];
    const silenced = silences.length > 0 ? events.filter((event) => silenceOf(event, silences)).length : 0;

    let version: number;
    try {
      version = await store.commitPoll({ accountId: account.id, expectedVersion: previous.version, polledAt, delta, missing: missed, flaps, events, deliveries });
    } catch (error) {
      // Whatever happened, the store is the truth: read it again next time.
      this.#previous = undefined;
      this.#missing = new Set();
      if (error instanceof StaleSnapshotError) this.#options.log.warn({ account: account.label }, error.message);
      throw error;
    }
    const nextFlaps = new Map(previous.flaps);
    for (const userId of flaps.remove) nextFlaps.delete(userId);
    for (const [userId, state] of flaps.upsert) nextFlaps.set(userId, state);
    this.#previous = { version, snapshot: applyDelta(previous.snapshot, delta), flaps: nextFlaps };
    this.#missing = new Set(stillMissing);
    const rowsWritten =
      1 +
      delta.upsertUsers.length +
      delta.removeUserIds.length +
      delta.upsertBehaviors.length +
      delta.removeBehaviorIds.length +
      missed.mark.length +
      missed.clear.length +
      flaps.upsert.size +
      flaps.remove.length +
      events.length +
      deliveries.length;
    return {
      users: summary.users.size + (summary.unchanged?.count ?? 0),
      levels: levelCounts(this.#previous.snapshot?.userLevels),
      silenced,
      flappingSuppressed: flapped.suppressed,
      flapping: flappingCount(nextFlaps.values()),
      eventTypes: events.map((e) => e.type),
      deliveries: deliveries.length,
      rowsWritten,
      firstRun: previous.snapshot === undefined,
    };
  }

  /** The last committed snapshot, from the store: at start, and after a commit went wrong. */
  async #loadState(): Promise<{ version: number; snapshot: PreviousSnapshot | undefined; flaps: ReadonlyMap<string, FlapState> }> {
    const { account, store, clock, log } = this.#options;
    const started = clock.monotonic();
    const stored = await store.loadSnapshot(account.id);
    this.#missing = stored.missing;
    // The reads mark users in the stored levels: they must be in that compact form (a store may give a plain map).
    const levels = stored.snapshot?.userLevels;
    const state = stored.snapshot && !(levels instanceof StoredLevels) ? { ...stored, snapshot: { ...stored.snapshot, userLevels: new StoredLevels(levels!) } } : stored;
    log.info(
      { account: account.label, users: state.snapshot?.userLevels.size ?? 0, ms: clock.monotonic() - started },
      state.snapshot ? 'the last committed poll of the account was read: changes are announced against it' : 'no state yet: this is the first poll of the account',
    );
    return state;
  }

  /**
   * The recent risk events of the highest raised users. A failure or a slow
   * answer only leaves that user's alert without them: it never delays the
   * poll past the deadline, and never drops an alert.
   */
  async #enrich(transitions: readonly Transition[], signal?: AbortSignal): Promise<Map<string, readonly RiskEventDetail[]>> {
    const { account, client, log } = this.#options;
    const raised = transitions.filter((t) => t.type === 'user.risk_level_raised').slice(0, ENRICH_MAX_USERS) as UserTransition[];
    const found = new Map<string, readonly RiskEventDetail[]>();
    if (raised.length === 0) return found;
    const deadline = AbortSignal.timeout(ENRICH_DEADLINE_MS);
    const enrichSignal = signal ? AbortSignal.any([signal, deadline]) : deadline;
    await Promise.all(
      raised.map(async ({ userId }) => {
        try {
          const detail = await client.fetchUserDetail(account.id, userId, enrichSignal);
          const recent = [...detail.events].sort((a, b) => (a.timestamp < b.timestamp ? 1 : a.timestamp > b.timestamp ? -1 : 0));
          found.set(userId, recent.slice(0, ENRICH_MAX_EVENTS));
        } catch (error) {
          log.warn({ account: account.label, user: userId, err: (error as Error).message }, 'could not enrich the alert; it goes out without risk events');
        }
      }),
    );
    signal?.throwIfAborted();
    return found;
  }
}

/** The snapshot after a commit, reusing (and changing) the previous one: only the delta is touched. */
function applyDelta(previous: PreviousSnapshot | undefined, delta: SnapshotDelta): PreviousSnapshot {
  const userLevels = (previous?.userLevels as StoredLevels | undefined) ?? new StoredLevels();
  const behaviors = (previous?.behaviors as Map<string, Behavior> | undefined) ?? new Map<string, Behavior>();
  userLevels.apply(delta);
  for (const behavior of delta.upsertBehaviors) behaviors.set(behavior.id, behavior);
  for (const id of delta.removeBehaviorIds) behaviors.delete(id);
  return { userLevels, behaviors };
}

/** Users per level of a snapshot. */
function levelCounts(levels: ReadonlyMap<string, RiskLevel> | undefined): Record<RiskLevel, number> {
  if (levels instanceof StoredLevels) return levels.levelCounts();
  const counts = { low: 0, medium: 0, high: 0 };
  for (const level of levels?.values() ?? []) counts[level]++;
  return counts;
}
