import type { PreviousSnapshot, SnapshotDelta } from '../detect/diff.ts';
import type { GrantPool } from '../cloudflare/budget.ts';
import type { FlapState } from '../detect/flapping.ts';
import type { DigestEvent } from '../notify/digest.ts';
import { isUserEvent, type RiskEvent, subjectOf } from '../detect/events.ts';
import { UserFacingError } from '../errors.ts';
import { type EventType, LEVEL_RANK, levelOfRank, type RiskLevel, type RiskUser } from '../model.ts';

/**
 * Where riskwatch remembers: each account's last committed snapshot, the events
 * it produced and the outbox of deliveries. Async and transactional so that a
 * networked store can stand behind it; nothing outside store/ knows which
 * implementation is in use.
 */
export interface StateStore extends OperatorStore {
  /** The account's last committed snapshot; `version` 0 and no snapshot before its first poll. */
  loadSnapshot(accountId: string): Promise<StoredSnapshot>;
  /** The stored fields of these users (for those who left the summary). */
  loadUsers(accountId: string, userIds: readonly string[]): Promise<Map<string, RiskUser>>;
  /** The account's flapping states alone (loadSnapshot reads them too). */
  loadFlaps(accountId: string): Promise<Map<string, FlapState>>;
  /**
   * One transaction: the snapshot delta, the events and their deliveries, or
   * nothing at all. Throws StaleSnapshotError when the account's version is no
   * longer `expectedVersion` (someone else committed since it was loaded).
   * Silences are applied here, in the same transaction (SPEC §8): an event an
   * active silence matches (silenceOf) is stored with the silence's id and
   * left out of every delivery; a delivery left with no event is not made.
   * The account's last success becomes `polledAt`, and its last error is cleared.
   */
  commitPoll(commit: PollCommit): Promise<number>;
  /** A poll of the account failed: kept for `status` (the last success stays as it was). */
  recordPollFailure(accountId: string, error: string, at: number): Promise<void>;
  /**
   * Leases up to `limit` deliveries of `sink` that are due at `now`, oldest first, never one
   * that shares a subject with an earlier pending delivery of the sink, in flight or waiting
   * for a retry: one subject's deliveries reach a sink one at a time, in commit order (SPEC §6).
   */
  claimDue(sink: string, now: number, limit: number): Promise<Delivery[]>;
  /** When the next delivery of `sink` that no earlier one holds back falls due (epoch ms), if any. */
  nextDueAt(sink: string): Promise<number | undefined>;
  /**
   * Records what became of claimed deliveries (each one once), in one transaction: all of them,
   * or none when it fails (the worker then tries the same ones again). One commit for the replies
   * that came in together rather than one each: commits, not rows, are what a steady flow of
   * deliveries paid for (an embedded store writes every page a commit touches to its log again).
   */
  recordOutcomes(outcomes: readonly SettledDelivery[]): Promise<void>;
  /**
   * Holds `sink` back until at least `until`: no delivery of it that is not in flight falls due
   * before, nor does any committed while the hold lasts. Returns when the hold ends (the latest asked).
   */
  holdSink(sink: string, until: number, now: number): Promise<number>;
  /**
   * Forgets what is old, so that the store does not grow forever: deliveries
   * delivered before `delivered`; events recorded before `history` (epoch ms)
   * that no pending delivery needs, and dead-lettered deliveries from before
   * `history` (SPEC §8: kept until retried or the history lapses), counted from when they
   * died. An event that opened an incident still open is kept: its close is made from it.
   */
  prune(before: { readonly delivered: number; readonly history: number }): Promise<{ readonly deliveries: number; readonly events: number }>;
  /**
   * Applies what a config load decided for incidents it no longer covers, in one transaction:
   * each still open from the same trigger is forgot, its close queued (a `retire` delivery of
   * its opening event) and, when asked, it is opened again under its sink's credential now.
   * Replicas loading the same config at once close each incident once. Returns how many changed.
   */
  retireIncidents(changes: readonly IncidentChange[], now: number): Promise<number>;
  /** The slot of `sink`'s last digest (or of its first look, which sends nothing), if any (SPEC §9). */
  lastDigest(sink: string): Promise<number | undefined>;
  /**
   * Moves `sink`'s last digest slot from `previous` to `slot` and queues the digest with it (its
   * event and delivery), in one transaction; false when another process moved it first, so a
   * slot is sent once whoever looks. With `previous` undefined: records the first slot only.
   */
  commitDigest(digest: DigestCommit): Promise<boolean>;
  /** For a digest, per account: the users at `minLevel` or above (highest first, at most `limit`), how many, and the events recorded after `since` and up to `until`. */
  digestFacts(query: {
    readonly accountIds: readonly string[];
    readonly minLevel: RiskLevel;
    readonly since: number;
    readonly until: number;
    readonly limit: number;
  }): Promise<Map<string, DigestFacts>>;
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
  /** The fleet's Cloudflare budget, where replicas share one (SPEC §11); undefined for a process alone. */
  readonly grants?: GrantPool;
  /** Closes the store; a replica lets go of its accounts, so that others take them over at once. */
  close(): Promise<void>;
}

