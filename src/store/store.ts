import type { PreviousSnapshot, SnapshotDelta } from '../detect/diff.ts';
import { type RiskEvent, subjectOf } from '../detect/events.ts';
import { UserFacingError } from '../errors.ts';
import type { RiskUser } from '../model.ts';

/**
 * Where riskwatch remembers: each account's last committed snapshot, the events
 * it produced and the outbox of deliveries. Async and transactional so that a
 * networked store can stand behind it; nothing outside store/ knows which
 * implementation is in use.
 */
export interface StateStore {
  /** The account's last committed snapshot; `version` 0 and no snapshot before its first poll. */
  loadSnapshot(accountId: string): Promise<StoredSnapshot>;
  /** The stored fields of these users (for those who left the summary). */
  loadUsers(accountId: string, userIds: readonly string[]): Promise<Map<string, RiskUser>>;
  /**
   * One transaction: the snapshot delta, the events and their deliveries, or
   * nothing at all. Throws StaleSnapshotError when the account's version is no
   * longer `expectedVersion` (someone else committed since it was loaded).
   */
  commitPoll(commit: PollCommit): Promise<number>;
  /**
   * Leases up to `limit` deliveries of `sink` that are due at `now`, oldest first, never one
   * that shares a subject with an earlier pending delivery of the sink, in flight or waiting
   * for a retry: one subject's deliveries reach a sink one at a time, in commit order (SPEC §6).
   */
  claimDue(sink: string, now: number, limit: number): Promise<Delivery[]>;
  /** When the next delivery of `sink` that no earlier one holds back falls due (epoch ms), if any. */
  nextDueAt(sink: string): Promise<number | undefined>;
  recordOutcome(deliveryId: number, outcome: DeliveryOutcome): Promise<void>;
  /**
   * Holds `sink` back until at least `until`: no delivery of it that is not in flight falls due
   * before, nor does any committed while the hold lasts. Returns when the hold ends (the latest asked).
   */
  holdSink(sink: string, until: number, now: number): Promise<number>;
  /**
   * Forgets deliveries delivered before `before` (epoch ms) and the events no
   * pending or dead-lettered delivery needs any more, so the file does not grow
   * forever. Dead-lettered deliveries are kept.
   */
  prune(before: number): Promise<{ readonly deliveries: number; readonly events: number }>;
  /** Pending and dead-lettered deliveries per sink (the whole outbox, whoever drains it), for metrics and `once`. */
  deliveryCounts(): Promise<Map<string, { pending: number; dead: number }>>;
  /**
   * Leadership: which of `accountIds` this process may poll now. A store that
   * is this process's alone leads them all; replicas sharing a store spread the
   * accounts over the live ones, each held by a lease that commitPoll checks
   * (a replica that lost it commits nothing: LeadershipLostError).
   */
  lead(accountIds: readonly string[]): Promise<ReadonlySet<string>>;
  /** How often lead() is to be asked again, or undefined when leadership never changes. */
  readonly leadershipCheckMs: number | undefined;
  /** This process's name among replicas sharing the store, for logs and /readyz; undefined when it is alone. */
  readonly replica: string | undefined;
  /** Closes the store; a replica lets go of its accounts, so that others take them over at once. */
  close(): Promise<void>;
}

export interface StoredSnapshot {
  readonly version: number;
  readonly snapshot: PreviousSnapshot | undefined;
  /** Users the last (multi-page) read missed, kept until a second read confirms they left. */
  readonly missing: ReadonlySet<string>;
}

export interface PollCommit {
  readonly accountId: string;
  readonly expectedVersion: number;
  readonly polledAt: number;
  readonly delta: SnapshotDelta;
  /** Users to mark as missed by this read, and users seen again. */
  readonly missing?: { readonly mark: readonly string[]; readonly clear: readonly string[] };
  readonly events: readonly RiskEvent[];
  readonly deliveries: readonly PlannedDelivery[];
}

