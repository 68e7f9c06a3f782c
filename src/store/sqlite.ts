import type { DatabaseSync, StatementSync } from 'node:sqlite';
import type { FlapState } from '../detect/flapping.ts';
import { StoredLevels } from '../detect/stored-levels.ts';
import { type Behavior, LEVEL_RANK, levelOfRank, type RiskLevel, type RiskUser } from '../model.ts';
import type { RiskEvent } from '../detect/events.ts';
import {
  applySilences,
  type Delivery,
  type DeliveryOutcome,
  type DeliveryRow,
  type SettledDelivery,
  deliveryFilters,
  deliveryRowFrom,
  DELIVERY_ROW_COLUMNS,
  type DeliveryQuery,
  type UserQuery,
  usersParams,
  usersSql,
  type DeliveryTableRow,
  type EventQuery,
  type EventRow,
  eventFilters,
  eventUserColumns,
  type ClaimedRow,
  CLAIMED_COLUMNS,
  type DigestCommit,
  type DigestFacts,
  FLAPPING_COUNTS_SQL,
  flapStatesFrom,
  type IncidentChange,
  incidentChangeDeliveries,
  incidentFrom,
  incidentsSql,
  type IncidentTableRow,
  type OpenIncident,
  type PlannedDelivery,
  type Revived,
  STALE_INCIDENT_DELIVERY,
  type Silence,
  SilenceReader,
  type StoredSilence,
  UNREADABLE_SILENCE_SQL,
  type StatusRows,
  statusFrom,
  type StoreStatus,
  type UserRow,
  userRowFrom,
  type UserTableRow,
  USER_ROW_COLUMNS,
  type PollCommit,
  DELIVERY_COUNTS_SQL,
  type DeliveryCountRow,
  claimedDelivery,
  pendingSubjects,
  StaleSnapshotError,
  StateError,
  StoredRowError,
  tallyDeliveries,
  type StateStore,
  type StoredSnapshot,
} from './store.ts';

const { accessSync, constants, existsSync, lchownSync, lstatSync, statSync } = process.getBuiltinModule('node:fs');
const { hostname } = process.getBuiltinModule('node:os');
const path = process.getBuiltinModule('node:path');
const sqlite = process.getBuiltinModule('node:sqlite');