/**
 * What the operator commands read and write (SPEC §3, §8), with no daemon or
 * beside a running one: silences, who is at which level, the recorded events,
 * the outbox, and each account's stored status.
 */
export interface OperatorStore {
  addSilence(silence: Silence): Promise<void>;
  /** The active silences at `now`, or with `all` every one still stored, newest first. */
  listSilences(options: { readonly all: boolean; readonly now: number }): Promise<Silence[]>;
  /** Ends an active silence now; false when there is no active silence of that id. */
  expireSilence(id: string, now: number): Promise<boolean>;
  /** The users of the last committed snapshots, highest level first, then by email; `limit` of them after `offset`, when given. */
  listUsers(query: UserQuery): Promise<UserRow[]>;
  /** Recorded events, newest first. `user` is an email (any case) or a user id. */
  listEvents(query: EventQuery): Promise<EventRow[]>;
  /** Pending and dead-lettered deliveries, oldest first; with `eventIds`, every delivery (delivered ones too) of any of those events. */
  listDeliveries(query: DeliveryQuery): Promise<DeliveryRow[]>;
  /** Makes dead-lettered deliveries pending again, due at `now`, under their old ids; returns how many. */
  retryDeliveries(which: { readonly sink: string } | { readonly ids: readonly number[] }, now: number): Promise<Revived>;
  /**
   * Hands every pending and dead-lettered delivery of sink `from` (renamed or removed
   * from the config, so drained by no one) to sink `to`: pending, due at `now`, under
   * their old ids and in their order.
   */
  moveDeliveries(from: string, to: string, now: number): Promise<Revived>;
  /** The incidents sinks opened and riskwatch has not closed, oldest first. */
  listIncidents(query: { readonly sink?: string }): Promise<OpenIncident[]>;
  /** Per account and per sink, what `status` shows; `now` decides which silences are active and which holds still last. */
  status(now: number): Promise<StoreStatus>;
  close(): Promise<void>;
}

/**
 * What a retry or a move made pending again, and the stale triggers it dropped instead: a dead
 * trigger whose incident was closed (or opened again by a later trigger) since must not re-open it.
 */
export interface Revived {
  readonly revived: number;
  readonly dropped: number;
}

/** A silence (SPEC §8): mutes the events of a user (email or id) or of a behavior, in one account or all, until it ends. */
export interface Silence {
  readonly id: string;
  /** An email (kept in lowercase) or a user id; null when the silence is for a behavior. */
  readonly user: string | null;
  readonly behavior: string | null;
  readonly accountId: string | null;
  readonly startsAt: number;
  readonly endsAt: number;
  readonly reason: string;
  readonly by: string;
}

export interface UserRow {
  readonly accountId: string;
  readonly userId: string;
  readonly email: string;
  readonly name: string;
  readonly level: RiskLevel;
  /** When the event that brought the user to this level was recorded, if it still is. */
  readonly since: number | null;
  /** Flapping now (SPEC §9): their changes are recorded and sent nowhere until they settle. */
  readonly flapping: boolean;
}

export interface UserQuery {
  readonly accountId?: string;
  readonly level?: RiskLevel;
  readonly userId?: string;
  /** Only those flapping now (SPEC §9). */
  readonly flapping?: boolean;
  readonly limit?: number;
  readonly offset?: number;
}

export interface DeliveryQuery {
  readonly sink?: string;
  readonly state?: 'pending' | 'dead';
  readonly accountId?: string;
  /** Every delivery of any of these events, whatever its state (a user's timeline). */
  readonly eventIds?: readonly string[];
  /** A page: those after this id, this many at most. */
  readonly after?: number;
  readonly limit?: number;
}

export interface EventQuery {
  readonly since: number;
  readonly accountId?: string;
  readonly user?: string;
  readonly type?: EventType;
  readonly limit: number;
}