/** One message to send to one sink: one event, or a group (Slack: one message per account per poll). */
export interface PlannedDelivery {
  readonly sink: string;
  readonly accountId: string;
  readonly eventIds: readonly string[];
  /** What its events are about (subjectOf), without repeats: a later delivery sharing one waits for this one. */
  readonly subjects: readonly string[];
}

export interface Delivery {
  readonly id: number;
  readonly sink: string;
  readonly accountId: string;
  readonly events: readonly RiskEvent[];
  /** Attempts made before this one. */
  readonly attempts: number;
  readonly createdAt: number;
}

export type DeliveryOutcome =
  | { readonly kind: 'delivered'; readonly at: number }
  | { readonly kind: 'retry'; readonly at: number; readonly nextAttemptAt: number; readonly error: string }
  | { readonly kind: 'dead'; readonly at: number; readonly error: string };

/** Stored state that cannot be used as it is (file, database): exit 2 with one line saying why and what to do. */
export class StateError extends UserFacingError {
  constructor(message: string, options?: ErrorOptions) {
    super(message, 2, options);
  }
}

/** The store cannot be reached now (a database down or restarting): worth trying again later. */
export class StoreUnavailableError extends StateError {}

/** This replica no longer holds the account's lease: another one polls it now, and this poll is not committed. */
export class LeadershipLostError extends Error {
  constructor(accountId: string, replica: string) {
    super(`account ${accountId}: replica ${replica} does not hold its lease (it lapsed, or another replica took the account over); nothing was committed`);
    this.name = 'LeadershipLostError';
  }
}

export class StaleSnapshotError extends Error {
  constructor(accountId: string, expected: number, actual: number) {
    super(`account ${accountId}: snapshot version is ${actual}, expected ${expected}; another poll committed first`);
    this.name = 'StaleSnapshotError';
  }
}

/** Pending and dead-lettered deliveries per sink and state: the same query on every store. */
export const DELIVERY_COUNTS_SQL = "SELECT sink, state, COUNT(*) AS n FROM deliveries WHERE state IN ('pending', 'dead') GROUP BY sink, state";
export interface DeliveryCountRow {
  readonly sink: string;
  readonly state: 'pending' | 'dead';
  readonly n: number;
}

/** deliveryCounts() from the rows of DELIVERY_COUNTS_SQL. */
export function tallyDeliveries(rows: readonly DeliveryCountRow[]): Map<string, { pending: number; dead: number }> {
  const counts = new Map<string, { pending: number; dead: number }>();
  for (const row of rows) {
    const entry = counts.get(row.sink) ?? { pending: 0, dead: 0 };
    entry[row.state] = row.n;
    counts.set(row.sink, entry);
  }
  return counts;
}

/** A claimed delivery's row, as both stores read it. */
export interface ClaimedRow {
  readonly id: number;
  readonly account_id: string;
  readonly attempts: number;
  readonly created_at: number;
}

/**
 * A claimed row as a Delivery, with the events it names read through `bodyOf`. An event
 * that is gone would block its sink for good: a StateError naming the store (`where`).
 */
export function claimedDelivery(where: string, sink: string, row: ClaimedRow, eventIds: readonly string[], bodyOf: (id: string) => string | undefined): Delivery {
  return {
    id: row.id,
    sink,
    accountId: row.account_id,
    attempts: row.attempts,
    createdAt: row.created_at,
    events: eventIds.map((id) => {
      const body = bodyOf(id);
      if (body === undefined) throw new StateError(`${where}: delivery ${row.id} refers to event ${id}, which is missing`);
      return JSON.parse(body) as RiskEvent;
    }),
  };
}

/**
 * The subjects of pending deliveries, from the stored bodies of their events (one row per
 * delivery and event): what a store whose schema predates delivery subjects fills in on upgrade.
 */
export function pendingSubjects(rows: Iterable<{ readonly id: number; readonly sink: string; readonly body: string }>): [id: number, sink: string, subject: string][] {
  const subjects = new Map<string, [number, string, string]>();
  for (const { id, sink, body } of rows) {
    const subject = subjectOf(JSON.parse(body) as RiskEvent);
    subjects.set(`${id} ${subject}`, [id, sink, subject]);
  }
  return [...subjects.values()];
}