/** Each entry moves the schema one version up; `PRAGMA user_version` says how many have run. */
export const SQLITE_MIGRATIONS: readonly (string | ((db: DatabaseSync) => void))[] = [
  `CREATE TABLE accounts (
     account_id TEXT PRIMARY KEY,
     version INTEGER NOT NULL,
     polled_at INTEGER NOT NULL
   ) STRICT;
   CREATE TABLE users (
     account_id TEXT NOT NULL,
     user_id TEXT NOT NULL,
     level INTEGER NOT NULL,
     email TEXT NOT NULL,
     name TEXT NOT NULL,
     event_count INTEGER NOT NULL,
     last_event TEXT,
     PRIMARY KEY (account_id, user_id)
   ) STRICT, WITHOUT ROWID;
   CREATE TABLE behaviors (
     account_id TEXT NOT NULL,
     behavior_id TEXT NOT NULL,
     name TEXT NOT NULL,
     description TEXT NOT NULL,
     enabled INTEGER NOT NULL,
     risk_level TEXT NOT NULL,
     PRIMARY KEY (account_id, behavior_id)
   ) STRICT, WITHOUT ROWID;
   CREATE TABLE events (
     id TEXT PRIMARY KEY,
     account_id TEXT NOT NULL,
     type TEXT NOT NULL,
     created_at INTEGER NOT NULL,
     body TEXT NOT NULL
   ) STRICT;
   CREATE TABLE deliveries (
     id INTEGER PRIMARY KEY AUTOINCREMENT,
     sink TEXT NOT NULL,
     account_id TEXT NOT NULL,
     event_ids TEXT NOT NULL,
     state TEXT NOT NULL CHECK (state IN ('pending', 'delivered', 'dead')),
     attempts INTEGER NOT NULL DEFAULT 0,
     created_at INTEGER NOT NULL,
     next_attempt_at INTEGER NOT NULL,
     leased_until INTEGER NOT NULL DEFAULT 0,
     finished_at INTEGER,
     last_error TEXT
   ) STRICT;
   CREATE INDEX deliveries_due ON deliveries (sink, next_attempt_at) WHERE state = 'pending';
   CREATE TABLE holder (
     id INTEGER PRIMARY KEY CHECK (id = 1),
     pid INTEGER NOT NULL,
     host TEXT NOT NULL,
     started_at INTEGER NOT NULL
   ) STRICT;`,
  // 2: claiming walks a sink's pending deliveries in id order, and counting pending and
  // dead-lettered deliveries (every /metrics scrape) must not scan the history.
  // Users a multi-page read missed once are marked, so that the next read confirms their
  // departure even in another process (\`once\` from cron). A sink held back by a struggling
  // receiver keeps its hold in sink_holds, so that what is committed meanwhile queues behind it.
  `CREATE INDEX deliveries_claim ON deliveries (sink, id) WHERE state = 'pending';
   CREATE INDEX deliveries_state ON deliveries (state, sink);
   ALTER TABLE users ADD COLUMN missing INTEGER NOT NULL DEFAULT 0;
   CREATE TABLE sink_holds (sink TEXT PRIMARY KEY, until INTEGER NOT NULL) STRICT;`,
  // 3: with deliveries_due there, claiming took every due delivery of the sink and sorted
  // them by id to hand out the first 16: 1.6 ms a claim with 10,000 pending. Walking
  // deliveries_claim in id order stops at the 16th.
  `DROP INDEX deliveries_due;`,
  // 4: the subjects of each pending delivery (what its events are about, subjectOf), so that a
  // claim passes over a delivery while an earlier one of the same subject is still pending.
  // Rows live while their delivery is pending. Those pending at the upgrade get theirs here.
  (db) => {
    db.exec(`CREATE TABLE delivery_subjects (
       delivery_id INTEGER NOT NULL,
       sink TEXT NOT NULL,
       subject TEXT NOT NULL,
       PRIMARY KEY (delivery_id, subject)
     ) STRICT, WITHOUT ROWID;
     CREATE INDEX delivery_subjects_order ON delivery_subjects (sink, subject, delivery_id);`);
    // A page of pending deliveries at a time: an outbox backed up by a long outage may hold millions.
    const page = db.prepare(
      `SELECT d.id, d.sink, e.body FROM (SELECT id, sink, event_ids FROM deliveries WHERE state = 'pending' AND id > ? ORDER BY id LIMIT 2000) d, json_each(d.event_ids) j
       JOIN events e ON e.id = j.value ORDER BY d.id`,
    );
    const last = db.prepare("SELECT MAX(id) AS id FROM (SELECT id FROM deliveries WHERE state = 'pending' AND id > ? ORDER BY id LIMIT 2000)");
    const insert = db.prepare('INSERT INTO delivery_subjects (delivery_id, sink, subject) VALUES (?, ?, ?)');
    for (let after = 0; ; ) {
      const upTo = (last.get(after) as { id: number | null }).id;
      if (upTo === null) break;
      const rows = page.all(after) as unknown as { id: number; sink: string; body: string }[];
      for (const [id, sink, subject] of pendingSubjects(rows)) insert.run(id, sink, subject);
      after = upTo;
    }
  },
  // 5: the operator commands (SPEC §8). Silences; events keep whose they are (for `events --user`
  // and `users`' since) and the silence that muted them; each account's last success and error.
  `CREATE TABLE silences (
     id TEXT PRIMARY KEY,
     user TEXT,
     behavior TEXT,
     account_id TEXT,
     starts_at INTEGER NOT NULL,
     ends_at INTEGER NOT NULL,
     reason TEXT NOT NULL,
     created_by TEXT NOT NULL
   ) STRICT;
   CREATE INDEX silences_ends ON silences (ends_at);
   ALTER TABLE events ADD COLUMN user_id TEXT;
   ALTER TABLE events ADD COLUMN email TEXT;
   ALTER TABLE events ADD COLUMN silence_id TEXT;
   UPDATE events SET user_id = json_extract(body, '$.data.user.user_id'), email = lower(json_extract(body, '$.data.user.email'))
     WHERE type LIKE 'user.%' AND json_valid(body);
   CREATE INDEX events_user ON events (user_id, created_at) WHERE user_id IS NOT NULL;
   CREATE INDEX events_email ON events (email, created_at) WHERE email IS NOT NULL;
   CREATE INDEX events_time ON events (created_at);
   CREATE INDEX users_level ON users (account_id, level, email);
   CREATE TABLE account_status (
     account_id TEXT PRIMARY KEY,
     last_success_at INTEGER,
     last_error TEXT,
     last_error_at INTEGER
   ) STRICT;
   INSERT INTO account_status (account_id, last_success_at) SELECT account_id, polled_at FROM accounts;`,
  // 6: the incidents sinks opened and riskwatch has not closed, so that a config that no longer
  // covers one (a raised min_level, a new routing key, a sink or account removed) closes it; what a
  // delivery does to an incident; when an operator last retried a delivery (max_age counts from it,
  // created_at stays). Users a multi-page read missed are found by an index, not a scan. Each
  // user's recent level changes, and whether they are flapping, and each sink's last digest (SPEC §9).
  `CREATE TABLE incidents (
     sink TEXT NOT NULL,
     incident_key TEXT NOT NULL,
     credential_id TEXT NOT NULL,
     account_id TEXT NOT NULL,
     subject TEXT NOT NULL,
     event_id TEXT NOT NULL,
     delivery_id INTEGER NOT NULL,
     opened_at INTEGER NOT NULL,
     PRIMARY KEY (sink, incident_key)
   ) STRICT, WITHOUT ROWID;
   CREATE INDEX incidents_delivery ON incidents (delivery_id);
   ALTER TABLE deliveries ADD COLUMN incident_action TEXT CHECK (incident_action IN ('open', 'close', 'retire'));
   ALTER TABLE deliveries ADD COLUMN incident_key TEXT;
   ALTER TABLE deliveries ADD COLUMN incident_note TEXT;
   ALTER TABLE deliveries ADD COLUMN retried_at INTEGER;
   CREATE INDEX users_missing ON users (account_id, user_id) WHERE missing = 1;
   CREATE TABLE flapping (
     account_id TEXT NOT NULL,
     user_id TEXT NOT NULL,
     flapping INTEGER NOT NULL,
     state TEXT NOT NULL,
     PRIMARY KEY (account_id, user_id)
   ) STRICT, WITHOUT ROWID;
   CREATE TABLE digests (sink TEXT PRIMARY KEY, last_slot INTEGER NOT NULL) STRICT;`,
  // 7: a user's timeline (the console) finds the deliveries of their events among their account's
  // recent ones, not by walking every delivery kept. And the emails 5 lower-cased with SQLite's
  // lower(), which leaves letters beyond ASCII as they were (É): as JavaScript does, which every
  // later write and every look-up (`events --user`) does.
  (db) => {
    db.exec('CREATE INDEX deliveries_account ON deliveries (account_id, created_at);');
    db.function('riskwatch_lower', { deterministic: true }, (text) => (typeof text === 'string' ? text.toLowerCase() : text));
    db.exec('UPDATE events SET email = riskwatch_lower(email) WHERE email IS NOT NULL AND email <> riskwatch_lower(email);');
  },
];

/**
 * A pending delivery `d` shares a subject with an earlier pending delivery of its sink: it waits.
 * The earlier one's state is checked, not only its row here: a replica of an older riskwatch,
 * during a rolling upgrade, settles deliveries without removing their subjects.
 */
const HELD_BY_EARLIER = `EXISTS (
  SELECT 1 FROM delivery_subjects mine JOIN delivery_subjects earlier
    ON earlier.sink = mine.sink AND earlier.subject = mine.subject AND earlier.delivery_id < mine.delivery_id
  JOIN deliveries e ON e.id = earlier.delivery_id AND e.state = 'pending'
  WHERE mine.delivery_id = d.id)`;

export const SCHEMA_VERSION = SQLITE_MIGRATIONS.length;

export interface SqliteStoreOptions {
  /** How long a claimed delivery stays invisible to other claims. Default 5 minutes. */
  readonly leaseMs?: number;
  readonly now?: () => number;
  /**
   * An operator command beside the daemon (SPEC §3): no process lock, and the
   * file's holder and leases are left as they are. WAL and a busy timeout let
   * its short transactions wait for the daemon's. `read`: the file must exist
   * already (a read of a new, empty one would only mislead); `write` may create
   * it (a silence set before the daemon first starts).
   */
  readonly shared?: 'read' | 'write';
  /** Told what the store skipped rather than failed on (a silence whose times are not times). */
  readonly warn?: (message: string) => void;
}