export interface EventRow {
  readonly event: RiskEvent;
  /** The id of the silence that muted it, or null. */
  readonly silenced: string | null;
}

export interface DeliveryRow {
  readonly id: number;
  readonly sink: string;
  readonly accountId: string;
  readonly state: 'pending' | 'delivered' | 'dead';
  readonly eventIds: readonly string[];
  /** The types of its events, in order (an event pruned since shows as null). */
  readonly types: readonly (EventType | null)[];
  readonly attempts: number;
  readonly lastError: string | null;
  readonly nextAttemptAt: number;
  readonly createdAt: number;
  /** When it was delivered or dead-lettered; null while pending. */
  readonly finishedAt: number | null;
}

export interface StoreStatus {
  readonly accounts: readonly {
    readonly id: string;
    readonly lastSuccessAt: number | null;
    readonly lastError: string | null;
    readonly lastErrorAt: number | null;
    readonly users: Readonly<Record<RiskLevel, number>>;
    /** The replica holding its lease; null without replicas. */
    readonly leader: string | null;
    /** Users flapping now (SPEC §9). */
    readonly flapping: number;
  }[];
  readonly sinks: readonly { readonly name: string; readonly pending: number; readonly dead: number; readonly heldUntil: number | null }[];
  /** Silences active at `now`. */
  readonly silences: number;
}

/** What both stores read for status(), as rows; statusFrom() puts them together. */
export interface StatusRows {
  readonly accountIds: readonly string[];
  readonly status: readonly { account_id: string; last_success_at: number | null; last_error: string | null; last_error_at: number | null }[];
  readonly levels: readonly { account_id: string; level: number; n: number }[];
  readonly leaders: readonly { account_id: string; holder: string }[];
  readonly flapping: readonly { account_id: string; n: number }[];
  readonly counts: ReadonlyMap<string, { pending: number; dead: number }>;
  readonly holds: readonly { sink: string; until: number }[];
  readonly silences: number;
}

export function statusFrom(rows: StatusRows): StoreStatus {
  type Account = {
    id: string;
    lastSuccessAt: number | null;
    lastError: string | null;
    lastErrorAt: number | null;
    users: Record<RiskLevel, number>;
    leader: string | null;
    flapping: number;
  };
  const accounts = new Map<string, Account>();
  const account = (id: string): Account => {
    let entry = accounts.get(id);
    if (!entry) {
      entry = { id, lastSuccessAt: null, lastError: null, lastErrorAt: null, users: { low: 0, medium: 0, high: 0 }, leader: null, flapping: 0 };
      accounts.set(id, entry);
    }
    return entry;
  };
  for (const id of rows.accountIds) account(id);
  for (const row of rows.status) Object.assign(account(row.account_id), { lastSuccessAt: row.last_success_at, lastError: row.last_error, lastErrorAt: row.last_error_at });
  for (const row of rows.levels) account(row.account_id).users[levelOfRank(row.level)] = Number(row.n);
  for (const row of rows.leaders) if (accounts.has(row.account_id)) account(row.account_id).leader = row.holder;
  for (const row of rows.flapping) if (accounts.has(row.account_id)) account(row.account_id).flapping = Number(row.n);
  const holds = new Map(rows.holds.map((h) => [h.sink, h.until]));
  const sinks = [...new Set([...rows.counts.keys(), ...holds.keys()])].sort().map((name) => ({
    name,
    pending: rows.counts.get(name)?.pending ?? 0,
    dead: rows.counts.get(name)?.dead ?? 0,
    heldUntil: holds.get(name) ?? null,
  }));
  return { accounts: [...accounts.values()].sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0)), sinks, silences: Number(rows.silences) };
}

/** The longest a silence may last (SPEC §8: a silence always ends): ten years. */
export const MAX_SILENCE_MS = 3650 * 86_400_000;

/**
 * How a user is written where riskwatch matches on them (a silence, `events --user`):
 * lower-case, as the client stores ids and as emails are compared.
 */
export const userKey = (user: string): string => user.trim().toLowerCase();

/** The latest time a Date can hold (ECMAScript's range: ±100,000,000 days from the epoch). */
const MAX_DATE_MS = 8.64e15;

/** The silences rows SilenceReader skips (both stores' columns are integers): they can still be ended. */
export const UNREADABLE_SILENCE_SQL = `starts_at NOT BETWEEN -${MAX_DATE_MS} AND ${MAX_DATE_MS} OR ends_at NOT BETWEEN -${MAX_DATE_MS} AND ${MAX_DATE_MS}`;