/**
 * The embedded store: one SQLite file in WAL mode, held by one process at a
 * time. A poll's commit is fsynced (it must survive a power cut: redone, the
 * poll would announce the same changes under new ids); the outbox's
 * bookkeeping is not (survives any crash of the process; a power cut may at
 * worst re-send a delivery, under the same id), which keeps it fast.
 */
export class SqliteStore implements StateStore {
  readonly file: string;
  readonly #db: DatabaseSync;
  readonly #lock: DatabaseSync | undefined;
  readonly #leaseMs: number;
  readonly #statements = new Map<string, StatementSync>();
  readonly #silences: SilenceReader;

  private constructor(file: string, db: DatabaseSync, lock: DatabaseSync | undefined, options: SqliteStoreOptions) {
    this.file = file;
    this.#db = db;
    this.#lock = lock;
    this.#leaseMs = options.leaseMs ?? 5 * 60_000;
    this.#silences = new SilenceReader(options.warn);
  }

  /** Opens (creating or migrating) the state file; throws StateError with a clear line when it cannot. */
  static open(file: string, options: SqliteStoreOptions = {}): SqliteStore {
    const now = options.now ?? Date.now;
    checkDirectory(file);
    // A typo in state.sqlite, or another config than the daemon's, would otherwise make an empty
    // file and report that nobody is at risk.
    if (options.shared === 'read' && !existsSync(file)) throw new StateError(`state file ${file} does not exist: riskwatch run creates it (is this the daemon's config?)`);
    const lock = options.shared ? undefined : acquireLock(file);
    let db: DatabaseSync | undefined;
    try {
      db = new sqlite.DatabaseSync(file, { timeout: 5000 });
      // Refuse a file that is not ours before changing anything in it, even its journal mode.
      checkSchema(db, file);
      db.exec('PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON;');
      migrate(db, file);
      ownedLikeItsDirectory(file);
      if (lock) {
        db.prepare('INSERT OR REPLACE INTO holder (id, pid, host, started_at) VALUES (1, ?, ?, ?)').run(process.pid, hostname(), now());
        // Leases belong to the process that held the file before us; it is gone.
        db.exec("UPDATE deliveries SET leased_until = 0 WHERE state = 'pending' AND leased_until > 0");
      }
    } catch (error) {
      db?.close();
      lock?.close();
      throw asStateError(error, file, 'open');
    }
    return new SqliteStore(file, db, lock, options);
  }

  async loadSnapshot(accountId: string): Promise<StoredSnapshot> {
    return this.#read('read the snapshot', () => this.#loadSnapshot(accountId));
  }