/** A stored epoch-ms time, or undefined when it is not one a Date can hold (a corrupt row, or one written by hand). */
export function storedTime(value: unknown): number | undefined {
  const ms = typeof value === 'bigint' ? (value >= -MAX_DATE_MS && value <= MAX_DATE_MS ? Number(value) : Number.NaN) : value;
  return typeof ms === 'number' && Number.isSafeInteger(ms) && Math.abs(ms) <= MAX_DATE_MS ? ms : undefined;
}

/** A silences row as both stores select it; times as the driver read them (an integer, a bigint, or whatever a corrupt row holds). */
export interface StoredSilence {
  readonly id: string;
  readonly user: string | null;
  readonly behavior: string | null;
  readonly accountId: string | null;
  readonly startsAt: unknown;
  readonly endsAt: unknown;
  readonly reason: string;
  readonly by: string;
}

/**
 * Stored silences as silences. A row whose times are not times is left out
 * with a warning (once per store and silence), never thrown: one bad row must
 * not stop every poll, nor `silence list`.
 */
export class SilenceReader {
  readonly #warned = new Set<string>();
  readonly #warn: (message: string) => void;

  constructor(warn: (message: string) => void = () => {}) {
    this.#warn = warn;
  }

  read(rows: readonly StoredSilence[]): Silence[] {
    const silences: Silence[] = [];
    for (const row of rows) {
      const startsAt = storedTime(row.startsAt);
      const endsAt = storedTime(row.endsAt);
      if (startsAt === undefined || endsAt === undefined) {
        if (!this.#warned.has(row.id)) {
          this.#warned.add(row.id);
          const [field, value] = startsAt === undefined ? ['starts_at', row.startsAt] : ['ends_at', row.endsAt];
          this.#warn(`silence ${row.id}: its stored ${field} (${String(value).slice(0, 40)}) is not a time, so it mutes nothing; end it with riskwatch silence expire ${row.id}`);
        }
        continue;
      }
      silences.push({ ...row, user: row.user === null ? null : userKey(row.user), startsAt, endsAt });
    }
    return silences;
  }
}

/** The silence that mutes `event` among `active` ones, if any: the same rule on every store. */
export function silenceOf(event: RiskEvent, active: readonly Silence[]): Silence | undefined {
  const account = event.data.account.id;
  return active.find((silence) => {
    if (silence.accountId !== null && silence.accountId !== account) return false;
    if (isUserEvent(event)) {
      const { user } = event.data;
      return silence.user !== null && (silence.user === user.user_id || silence.user === user.email.toLowerCase());
    }
    return silence.behavior !== null && silence.behavior === event.data.behavior.id;
  });
}

/**
 * Applies `active` silences to a commit's events and deliveries: which event
 * each mutes, and the deliveries left once muted events are taken out (a
 * delivery left with none is dropped; subjects follow the events that stay).
 * A delivery that closes an incident is kept whole: the incident may have
 * been opened before the silence, which must not leave it open for ever.
 */
export function applySilences(events: readonly RiskEvent[], deliveries: readonly PlannedDelivery[], active: readonly Silence[]): { silencedBy: Map<string, string>; deliveries: PlannedDelivery[] } {
  const silencedBy = new Map<string, string>();
  if (active.length === 0) return { silencedBy, deliveries: [...deliveries] };
  const byId = new Map(events.map((e) => [e.id, e]));
  for (const event of events) {
    const silence = silenceOf(event, active);
    if (silence) silencedBy.set(event.id, silence.id);
  }
  if (silencedBy.size === 0) return { silencedBy, deliveries: [...deliveries] };
  const kept: PlannedDelivery[] = [];
  for (const d of deliveries) {
    if (d.incident?.action === 'close') {
      kept.push(d);
      continue;
    }
    const eventIds = d.eventIds.filter((id) => !silencedBy.has(id));
    if (eventIds.length === 0) continue;
    if (eventIds.length === d.eventIds.length) kept.push(d);
    else kept.push({ ...d, eventIds, subjects: [...new Set(eventIds.flatMap((id) => (byId.has(id) ? [subjectOf(byId.get(id)!)] : [])))] });
  }
  return { silencedBy, deliveries: kept };
}

/** What listUsers and a digest select of a users row `u`, on every store: a UserTableRow. */
export const USER_ROW_COLUMNS = `u.account_id, u.user_id, u.email, u.name, u.level,
  (SELECT MAX(e.created_at) FROM events e WHERE e.user_id = u.user_id AND e.account_id = u.account_id) AS since,
  COALESCE((SELECT f.flapping FROM flapping f WHERE f.account_id = u.account_id AND f.user_id = u.user_id), 0) AS flapping`;

/**
 * listUsers' query, with each store's parameters: account, level rank, user id (each null for
 * any), flapping only (1) or not (0), then the page's limit (null for all) and offset. The page is
 * taken before the columns that look elsewhere (since, flapping) are computed, so a page of
 * 100,000 users costs one page; the order is total (a user in two accounts), so pages never overlap.
 */
export const usersSql = (p: { account: string; level: string; user: string; flapping: string; limit: string; offset: string }) =>
  `SELECT ${USER_ROW_COLUMNS}
   FROM (SELECT * FROM users WHERE (${p.account} IS NULL OR account_id = ${p.account}) AND (${p.level} IS NULL OR level = ${p.level}) AND (${p.user} IS NULL OR user_id = ${p.user})
         AND (${p.flapping} = 0 OR EXISTS (SELECT 1 FROM flapping f WHERE f.account_id = users.account_id AND f.user_id = users.user_id AND f.flapping = 1))
         ORDER BY level DESC, email, user_id, account_id LIMIT ${p.limit} OFFSET ${p.offset}) u
   ORDER BY u.level DESC, u.email, u.user_id, u.account_id`;

/** listUsers' parameters in usersSql's order. */
export function usersParams(query: UserQuery, noLimit: number | null): (string | number | null)[] {
  return [query.accountId ?? null, query.level === undefined ? null : LEVEL_RANK[query.level], query.userId ?? null, query.flapping ? 1 : 0, query.limit ?? noLimit, query.offset ?? 0];
}

/** A users row as both stores select it (USER_ROW_COLUMNS; level as its rank). */
export interface UserTableRow {
  readonly account_id: string;
  readonly user_id: string;
  readonly email: string;
  readonly name: string;
  readonly level: number;
  readonly since: number | string | null;
  readonly flapping: number | boolean;
}

export function userRowFrom(row: UserTableRow): UserRow {
  return {
    accountId: row.account_id,
    userId: row.user_id,
    email: row.email,
    name: row.name,
    level: levelOfRank(row.level),
    since: row.since === null ? null : Number(row.since),
    flapping: Boolean(row.flapping),
  };
}

/** Flapping states as stored (JSON) read back; a row that does not parse is left out (its user starts afresh), never thrown. */
export function flapStatesFrom(rows: Iterable<{ readonly user_id: string; readonly state: string }>): Map<string, FlapState> {
  const states = new Map<string, FlapState>();
  for (const { user_id, state } of rows) {
    try {
      const parsed = JSON.parse(state) as FlapState;
      if (Array.isArray(parsed.changes) && typeof parsed.user === 'object' && parsed.user !== null) states.set(user_id, parsed);
    } catch {
      // Corrupt: forgotten, as if the user had no recent change.
    }
  }
  return states;
}

/** A deliveries row as both stores select it for listDeliveries; `types` a JSON array of the events' types. */
export interface DeliveryTableRow {
  readonly id: number | string;
  readonly sink: string;
  readonly account_id: string;
  readonly state: 'pending' | 'delivered' | 'dead';
  readonly event_ids: string | readonly string[];
  readonly types: string | readonly (string | null)[];
  readonly attempts: number;
  readonly last_error: string | null;
  readonly next_attempt_at: number | string;
  readonly created_at: number | string;
  readonly finished_at: number | string | null;
}

/** The columns listDeliveries selects on both stores, but `types` (which each store's JSON functions make). */
export const DELIVERY_ROW_COLUMNS = 'd.id, d.sink, d.account_id, d.state, d.event_ids, d.attempts, d.last_error, d.next_attempt_at, d.created_at, d.finished_at';

export function deliveryRowFrom(row: DeliveryTableRow): DeliveryRow {
  return {
    id: Number(row.id),
    sink: row.sink,
    accountId: row.account_id,
    state: row.state,
    eventIds: typeof row.event_ids === 'string' ? (JSON.parse(row.event_ids) as string[]) : row.event_ids,
    types: typeof row.types === 'string' ? (JSON.parse(row.types) as (EventType | null)[]) : (row.types as (EventType | null)[]),
    attempts: row.attempts,
    lastError: row.last_error,
    nextAttemptAt: Number(row.next_attempt_at),
    createdAt: Number(row.created_at),
    finishedAt: row.finished_at === null ? null : Number(row.finished_at),
  };
}