  #loadSnapshot(accountId: string): StoredSnapshot {
    const row = this.#stmt('SELECT version FROM accounts WHERE account_id = ?').get(accountId) as { version: number } | undefined;
    if (!row) return { version: 0, snapshot: undefined, missing: new Set(), flaps: new Map() };
    const missing = new Set<string>();
    for (const { user_id } of this.#stmt('SELECT user_id FROM users WHERE account_id = ? AND missing = 1').iterate(accountId) as Iterable<{ user_id: string }>) {
      missing.add(user_id);
    }
    const users = this.#stmt('SELECT user_id, level FROM users WHERE account_id = ?');
    users.setReturnArrays(true);
    // Straight into the compact form the poller keeps (at a million users, one map, not two).
    const userLevels = StoredLevels.fromRanks(users.iterate(accountId) as Iterable<[string, number]>);
    const behaviors = new Map<string, Behavior>();
    for (const b of this.#stmt('SELECT behavior_id, name, description, enabled, risk_level FROM behaviors WHERE account_id = ?').iterate(accountId) as Iterable<{
      behavior_id: string;
      name: string;
      description: string;
      enabled: number;
      risk_level: RiskLevel;
    }>) {
      behaviors.set(b.behavior_id, { id: b.behavior_id, name: b.name, description: b.description, enabled: b.enabled === 1, risk_level: b.risk_level });
    }
    return { version: row.version, snapshot: { userLevels, behaviors }, missing, flaps: this.#loadFlaps(accountId) };
  }

  async loadFlaps(accountId: string): Promise<Map<string, FlapState>> {
    return this.#read('read flapping users', () => this.#loadFlaps(accountId));
  }

  #loadFlaps(accountId: string): Map<string, FlapState> {
    return flapStatesFrom(this.#stmt('SELECT user_id, state FROM flapping WHERE account_id = ?').iterate(accountId) as Iterable<{ user_id: string; state: string }>);
  }

  async loadUsers(accountId: string, userIds: readonly string[]): Promise<Map<string, RiskUser>> {
    return this.#read('read users', () => this.#loadUsers(accountId, userIds));
  }

  #loadUsers(accountId: string, userIds: readonly string[]): Map<string, RiskUser> {
    const users = new Map<string, RiskUser>();
    const select = this.#stmt('SELECT user_id, level, email, name, event_count, last_event FROM users WHERE account_id = ? AND user_id = ?');
    for (const userId of userIds) {
      const row = select.get(accountId, userId) as { user_id: string; level: number; email: string; name: string; event_count: number; last_event: string | null } | undefined;
      if (row) {
        users.set(userId, {
          user_id: row.user_id,
          email: row.email,
          name: row.name,
          event_count: row.event_count,
          last_event: row.last_event,
          max_risk_level: levelOfRank(row.level),
        });
      }
    }
    return users;
  }

  async commitPoll(commit: PollCommit): Promise<number> {
    // Synced to the disk before it returns (synchronous = FULL) when it holds events or deliveries: a delivery may go
    // out right after, and what went out must not be lost with the power. A poll that found nothing to announce only
    // moves the account's version and times forward (or stores what a later read would store again: a baseline, a
    // user missed once): in the WAL it survives a crash of the process all the same, and a power cut that loses it
    // loses nobody's alert (the next poll reads the same again). Not syncing those spares the disk an fsync per
    // account per poll: at a thousand accounts a round's thousand fsyncs held up every other poll (issue 28).
    const durable = commit.events.length > 0 || commit.deliveries.length > 0;
    return this.#transaction('commit the poll', { durable }, () => {
      const { accountId, delta } = commit;
      const current = (this.#stmt('SELECT version FROM accounts WHERE account_id = ?').get(accountId) as { version: number } | undefined)?.version ?? 0;
      if (current !== commit.expectedVersion) throw new StaleSnapshotError(accountId, commit.expectedVersion, current);
      const version = current + 1;
      this.#stmt('INSERT INTO accounts (account_id, version, polled_at) VALUES (?, ?, ?) ON CONFLICT (account_id) DO UPDATE SET version = excluded.version, polled_at = excluded.polled_at').run(
        accountId,
        version,
        commit.polledAt,
      );

      const upsertUser = this.#stmt(
        `INSERT INTO users (account_id, user_id, level, email, name, event_count, last_event) VALUES (?, ?, ?, ?, ?, ?, ?)
         ON CONFLICT (account_id, user_id) DO UPDATE SET level = excluded.level, email = excluded.email, name = excluded.name,
           event_count = excluded.event_count, last_event = excluded.last_event`,
      );
      for (const u of delta.upsertUsers) {
        upsertUser.run(accountId, u.user_id, LEVEL_RANK[u.max_risk_level], u.email, u.name, u.event_count, u.last_event);
      }
      const markMissing = this.#stmt('UPDATE users SET missing = ? WHERE account_id = ? AND user_id = ?');
      for (const userId of commit.missing?.mark ?? []) markMissing.run(1, accountId, userId);
      for (const userId of commit.missing?.clear ?? []) markMissing.run(0, accountId, userId);
      const deleteUser = this.#stmt('DELETE FROM users WHERE account_id = ? AND user_id = ?');
      for (const userId of delta.removeUserIds) deleteUser.run(accountId, userId);
      const upsertFlap = this.#stmt(
        'INSERT INTO flapping (account_id, user_id, flapping, state) VALUES (?, ?, ?, ?) ON CONFLICT (account_id, user_id) DO UPDATE SET flapping = excluded.flapping, state = excluded.state',
      );
      for (const [userId, state] of commit.flaps?.upsert ?? []) upsertFlap.run(accountId, userId, state.flapping ? 1 : 0, JSON.stringify(state));
      const forgetFlap = this.#stmt('DELETE FROM flapping WHERE account_id = ? AND user_id = ?');
      for (const userId of commit.flaps?.remove ?? []) forgetFlap.run(accountId, userId);

      const upsertBehavior = this.#stmt(
        `INSERT INTO behaviors (account_id, behavior_id, name, description, enabled, risk_level) VALUES (?, ?, ?, ?, ?, ?)
         ON CONFLICT (account_id, behavior_id) DO UPDATE SET name = excluded.name, description = excluded.description,
           enabled = excluded.enabled, risk_level = excluded.risk_level`,
      );
      for (const b of delta.upsertBehaviors) upsertBehavior.run(accountId, b.id, b.name, b.description, b.enabled ? 1 : 0, b.risk_level);
      const deleteBehavior = this.#stmt('DELETE FROM behaviors WHERE account_id = ? AND behavior_id = ?');
      for (const id of delta.removeBehaviorIds) deleteBehavior.run(accountId, id);

      this.#stmt(
        `INSERT INTO account_status (account_id, last_success_at, last_error, last_error_at) VALUES (?, ?, NULL, NULL)
         ON CONFLICT (account_id) DO UPDATE SET last_success_at = excluded.last_success_at, last_error = NULL, last_error_at = NULL`,
      ).run(accountId, commit.polledAt);

      // Silences are decided here, in the commit's own transaction (SPEC §8).
      const active = commit.events.length > 0 ? this.#activeSilences(commit.polledAt) : [];
      const { silencedBy, deliveries } = applySilences(commit.events, commit.deliveries, active);
      const insertEvent = this.#stmt('INSERT INTO events (id, account_id, type, created_at, body, user_id, email, silence_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?)');
      for (const event of commit.events) {
        const { userId, email } = eventUserColumns(event);
        insertEvent.run(event.id, accountId, event.type, commit.polledAt, JSON.stringify(event), userId, email, silencedBy.get(event.id) ?? null);
      }
      // A delivery of an event that is not stored would block its sink's outbox for good.
      const committed = new Set(commit.events.map((e) => e.id));
      const stored = this.#stmt('SELECT 1 FROM events WHERE id = ?');
      for (const d of deliveries) {
        const missing = d.eventIds.find((id) => !committed.has(id) && stored.get(id) === undefined);
        if (missing !== undefined) throw new StateError(`state file ${this.file}: a delivery to ${d.sink} names event ${missing}, which is not stored; nothing was committed`);
      }
      // A sink held back (holdSink) holds new deliveries too: they queue behind the held ones.
      for (const d of deliveries) {
        const id = this.#insertDelivery(d, commit.polledAt);
        if (d.incident?.action === 'open') this.#openIncident(d, id, commit.polledAt);
        else if (d.incident) this.#stmt('DELETE FROM incidents WHERE sink = ? AND incident_key = ?').run(d.sink, d.incident.key);
      }
      return version;
    });
  }

  /** A pending delivery and its subjects; a sink held back (holdSink) holds it too: it queues behind the held ones. */
  #insertDelivery(d: PlannedDelivery, now: number): number {
    const { lastInsertRowid } = this.#stmt(
      `INSERT INTO deliveries (sink, account_id, event_ids, state, created_at, next_attempt_at, incident_action, incident_key, incident_note)
       VALUES (?, ?, ?, 'pending', ?, MAX(?, COALESCE((SELECT until FROM sink_holds WHERE sink = ?), 0)), ?, ?, ?)`,
    ).run(d.sink, d.accountId, JSON.stringify(d.eventIds), now, now, d.sink, d.incident?.action ?? null, d.incident?.key ?? null, d.incident?.note ?? null);
    const id = Number(lastInsertRowid);
    const insertSubject = this.#stmt('INSERT INTO delivery_subjects (delivery_id, sink, subject) VALUES (?, ?, ?)');
    for (const subject of d.subjects) insertSubject.run(id, d.sink, subject);
    return id;
  }

  /** `d` (a trigger) opens its sink's incident: it is the sink's open incident of that key now. */
  #openIncident(d: PlannedDelivery, deliveryId: number, now: number): void {
    this.#stmt(
      `INSERT INTO incidents (sink, incident_key, credential_id, account_id, subject, event_id, delivery_id, opened_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)
       ON CONFLICT (sink, incident_key) DO UPDATE SET credential_id = excluded.credential_id, account_id = excluded.account_id, subject = excluded.subject,
         event_id = excluded.event_id, delivery_id = excluded.delivery_id, opened_at = excluded.opened_at`,
    ).run(d.sink, d.incident!.key, d.incident!.credentialId, d.accountId, d.subjects[0]!, d.eventIds[0]!, deliveryId, now);
  }

  async claimDue(sink: string, now: number, limit: number): Promise<Delivery[]> {
    return this.#transaction('claim deliveries', {}, () => {
      const rows = this.#stmt(
        `UPDATE deliveries SET leased_until = ? WHERE id IN (
           SELECT id FROM deliveries d WHERE state = 'pending' AND sink = ? AND next_attempt_at <= ? AND leased_until <= ? AND NOT ${HELD_BY_EARLIER}
           ORDER BY id LIMIT ?
         ) RETURNING ${CLAIMED_COLUMNS}`,
      ).all(now + this.#leaseMs, sink, now, now, limit) as unknown as (ClaimedRow & { event_ids: string })[];
      rows.sort((a, b) => a.id - b.id);
      const eventBody = this.#stmt('SELECT body FROM events WHERE id = ?');
      const bodyOf = (id: string) => (eventBody.get(id) as { body: string } | undefined)?.body;
      return rows.map((row) => claimedDelivery(`state file ${this.file}`, sink, row, JSON.parse(row.event_ids) as string[], bodyOf));
    });
  }

  async nextDueAt(sink: string): Promise<number | undefined> {
    const row = this.#read('read the outbox', () =>
      this.#stmt(`SELECT MIN(MAX(next_attempt_at, leased_until)) AS due FROM deliveries d WHERE state = 'pending' AND sink = ? AND NOT ${HELD_BY_EARLIER}`).get(sink),
    ) as {
      due: number | null;
    };
    return row.due ?? undefined;
  }

  async recordOutcomes(outcomes: readonly SettledDelivery[]): Promise<void> {
    if (outcomes.length === 0) return;
    this.#transaction(outcomes.length === 1 ? 'record a delivery outcome' : `record ${outcomes.length} delivery outcomes`, {}, () => {
      for (const { deliveryId, outcome } of outcomes) this.#recordOutcome(deliveryId, outcome);
    });
  }

  /**
   * Only a claimed delivery still pending is settled, as on PostgreSQL: one an operator moved or
   * retried meanwhile (its lease cleared), or settled already, keeps what it has now.
   */
  #recordOutcome(deliveryId: number, outcome: DeliveryOutcome): void {
    const claimed = "WHERE id = ? AND state = 'pending' AND leased_until > 0";
    const settled =
      outcome.kind === 'retry'
        ? this.#stmt(`UPDATE deliveries SET attempts = attempts + 1, next_attempt_at = ?, leased_until = 0, last_error = ? ${claimed}`).run(outcome.nextAttemptAt, outcome.error, deliveryId)
        : this.#stmt(`UPDATE deliveries SET state = ?, attempts = attempts + 1, finished_at = ?, leased_until = 0, last_error = ? ${claimed}`).run(
            outcome.kind,
            outcome.at,
            outcome.kind === 'dead' ? outcome.error : null,
            deliveryId,
          );
    // Settled for good: the next delivery of its subjects may go.
    if (settled.changes > 0 && outcome.kind !== 'retry') this.#stmt('DELETE FROM delivery_subjects WHERE delivery_id = ?').run(deliveryId);
  }

  async holdSink(sink: string, until: number, now: number): Promise<number> {
    return this.#transaction('hold back a sink', {}, () => {
      this.#stmt('INSERT INTO sink_holds (sink, until) VALUES (?, ?) ON CONFLICT (sink) DO UPDATE SET until = MAX(until, excluded.until)').run(sink, until);
      const held = (this.#stmt('SELECT until FROM sink_holds WHERE sink = ?').get(sink) as { until: number }).until;
      this.#stmt("UPDATE deliveries SET next_attempt_at = ? WHERE state = 'pending' AND sink = ? AND next_attempt_at < ? AND leased_until <= ?").run(held, sink, held, now);
      return held;
    });
  }

  async recordPollFailure(accountId: string, error: string, at: number): Promise<void> {
    this.#transaction('record a failed poll', {}, () => {
      this.#stmt(
        `INSERT INTO account_status (account_id, last_error, last_error_at) VALUES (?, ?, ?)
         ON CONFLICT (account_id) DO UPDATE SET last_error = excluded.last_error, last_error_at = excluded.last_error_at`,
      ).run(accountId, error, at);
    });
  }

  async prune(before: { delivered: number; history: number }): Promise<{ deliveries: number; events: number }> {
    return this.#transaction('prune old deliveries', {}, () => {
      const delivered = this.#stmt("DELETE FROM deliveries WHERE state = 'delivered' AND finished_at < ?").run(before.delivered).changes;
      // Dead letters are kept until retried or the history lapses (SPEC §8).
      const dead = this.#stmt("DELETE FROM deliveries WHERE state = 'dead' AND COALESCE(finished_at, created_at) < ?").run(before.history).changes;
      this.#stmt('DELETE FROM silences WHERE ends_at < ?').run(before.history);
      // Events past the history that no remaining delivery or open incident refers to; the subqueries are evaluated once, not per event.
      const events = this.#stmt(
        `DELETE FROM events WHERE created_at < ? AND id NOT IN (SELECT j.value FROM deliveries d, json_each(d.event_ids) j) AND id NOT IN (SELECT event_id FROM incidents)`,
      ).run(before.history).changes;
      return { deliveries: Number(delivered) + Number(dead), events: Number(events) };
    });
  }

  async deliveryCounts(): Promise<Map<string, { pending: number; dead: number }>> {
    return tallyDeliveries(this.#read('read the outbox', () => this.#stmt(DELIVERY_COUNTS_SQL).all() as unknown as DeliveryCountRow[]));
  }

  // The operator commands (SPEC §3, §8): short reads and writes, beside a running daemon.

  async addSilence(silence: Silence): Promise<void> {
    this.#transaction('add a silence', {}, () => {
      this.#stmt('INSERT INTO silences (id, user, behavior, account_id, starts_at, ends_at, reason, created_by) VALUES (?, ?, ?, ?, ?, ?, ?, ?)').run(
        silence.id,
        silence.user,
        silence.behavior,
        silence.accountId,
        silence.startsAt,
        silence.endsAt,
        silence.reason,
        silence.by,
      );
    });
  }

  async listSilences(options: { all: boolean; now: number }): Promise<Silence[]> {
    return this.#read('read silences', () =>
      options.all
        ? this.#readSilences(`SELECT ${SILENCE_COLUMNS} FROM silences ORDER BY starts_at DESC, id`)
        : this.#readSilences(`SELECT ${SILENCE_COLUMNS} FROM silences WHERE ends_at > ? AND starts_at <= ? ORDER BY starts_at DESC, id`, options.now, options.now),
    );
  }

  #activeSilences(now: number): Silence[] {
    return this.#readSilences(`SELECT ${SILENCE_COLUMNS} FROM silences WHERE ends_at > ? AND starts_at <= ?`, now, now);
  }

  /** Times read as bigints: one written past a double's range must be skipped (SilenceReader), not throw and stop the poll. */
  #readSilences(sql: string, ...params: number[]): Silence[] {
    const statement = this.#stmt(sql);
    statement.setReadBigInts(true);
    return this.#silences.read(statement.all(...params) as unknown as StoredSilence[]);
  }

  async expireSilence(id: string, now: number): Promise<boolean> {
    return this.#transaction(
      'end a silence',
      {},
      () => this.#stmt(`UPDATE silences SET ends_at = ? WHERE id = ? AND (ends_at > ? AND starts_at <= ? OR ${UNREADABLE_SILENCE_SQL})`).run(now, id, now, now).changes > 0,
    );
  }

  async listUsers(query: UserQuery): Promise<UserRow[]> {
    return this.#read('read users', () => {
      const sql = usersSql({ account: '?1', level: '?2', user: '?3', flapping: '?4', limit: '?5', offset: '?6' });
      return (this.#stmt(sql).all(...usersParams(query, -1)) as unknown as UserTableRow[]).map(userRowFrom);
    });
  }

  async listEvents(query: EventQuery): Promise<EventRow[]> {
    return this.#read('read events', () => {
      // Only the filters given, so that the planner can take the user's indexes (an `? IS NULL OR` hides them).
      const { where, params } = eventFilters(query);
      const rows = this.#stmt(`SELECT body, silence_id FROM events WHERE ${where} ORDER BY created_at DESC, id LIMIT ?`).all(...params, query.limit) as {
        body: string;
        silence_id: string | null;
      }[];
      return rows.map((row) => ({ event: JSON.parse(row.body) as RiskEvent, silenced: row.silence_id }));
    });
  }

  async listDeliveries(query: DeliveryQuery): Promise<DeliveryRow[]> {
    return this.#read('read the outbox', () => {
      // Of some events: any state, found among the account's deliveries made since the oldest of them.
      const { where, params } = deliveryFilters(query, (ids) => [
        `d.created_at >= (SELECT MIN(created_at) FROM events WHERE id IN (SELECT value FROM json_each(?)))
         AND EXISTS (SELECT 1 FROM json_each(d.event_ids) j WHERE j.value IN (SELECT value FROM json_each(?)))`,
        JSON.stringify(ids),
        JSON.stringify(ids),
      ]);
      const rows = this.#stmt(
        `SELECT ${DELIVERY_ROW_COLUMNS},
           (SELECT json_group_array(e.type) FROM json_each(d.event_ids) j LEFT JOIN events e ON e.id = j.value) AS types
         FROM deliveries d WHERE ${where}`,
      ).all(...(params as (string | number)[])) as unknown as DeliveryTableRow[];
      return rows.map(deliveryRowFrom);
    });
  }

  async retryDeliveries(which: { sink: string } | { ids: readonly number[] }, now: number): Promise<Revived> {
    return this.#transaction('retry dead letters', {}, () => {
      const ids =
        'sink' in which
          ? (this.#stmt("SELECT id FROM deliveries WHERE state = 'dead' AND sink = ? ORDER BY id").all(which.sink) as { id: number }[]).map((r) => r.id)
          : which.ids.filter((id) => this.#stmt("SELECT 1 FROM deliveries WHERE state = 'dead' AND id = ?").get(id) !== undefined);
      return this.#revive(ids, now);
    });
  }

  async moveDeliveries(from: string, to: string, now: number): Promise<Revived> {
    return this.#transaction('move deliveries', {}, () => {
      const ids = (this.#stmt("SELECT id FROM deliveries WHERE state IN ('pending', 'dead') AND sink = ? ORDER BY id").all(from) as { id: number }[]).map((r) => r.id);
      // The incidents their triggers opened go with them, unless the new sink has one of that key already.
      const moving = "delivery_id IN (SELECT id FROM deliveries WHERE sink = ?1 AND state IN ('pending', 'dead'))";
      this.#stmt(`DELETE FROM incidents WHERE sink = ?1 AND ${moving} AND incident_key IN (SELECT incident_key FROM incidents WHERE sink = ?2)`).run(from, to);
      this.#stmt(`UPDATE incidents SET sink = ?2 WHERE sink = ?1 AND ${moving}`).run(from, to);
      const move = this.#stmt('UPDATE deliveries SET sink = ? WHERE id = ?');
      for (const id of ids) move.run(to, id);
      return this.#revive(ids, now);
    });
  }

  /**
   * Makes deliveries pending again, due at `now`, under their ids, each behind its subject's
   * earlier ones; a stale trigger (STALE_INCIDENT_DELIVERY) is dropped instead.
   */
  #revive(ids: readonly number[], now: number): Revived {
    const stale = this.#stmt(`SELECT 1 FROM deliveries d WHERE d.id = ? AND ${STALE_INCIDENT_DELIVERY}`);
    const drop = this.#stmt('DELETE FROM deliveries WHERE id = ?');
    const revive = this.#stmt("UPDATE deliveries SET state = 'pending', attempts = 0, retried_at = ?, next_attempt_at = ?, leased_until = 0, finished_at = NULL WHERE id = ?");
    const forget = this.#stmt('DELETE FROM delivery_subjects WHERE delivery_id = ?');
    const bodies = this.#stmt('SELECT d.id, d.sink, e.body FROM deliveries d, json_each(d.event_ids) j JOIN events e ON e.id = j.value WHERE d.id = ?');
    const insertSubject = this.#stmt('INSERT OR IGNORE INTO delivery_subjects (delivery_id, sink, subject) VALUES (?, ?, ?)');
    let dropped = 0;
    for (const id of ids) {
      forget.run(id);
      if (stale.get(id) !== undefined) {
        drop.run(id);
        dropped++;
        continue;
      }
      revive.run(now, now, id);
      // Its subjects again, so that it keeps its place among its sink's deliveries of the same user or behavior.
      for (const [delivery, sink, subject] of pendingSubjects(bodies.all(id) as unknown as { id: number; sink: string; body: string }[])) insertSubject.run(delivery, sink, subject);
    }
    return { revived: ids.length - dropped, dropped };
  }

  async listIncidents(query: { sink?: string }): Promise<OpenIncident[]> {
    return this.#read('read incidents', () => (this.#stmt(incidentsSql('?1')).all(query.sink ?? null) as unknown as IncidentTableRow[]).map(incidentFrom));
  }

  async retireIncidents(changes: readonly IncidentChange[], now: number): Promise<number> {
    return this.#transaction('close incidents the config no longer covers', {}, () => {
      let changed = 0;
      for (const change of changes) {
        const { sink, key, deliveryId } = change.incident;
        // Another process (a replica loading the same config) did it first, or a poll moved it on.
        if (this.#stmt('DELETE FROM incidents WHERE sink = ? AND incident_key = ? AND delivery_id = ?').run(sink, key, deliveryId).changes === 0) continue;
        const { close, reopen } = incidentChangeDeliveries(change);
        if (close) this.#insertDelivery(close, now);
        if (reopen) this.#openIncident(reopen, this.#insertDelivery(reopen, now), now);
        if (change.rehome) {
          const i = change.incident;
          this.#stmt(
            'INSERT INTO incidents (sink, incident_key, credential_id, account_id, subject, event_id, delivery_id, opened_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (sink, incident_key) DO NOTHING',
          ).run(change.rehome.sink, i.key, i.credentialId, i.accountId, i.subject, i.eventId, i.deliveryId, i.openedAt);
        }
        changed++;
      }
      return changed;
    });
  }

  async lastDigest(sink: string): Promise<number | undefined> {
    return this.#read('read the last digest', () => (this.#stmt('SELECT last_slot FROM digests WHERE sink = ?').get(sink) as { last_slot: number } | undefined)?.last_slot);
  }

  async commitDigest(digest: DigestCommit): Promise<boolean> {
    return this.#transaction('queue a digest', { durable: true }, () => {
      const { sink, at, slot, previous, event, delivery } = digest;
      const moved =
        previous === undefined
          ? this.#stmt('INSERT INTO digests (sink, last_slot) VALUES (?, ?) ON CONFLICT (sink) DO NOTHING').run(sink, slot)
          : this.#stmt('UPDATE digests SET last_slot = ? WHERE sink = ? AND last_slot = ?').run(slot, sink, previous);
      if (moved.changes === 0) return false;
      if (event && delivery) {
        this.#stmt('INSERT INTO events (id, account_id, type, created_at, body) VALUES (?, ?, ?, ?, ?)').run(event.id, delivery.accountId, event.type, at, JSON.stringify(event));
        this.#insertDelivery(delivery, at);
      }
      return true;
    });
  }

  async digestFacts(query: { accountIds: readonly string[]; minLevel: RiskLevel; since: number; until: number; limit: number }): Promise<Map<string, DigestFacts>> {
    return this.#read('read a digest', () => {
      const rank = LEVEL_RANK[query.minLevel];
      const users = this.#stmt(
        `SELECT ${USER_ROW_COLUMNS}
         FROM users u WHERE u.account_id = ? AND u.level >= ? ORDER BY u.level DESC, u.email, u.user_id LIMIT ?`,
      );
      const total = this.#stmt('SELECT COUNT(*) AS n FROM users WHERE account_id = ? AND level >= ?');
      const changes = this.#stmt("SELECT COUNT(*) AS n FROM events WHERE account_id = ? AND created_at > ? AND created_at <= ? AND type <> 'digest'");
      return new Map(
        query.accountIds.map((id) => [
          id,
          {
            users: (users.all(id, rank, query.limit) as unknown as UserTableRow[]).map(userRowFrom),
            total: (total.get(id, rank) as { n: number }).n,
            changes: (changes.get(id, query.since, query.until) as { n: number }).n,
          },
        ]),
      );
    });
  }

  async status(now: number): Promise<StoreStatus> {
    return this.#read('read the status', () =>
      statusFrom({
        accountIds: (this.#stmt('SELECT account_id FROM accounts').all() as { account_id: string }[]).map((r) => r.account_id),
        status: this.#stmt('SELECT account_id, last_success_at, last_error, last_error_at FROM account_status').all() as unknown as StatusRows['status'],
        levels: this.#stmt('SELECT account_id, level, COUNT(*) AS n FROM users GROUP BY account_id, level').all() as unknown as StatusRows['levels'],
        leaders: [],
        flapping: this.#stmt(FLAPPING_COUNTS_SQL).all() as unknown as StatusRows['flapping'],
        counts: tallyDeliveries(this.#stmt(DELIVERY_COUNTS_SQL).all() as unknown as DeliveryCountRow[]),
        holds: this.#stmt('SELECT sink, until FROM sink_holds WHERE until > ?').all(now) as unknown as StatusRows['holds'],
        silences: (this.#stmt('SELECT COUNT(*) AS n FROM silences WHERE ends_at > ? AND starts_at <= ?').get(now, now) as { n: number }).n,
      }),
    );
  }

  /** One process per file: it leads every account, always. */
  async lead(accountIds: readonly string[]): Promise<ReadonlySet<string>> {
    return new Set(accountIds);
  }

  readonly leadershipCheckMs = undefined;
  readonly replica = undefined;

  async close(): Promise<void> {
    if (!this.#db.isOpen) return;
    this.#statements.clear();
    this.#db.close();
    this.#lock?.close();
    ownedLikeItsDirectory(this.file);
  }

  #stmt(sql: string): StatementSync {
    let statement = this.#statements.get(sql);
    if (!statement) {
      statement = this.#db.prepare(sql);
      this.#statements.set(sql, statement);
    }
    return statement;
  }

  /** After a failed write (a full disk, say), give the space the rolled-back WAL frames took back. */
  #releaseWal(): void {
    try {
      this.#db.exec('PRAGMA wal_checkpoint(TRUNCATE)');
    } catch {
      // Best effort: the next successful commit reuses the WAL anyway.
    }
  }

  #read<T>(what: string, body: () => T): T {
    try {
      return body();
    } catch (error) {
      throw asStateError(error, this.file, what);
    }
  }

  #transaction<T>(what: string, options: { durable?: boolean }, body: () => T): T {
    try {
      if (options.durable) this.#db.exec('PRAGMA synchronous = FULL');
      this.#db.exec('BEGIN IMMEDIATE');
    } catch (error) {
      throw asStateError(error, this.file, what);
    }
    try {
      const result = body();
      this.#db.exec('COMMIT');
      return result;
    } catch (error) {
      if (this.#db.isTransaction) this.#db.exec('ROLLBACK');
      if ((error as { errcode?: number }).errcode !== undefined) this.#releaseWal();
      if (error instanceof StaleSnapshotError || error instanceof StateError) throw error;
      throw asStateError(error, this.file, what);
    } finally {
      if (options.durable && this.#db.isOpen) this.#db.exec('PRAGMA synchronous = NORMAL');
    }
  }
}