/**
 * The WHERE clause of listDeliveries with a `?` for each value (each store numbers them its way),
 * only the filters given so that the planner can take an index. `ofEvents` is the store's own
 * clause for "any of these events" and its values.
 */
export function deliveryFilters(query: DeliveryQuery, ofEvents: (ids: readonly string[]) => [clause: string, ...values: unknown[]]): { where: string; params: unknown[] } {
  const clauses: string[] = [];
  const params: unknown[] = [];
  const filter = (clause: string, ...values: unknown[]) => {
    clauses.push(clause);
    params.push(...values);
  };
  if (query.eventIds === undefined) filter("d.state IN ('pending', 'dead')");
  else filter(...ofEvents(query.eventIds));
  if (query.accountId !== undefined) filter('d.account_id = ?', query.accountId);
  if (query.sink !== undefined) filter('d.sink = ?', query.sink);
  if (query.state !== undefined) filter('d.state = ?', query.state);
  if (query.after !== undefined) filter('d.id > ?', query.after);
  return { where: `${clauses.join(' AND ')} ORDER BY d.id${query.limit === undefined ? '' : ` LIMIT ${Math.trunc(query.limit)}`}`, params };
}

/** The WHERE clause of listEvents, with a placeholder for each filter given (the same on both stores, with their placeholders). */
export function eventFilters(query: EventQuery): { where: string; params: (string | number)[] } {
  // A digest is stored as an event (its delivery names it), but it is no change: `events` leaves it out.
  const clauses = ['created_at >= ?', "type <> 'digest'"];
  const params: (string | number)[] = [query.since];
  const filter = (clause: string, ...values: (string | number)[]) => {
    clauses.push(clause);
    params.push(...values);
  };
  if (query.accountId !== undefined) filter('account_id = ?', query.accountId);
  if (query.user !== undefined) filter('(user_id = ? OR email = ?)', userKey(query.user), userKey(query.user));
  if (query.type !== undefined) filter('type = ?', query.type);
  return { where: clauses.join(' AND '), params };
}

/** The columns an event row keeps beside its body, for `events --user` and `users` since: null for a behavior event. */
export function eventUserColumns(event: RiskEvent): { userId: string | null; email: string | null } {
  return isUserEvent(event) ? { userId: event.data.user.user_id, email: event.data.user.email.toLowerCase() } : { userId: null, email: null };
}

export interface StoredSnapshot {
  readonly version: number;
  readonly snapshot: PreviousSnapshot | undefined;
  /** Users the last (multi-page) read missed, kept until a second read confirms they left. */
  readonly missing: ReadonlySet<string>;
  /** The flapping state of each user with recent level changes (SPEC §9, detect/flapping.ts). */
  readonly flaps: ReadonlyMap<string, FlapState>;
}

export interface PollCommit {
  readonly accountId: string;
  readonly expectedVersion: number;
  readonly polledAt: number;
  readonly delta: SnapshotDelta;
  /** Users to mark as missed by this read, and users seen again. */
  readonly missing?: { readonly mark: readonly string[]; readonly clear: readonly string[] };
  /** Flapping states to store, and users whose state is forgotten (SPEC §9). */
  readonly flaps?: { readonly upsert: ReadonlyMap<string, FlapState>; readonly remove: readonly string[] };
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
  /**
   * What it does to an incident of its sink (PagerDuty, Opsgenie; Sink.incident): a close is
   * never held back by a silence (the incident may have been opened before it). An open is
   * recorded as the sink's open incident, under the sink's credential; a close forgets it.
   */
  readonly incident?: DeliveryIncident & { readonly credentialId: string };
}

/** What a delivery does to an incident of its sink, kept with it. */
export interface DeliveryIncident {
  /**
   * `open`: its event opens (triggers) the incident; `close`: its event closes it; `retire`:
   * it closes the incident because the config no longer covers it (a raised `min_level`, a
   * new routing key, a sink or account removed), with no event of its own: the sink renders
   * a close of `key` (Sink.renderClose), saying `note`.
   */
  readonly action: 'open' | 'close' | 'retire';
  /** PagerDuty's `dedup_key`, Opsgenie's `alias` (incidentKey). */
  readonly key: string;
  readonly note?: string;
}