/** A silences row as a StoredSilence. */
const SILENCE_COLUMNS = 'id, user, behavior, account_id AS accountId, starts_at AS startsAt, ends_at AS endsAt, reason, created_by AS "by"';

function checkDirectory(file: string): void {
  const dir = path.dirname(file);
  if (!existsSync(dir)) throw new StateError(`state directory ${dir} does not exist (state.sqlite: ${file})`);
  if (!statSync(dir).isDirectory()) throw new StateError(`state directory ${dir} is not a directory (state.sqlite: ${file})`);
  try {
    accessSync(dir, constants.W_OK);
  } catch {
    throw new StateError(`state directory ${dir} is not writable by this user (state.sqlite: ${file})`);
  }
  if (existsSync(file) && statSync(file).isDirectory()) throw new StateError(`state file ${file} is a directory`);
}

/**
 * One riskwatch per state file: an exclusive SQLite lock on `<file>.lock`,
 * which the operating system releases if the process dies, even by kill -9.
 * The lock lives as long as its connection: the store keeps it until close(),
 * so whoever opens a store must keep it referenced while it runs.
 */
/**
 * Root running a command (`silence add` before the daemon first starts, say) must not leave
 * the daemon's user a state file, WAL or lock it cannot write: what root made in a directory
 * another user owns is handed to that user.
 */