/** An incident a sink opened and riskwatch has not closed (SPEC §5): `riskwatch incidents` lists them. */
export interface OpenIncident {
  readonly sink: string;
  readonly key: string;
  /** The credential it was opened with (a routing key's or API key's fingerprint, never the key). */
  readonly credentialId: string;
  readonly accountId: string;
  /** What it is about (subjectOf): `<account>/user/<id>` or `<account>/behavior/<id>`. */
  readonly subject: string;
  /** The event that opened it, and the delivery of its trigger. */
  readonly eventId: string;
  readonly deliveryId: number;
  readonly openedAt: number;
  /** Where that trigger is: still pending, delivered (or pruned since), or dead-lettered. */
  readonly trigger: 'pending' | 'delivered' | 'dead';
}

export interface DigestCommit {
  readonly sink: string;
  /** When it is queued: its event is recorded then, and its delivery made (max_age counts from it). */
  readonly at: number;
  readonly slot: number;
  readonly previous: number | undefined;
  readonly event?: DigestEvent;
  readonly delivery?: PlannedDelivery;
}

export interface DigestFacts {
  readonly users: readonly UserRow[];
  readonly total: number;
  readonly changes: number;
}

/** What a config load does to an open incident it no longer covers (retireIncidents). */
export interface IncidentChange {
  /** As listed: the change applies only while the incident is still open from the same trigger. */
  readonly incident: OpenIncident;
  /** Where its close goes (the sink, or one of the old credential's kept for it) and why; left out when nobody holds the credential to close it. */
  readonly close?: { readonly sink: string; readonly note: string };
  /** Opened again at its own sink, under that sink's credential now (its routing key changed). */
  readonly reopen?: { readonly credentialId: string };
  /** Kept open, as the incident of another sink with the same key (the sink was renamed). */
  readonly rehome?: { readonly sink: string };
}

/** The subject of an incident as its parts. */
export function subjectParts(subject: string): { accountId: string; kind: 'user' | 'behavior'; id: string } {
  const slash = subject.indexOf('/');
  const rest = subject.slice(slash + 1);
  const kind = rest.startsWith('user/') ? 'user' : 'behavior';
  return { accountId: subject.slice(0, slash), kind, id: rest.slice(kind.length + 1) };
}

export interface Delivery {
  readonly id: number;
  readonly sink: string;
  readonly accountId: string;
  readonly events: readonly RiskEvent[];
  /** Attempts made before this one. */
  readonly attempts: number;
  readonly createdAt: number;
  /** When its current run of attempts began (notify.max_age counts from it): made, or last retried or moved by an operator. */
  readonly since: number;
  readonly incident?: DeliveryIncident;
  /** A digest's delivery (SPEC §9): the digest, and no events. */
  readonly digest?: DigestEvent;
}

export type DeliveryOutcome =
  | { readonly kind: 'delivered'; readonly at: number }
  | { readonly kind: 'retry'; readonly at: number; readonly nextAttemptAt: number; readonly error: string }
  | { readonly kind: 'dead'; readonly at: number; readonly error: string };

/** A claimed delivery and what became of it, for recordOutcomes(). */
export interface SettledDelivery {
  readonly deliveryId: number;
  readonly outcome: DeliveryOutcome;
}

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

/** Users flapping now, per account: the same query on every store. */
export const FLAPPING_COUNTS_SQL = 'SELECT account_id, COUNT(*) AS n FROM flapping WHERE flapping = 1 GROUP BY account_id';

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

/** A claimed delivery's row, as both stores read it (CLAIMED_COLUMNS). */
export interface ClaimedRow {
  readonly id: number;
  readonly account_id: string;
  readonly attempts: number;
  readonly created_at: number;
  readonly retried_at: number | null;
  readonly incident_action: DeliveryIncident['action'] | null;
  readonly incident_key: string | null;
  readonly incident_note: string | null;
}

/**
 * A delivery `d` about an incident that is stale, so that a retry or a move drops it instead: a
 * dead trigger whose incident was closed (or opened again by a later trigger) since, lest it
 * re-open what was closed; a close of an incident a later trigger opened again, lest it close
 * that one (a close moved to a sink whose key opened it again, say).
 */
export const STALE_INCIDENT_DELIVERY = `((d.incident_action = 'open' AND d.state = 'dead' AND NOT EXISTS (SELECT 1 FROM incidents i WHERE i.delivery_id = d.id))
  OR (d.incident_action IN ('close', 'retire') AND EXISTS (SELECT 1 FROM incidents i WHERE i.sink = d.sink AND i.incident_key = d.incident_key AND i.delivery_id > d.id)))`;

/** An incidents row as both stores select it (INCIDENT_COLUMNS). */
export interface IncidentTableRow {
  readonly sink: string;
  readonly incident_key: string;
  readonly credential_id: string;
  readonly account_id: string;
  readonly subject: string;
  readonly event_id: string;
  readonly delivery_id: number | string;
  readonly opened_at: number | string;
  readonly trigger: string | null;
}