function ownedLikeItsDirectory(file: string): void {
  if (process.getuid?.() !== 0) return;
  const dir = statSync(path.dirname(file));
  if (dir.uid === 0) return;
  for (const name of [file, `${file}-wal`, `${file}-shm`, `${file}.lock`]) {
    try {
      // lstat and lchown: a symlink planted there (even between the two calls) is never followed to what it points at.
      const stat = lstatSync(name);
      if (stat.isFile() && stat.uid === 0) lchownSync(name, dir.uid, dir.gid);
    } catch {
      // Gone meanwhile (a WAL removed at close), or not made at all.
    }
  }
}

function acquireLock(file: string): DatabaseSync {
  const lockFile = `${file}.lock`;
  let lock: DatabaseSync | undefined;
  try {
    lock = new sqlite.DatabaseSync(lockFile, { timeout: 0 });
    // An exclusive transaction left open holds the lock without writing a byte,
    // so it works on a full disk too; closing the connection (or dying) ends it.
    lock.exec('BEGIN EXCLUSIVE');
    return lock;
  } catch (error) {
    lock?.close();
    if ((error as { errcode?: number }).errcode === 5) {
      throw new StateError(`state file ${file} is in use by ${describeHolder(file)}; stop it first, or give this one another state.sqlite`);
    }
    throw asStateError(error, lockFile, 'lock');
  }
}

function describeHolder(file: string): string {
  try {
    const db = new sqlite.DatabaseSync(file, { readOnly: true, timeout: 1000 });
    try {
      const row = db.prepare('SELECT pid, host, started_at FROM holder WHERE id = 1').get() as { pid: number; host: string; started_at: number } | undefined;
      if (row) return `riskwatch process ${row.pid} on ${row.host} (started ${new Date(row.started_at).toISOString()})`;
    } finally {
      db.close();
    }
  } catch {
    // The holder could not be read; say what we know.
  }
  return 'another riskwatch process';
}

/** The file's schema version, after making sure it is a riskwatch state file this riskwatch can use. */
/**
 * The file's schema version, refusing a file another program or a newer riskwatch wrote. The
 * version and the tables are read in one transaction: another riskwatch migrating the same new
 * file at the same moment (a daemon and an operator command, starting together) commits both at once.
 */
function checkSchema(db: DatabaseSync, file: string): number {
  db.exec('BEGIN');
  try {
    const version = (db.prepare('PRAGMA user_version').get() as { user_version: number }).user_version;
    if (version > SCHEMA_VERSION) {
      throw new StateError(`state file ${file} was written by a newer riskwatch (schema ${version}; this one knows up to ${SCHEMA_VERSION}); upgrade riskwatch or restore a backup`);
    }
    if (version === 0) {
      const tables = (db.prepare("SELECT COUNT(*) AS n FROM sqlite_master WHERE type = 'table'").get() as { n: number }).n;
      if (tables > 0) throw new StateError(`state file ${file} is an SQLite database but not a riskwatch state file; give state.sqlite a path of its own`);
    }
    return version;
  } finally {
    db.exec('COMMIT');
  }
}