/** The open incidents, with where their trigger is, oldest first: `$sink` (null for all) as each store writes its parameter. */
export const incidentsSql = (sinkParam: string) =>
  `SELECT i.sink, i.incident_key, i.credential_id, i.account_id, i.subject, i.event_id, i.delivery_id, i.opened_at, d.state AS trigger
   FROM incidents i LEFT JOIN deliveries d ON d.id = i.delivery_id
   WHERE ${sinkParam} IS NULL OR i.sink = ${sinkParam} ORDER BY i.opened_at, i.sink, i.incident_key`;

export function incidentFrom(row: IncidentTableRow): OpenIncident {
  return {
    sink: row.sink,
    key: row.incident_key,
    credentialId: row.credential_id,
    accountId: row.account_id,
    subject: row.subject,
    eventId: row.event_id,
    deliveryId: Number(row.delivery_id),
    openedAt: Number(row.opened_at),
    trigger: row.trigger === 'pending' || row.trigger === 'dead' ? row.trigger : 'delivered',
  };
}

/** The deliveries an incident change makes: its close (a `retire` of its opening event) and its trigger again. */
export function incidentChangeDeliveries(change: IncidentChange): { close?: PlannedDelivery; reopen?: PlannedDelivery } {
  const { incident } = change;
  const base = { accountId: incident.accountId, eventIds: [incident.eventId], subjects: [incident.subject] };
  return {
    ...(change.close ? { close: { ...base, sink: change.close.sink, incident: { action: 'retire', key: incident.key, note: change.close.note, credentialId: incident.credentialId } } } : {}),
    ...(change.reopen ? { reopen: { ...base, sink: incident.sink, incident: { action: 'open', key: incident.key, credentialId: change.reopen.credentialId } } } : {}),
  };
}

/** What a claim returns of each delivery's row, on every store. */
export const CLAIMED_COLUMNS = 'id, account_id, event_ids, attempts, created_at, retried_at, incident_action, incident_key, incident_note';

/**
 * A claimed row as a Delivery, with the events it names read through `bodyOf`. An event
 * that is gone would block its sink for good: a StateError naming the store (`where`).
 */
export function claimedDelivery(where: string, sink: string, row: ClaimedRow, eventIds: readonly string[], bodyOf: (id: string) => string | undefined): Delivery {
  const bodies = eventIds.map((id) => {
    const body = bodyOf(id);
    if (body === undefined) throw new StateError(`${where}: delivery ${row.id} refers to event ${id}, which is missing`);
    return JSON.parse(body) as RiskEvent | DigestEvent;
  });
  const digest = bodies.find((event): event is DigestEvent => event.type === 'digest');
  const stored = digest ? { events: [], digest } : { events: bodies as RiskEvent[] };
  return {
    id: row.id,
    sink,
    accountId: row.account_id,
    attempts: row.attempts,
    createdAt: Number(row.created_at),
    since: Number(row.retried_at ?? row.created_at),
    ...(row.incident_action && row.incident_key !== null
      ? { incident: { action: row.incident_action, key: row.incident_key, ...(row.incident_note === null ? {} : { note: row.incident_note }) } }
      : {}),
    ...stored,
  };
}

/**
 * The subjects of pending deliveries, from the stored bodies of their events (one row per
 * delivery and event): what a store whose schema predates delivery subjects fills in on upgrade.
 */
export function pendingSubjects(rows: Iterable<{ readonly id: number; readonly sink: string; readonly body: string }>): [id: number, sink: string, subject: string][] {
  const subjects = new Map<string, [number, string, string]>();
  for (const { id, sink, body } of rows) {
    let subject: string;
    try {
      const event = JSON.parse(body) as RiskEvent | DigestEvent;
      subject = event.type === 'digest' ? `digest/${event.data.sink}` : subjectOf(event);
    } catch (error) {
      throw new StoredRowError(
        `delivery ${id} (sink ${sink}) names an event whose stored body cannot be read (${(error as Error).message.replace(/\s*\n\s*/g, ' ')}): delete that delivery, or restore a backup`,
      );
    }
    subjects.set(`${id} ${subject}`, [id, sink, subject]);
  }
  return [...subjects.values()];
}

/** A stored row riskwatch cannot read (a corrupt body, a hand edit): the store says which, and where, in one line. */
export class StoredRowError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'StoredRowError';
  }
}