/**
 * Brings the schema to SCHEMA_VERSION, one migration a transaction. The version is read again
 * under each transaction's write lock: another process may have migrated the file meanwhile
 * (both opening a new file at once), and a migration must never run twice.
 */
function migrate(db: DatabaseSync, file: string): void {
  for (;;) {
    db.exec('BEGIN IMMEDIATE');
    try {
      const current = (db.prepare('PRAGMA user_version').get() as { user_version: number }).user_version;
      if (current > SCHEMA_VERSION) throw new StateError(`state file ${file} was migrated meanwhile by a newer riskwatch (schema ${current}); upgrade riskwatch`);
      if (current === SCHEMA_VERSION) {
        db.exec('COMMIT');
        return;
      }
      const migration = SQLITE_MIGRATIONS[current]!;
      if (typeof migration === 'string') db.exec(migration);
      else migration(db);
      db.exec(`PRAGMA user_version = ${current + 1}`);
      db.exec('COMMIT');
    } catch (error) {
      if (db.isTransaction) db.exec('ROLLBACK');
      throw error;
    }
  }
}

const SQLITE_WHY: Record<number, string> = {
  5: 'the database is locked by another process',
  8: 'the file or its directory is read-only',
  10: 'a disk I/O error occurred',
  11: 'the file is corrupt',
  13: 'the disk is full',
  14: 'the file cannot be opened',
  26: 'the file is not an SQLite database (corrupt, or not a state file)',
};

/** SQLite's errors, said for an operator: which file, doing what, and why. */
function asStateError(error: unknown, file: string, doing: string): Error {
  if (error instanceof StateError) return error;
  if (error instanceof StoredRowError) return new StateError(`state file ${file}: cannot ${doing}: ${error.message}`, { cause: error });
  const code = (error as { errcode?: number }).errcode;
  if (code === undefined) return error as Error;
  const why = SQLITE_WHY[code & 0xff] ?? (error as Error).message;
  const hint = code === 11 || code === 26 ? '; move it aside to start afresh, or restore a backup' : '';
  return new StateError(`state file ${file}: cannot ${doing}: ${why}${hint}`, { cause: error });
}
