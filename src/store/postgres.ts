import pg from 'pg';
import { allocate, type GrantPool, RATE_WINDOW_MS } from '../cloudflare/budget.ts';
import type { RiskEvent } from '../detect/events.ts';
import type { FlapState } from '../detect/flapping.ts';
import { StoredLevels } from '../detect/stored-levels.ts';
import { maskSecret } from '../config/secret.ts';
import { type Behavior, LEVEL_RANK, levelOfRank, type RiskLevel, type RiskUser } from '../model.ts';
import {
  applySilences,
  type DeliveryRow,
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
  statusFrom,
  type StoreStatus,
  type UserRow,
  userRowFrom,
  type UserTableRow,
  USER_ROW_COLUMNS,
  DELIVERY_COUNTS_SQL,
  type Delivery,
  type DeliveryCountRow,
  claimedDelivery,
  type SettledDelivery,
  LeadershipLostError,
  pendingSubjects,
  type PollCommit,
  StaleSnapshotError,
  StateError,
  type StateStore,
  type StoredSnapshot,
  StoreUnavailableError,
  tallyDeliveries,
} from './store.ts';

const { randomBytes } = process.getBuiltinModule('node:crypto');
const { hostname } = process.getBuiltinModule('node:os');

/** riskwatch keeps its tables in a schema of its own, so it can share a database with other programs. */
const SCHEMA = 'riskwatch';
/** Replicas starting at once migrate one after the other, under this transaction-level advisory lock. */
const MIGRATION_LOCK = 0x7269_736b;

/** Rows a migration reads and rewrites at a time. */
const MIGRATION_PAGE = 2000;

/** Each entry moves the schema one version up; riskwatch.schema_version says how many have run. */
export const PG_MIGRATIONS: readonly (string | ((client: pg.PoolClient) => Promise<void>))[] = [
  `CREATE TABLE accounts (
     account_id text PRIMARY KEY,
     version bigint NOT NULL,
     polled_at bigint NOT NULL
   );
   CREATE TABLE users (
     account_id text NOT NULL,
     user_id text NOT NULL,
     level smallint NOT NULL,
     email text NOT NULL,
     name text NOT NULL,
     event_count integer NOT NULL,
     last_event text,
     missing boolean NOT NULL DEFAULT false,
     PRIMARY KEY (account_id, user_id)
   );
   CREATE TABLE behaviors (
     account_id text NOT NULL,
     behavior_id text NOT NULL,
     name text NOT NULL,
     description text NOT NULL,
     enabled boolean NOT NULL,
     risk_level text NOT NULL,
     PRIMARY KEY (account_id, behavior_id)
   );
   CREATE TABLE events (
     id text PRIMARY KEY,
     account_id text NOT NULL,
     type text NOT NULL,
     created_at bigint NOT NULL,
     body text NOT NULL
   );
   CREATE TABLE deliveries (
     id bigserial PRIMARY KEY,
     sink text NOT NULL,
     account_id text NOT NULL,
     event_ids jsonb NOT NULL,
     state text NOT NULL CHECK (state IN ('pending', 'delivered', 'dead')),
     attempts integer NOT NULL DEFAULT 0,
     created_at bigint NOT NULL,
     next_attempt_at bigint NOT NULL,
     leased_until bigint NOT NULL DEFAULT 0,
     leased_by text,
     finished_at bigint,
     last_error text
   );
   CREATE INDEX deliveries_claim ON deliveries (sink, id) WHERE state = 'pending';
   CREATE INDEX deliveries_state ON deliveries (state, sink);
   CREATE INDEX deliveries_event_ids ON deliveries USING gin (event_ids);
   CREATE TABLE sink_holds (sink text PRIMARY KEY, until bigint NOT NULL);
   -- Replicas say they are alive by pushing expires_at forward; an account is led by the
   -- replica named in its lease until the lease expires (database time, not the replicas').
   CREATE TABLE replicas (
     replica text PRIMARY KEY,
     host text NOT NULL,
     pid integer NOT NULL,
     passing boolean NOT NULL,
     started_at timestamptz NOT NULL,
     expires_at timestamptz NOT NULL
   );
   CREATE TABLE leases (
     account_id text PRIMARY KEY,
     holder text,
     expires_at timestamptz NOT NULL DEFAULT '-infinity'
   );`,
  // The schema's event_count is an integer >= 0 without a bound: past 2^31-1 it no longer fit, and
  // every commit of that account failed on the same record.
  `ALTER TABLE users ALTER COLUMN event_count TYPE bigint;`,
  // 3: the subjects of each pending delivery (what its events are about, subjectOf), so that a
  // claim passes over a delivery while an earlier one of the same subject is still pending, on
  // any replica. Rows live while their delivery is pending. Those pending at the upgrade get
  // theirs here, read from the events' bodies in JavaScript (PostgreSQL's json refuses a \u0000).
  async (client) => {
    await client.query(`CREATE TABLE delivery_subjects (
       delivery_id bigint NOT NULL,
       sink text NOT NULL,
       subject text NOT NULL,
       PRIMARY KEY (delivery_id, subject)
     );
     CREATE INDEX delivery_subjects_order ON delivery_subjects (sink, subject, delivery_id);`);
    // A page of pending deliveries at a time: an outbox backed up by a long outage may hold millions.
    for (let after = 0; ; ) {
      const page = (await client.query<{ id: number }>("SELECT id FROM deliveries WHERE state = 'pending' AND id > $1 ORDER BY id LIMIT $2", [after, MIGRATION_PAGE])).rows.map((r) => r.id);
      if (page.length === 0) break;
      const rows = await client.query<{ id: number; sink: string; body: string }>(
        `SELECT d.id, d.sink, e.body FROM deliveries d CROSS JOIN LATERAL jsonb_array_elements_text(d.event_ids) AS j(event_id)
         JOIN events e ON e.id = j.event_id WHERE d.id = ANY($1::bigint[])`,
        [page],
      );
      await insertSubjects(client, pendingSubjects(rows.rows));
      after = page.at(-1)!;
    }
  },
  // 4: the operator commands (SPEC §8): silences; events keep whose they are (for `events --user`
  // and `users`' since) and the silence that muted them; each account's last success and error.
  // Recorded events get their user columns from their bodies in JavaScript (json refuses a \u0000).
  async (client) => {
    await client.query(`CREATE TABLE silences (
       id text PRIMARY KEY,
       user_ref text,
       behavior text,
       account_id text,
       starts_at bigint NOT NULL,
       ends_at bigint NOT NULL,
       reason text NOT NULL,
       created_by text NOT NULL
     );
     CREATE INDEX silences_ends ON silences (ends_at);
     ALTER TABLE events ADD COLUMN user_id text, ADD COLUMN email text, ADD COLUMN silence_id text;
     CREATE TABLE account_status (
       account_id text PRIMARY KEY,
       last_success_at bigint,
       last_error text,
       last_error_at bigint
     );
     INSERT INTO account_status (account_id, last_success_at) SELECT account_id, polled_at FROM accounts;`);
    // A page of events at a time (a year of history is millions), each page one UPDATE well within the statement timeout.
    for (let after = ''; ; ) {
      const page = (await client.query<{ id: string; body: string }>("SELECT id, body FROM events WHERE type LIKE 'user.%' AND id > $1 ORDER BY id LIMIT $2", [after, MIGRATION_PAGE])).rows;
      if (page.length === 0) break;
      const columns = page.flatMap(({ id, body }) => {
        try {
          const { userId, email } = eventUserColumns(JSON.parse(body) as RiskEvent);
          return userId === null ? [] : [[id, userId, email] as const];
        } catch {
          return [];
        }
      });
      await client.query('UPDATE events e SET user_id = x.user_id, email = x.email FROM unnest($1::text[], $2::text[], $3::text[]) AS x(id, user_id, email) WHERE e.id = x.id', [
        columns.map((r) => r[0]),
        columns.map((r) => r[1]),
        columns.map((r) => r[2]),
      ]);
      after = page.at(-1)!.id;
    }
    await client.query(`CREATE INDEX events_user ON events (user_id, created_at) WHERE user_id IS NOT NULL;
     CREATE INDEX events_email ON events (email, created_at) WHERE email IS NOT NULL;
     CREATE INDEX events_time ON events (created_at);
     CREATE INDEX users_level ON users (account_id, level, email);`);
  },
  // 5: the incidents sinks opened and riskwatch has not closed, so that a config that no longer
  // covers one (a raised min_level, a new routing key, a sink or account removed) closes it; what a
  // delivery does to an incident; when an operator last retried a delivery (max_age counts from it,
  // created_at stays). Users a multi-page read missed are found by an index, not a scan. Each
  // user's recent level changes, and whether they are flapping, and each sink's last digest (SPEC §9).
  `CREATE TABLE incidents (
     sink text NOT NULL,
     incident_key text NOT NULL,
     credential_id text NOT NULL,
     account_id text NOT NULL,
     subject text NOT NULL,
     event_id text NOT NULL,
     delivery_id bigint NOT NULL,
     opened_at bigint NOT NULL,
     PRIMARY KEY (sink, incident_key)
   );
   CREATE INDEX incidents_delivery ON incidents (delivery_id);
   ALTER TABLE deliveries ADD COLUMN incident_action text CHECK (incident_action IN ('open', 'close', 'retire')),
     ADD COLUMN incident_key text, ADD COLUMN incident_note text, ADD COLUMN retried_at bigint;
   CREATE INDEX users_missing ON users (account_id, user_id) WHERE missing;
   CREATE TABLE flapping (
     account_id text NOT NULL,
     user_id text NOT NULL,
     flapping smallint NOT NULL,
     state text NOT NULL,
     PRIMARY KEY (account_id, user_id)
   );
   CREATE TABLE digests (sink text PRIMARY KEY, last_slot bigint NOT NULL);`,
  // 6: one Cloudflare budget per credential for all replicas (SPEC §11): the requests granted that
  // count until expires_at (database time, ms): a replica's batch (account_id null) until it says
  // which accounts used it, then a row per account. And a 429's hold on a credential.
  `CREATE TABLE budget_grants (
     id bigserial PRIMARY KEY,
     credential_id text NOT NULL,
     replica text NOT NULL,
     account_id text,
     expires_at bigint NOT NULL,
     reserved integer NOT NULL
   );
   CREATE INDEX budget_grants_window ON budget_grants (credential_id, expires_at);
   CREATE TABLE budget_blocks (credential_id text PRIMARY KEY, until_at bigint NOT NULL);`,
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

export const PG_SCHEMA_VERSION = PG_MIGRATIONS.length;

export interface PostgresStoreOptions {
  /** How long a claimed delivery stays invisible to other claims while its replica lives. Default 5 minutes. */
  readonly leaseMs?: number;
  /** How long an account's lease, and a replica's heartbeat, last without renewal. Default 30 s. */
  readonly leadershipMs?: number;
  /** This process's name among the replicas. Default: host, pid and a random suffix. */
  readonly replica?: string;
  /**
   * A process passing through (`once`): it polls only accounts no replica
   * leads, and is not counted among the replicas the accounts are shared by.
   */
  readonly passing?: boolean;
  /** Told what the store skipped rather than failed on (a silence whose times are not times). */
  readonly warn?: (message: string) => void;
}

/** Rows per statement when a commit writes many (a first poll of a big account). */
const BATCH = 5000;
/** Longest close() waits for the database: a stopping process does not hang on one that is gone. */
const CLOSE_DEADLINE_MS = 3000;
/** Users read per page when loading a snapshot, so a million users never sit in one result. */
const LOAD_PAGE = 50_000;

/**
 * The shared store: one PostgreSQL database for any number of replicas. Each
 * account is led by one replica at a time (a lease in the database, renewed in
 * the background; commitPoll checks it under a row lock, so a replica that lost
 * it commits nothing), and every replica drains the one outbox: claims skip
 * rows another replica has locked, and a dead replica's claims are free again
 * as soon as its heartbeat lapses.
 */
export class PostgresStore implements StateStore {
  readonly replica: string;
  readonly leadershipCheckMs: number;
  /** Where the database is, without the password: what errors and logs name. */
  readonly where: string;
  readonly #pool: pg.Pool;
  readonly #leaseMs: number;
  readonly #leadershipMs: number;
  readonly #passing: boolean;
  /** The accounts lead() last handed out: the background renewal keeps exactly these. */
  #held: readonly string[] = [];
  #keepalive: NodeJS.Timeout | undefined;
  /** The renewal in flight, if any: never two at once, and close() waits for it. */
  #renewing: Promise<void> | undefined;
  #closed = false;
  readonly #silences: SilenceReader;

  private constructor(pool: pg.Pool, where: string, options: Required<PostgresStoreOptions>) {
    this.#pool = pool;
    this.where = where;
    this.replica = options.replica;
    this.#leaseMs = options.leaseMs;
    this.#leadershipMs = options.leadershipMs;
    this.leadershipCheckMs = Math.max(100, Math.floor(options.leadershipMs / 3));
    this.#passing = options.passing;
    this.#silences = new SilenceReader(options.warn);
  }

  /**
   * Connects, creates or migrates the schema (replicas starting together take
   * turns) and registers this replica. A database that cannot be reached
   * throws StoreUnavailableError (worth retrying); one that cannot be used
   * (wrong password, a newer schema) throws StateError.
   */
  static async open(url: string, options: PostgresStoreOptions = {}): Promise<PostgresStore> {
    const where = `state database ${maskSecret(url)}`;
    const full: Required<PostgresStoreOptions> = {
      leaseMs: options.leaseMs ?? 5 * 60_000,
      leadershipMs: options.leadershipMs ?? 30_000,
      replica: options.replica ?? `${hostname()}-${process.pid}-${randomBytes(2).toString('hex')}`,
      passing: options.passing ?? false,
      warn: options.warn ?? (() => {}),
    };
    const pool = createPool(url, full.leadershipMs);
    const store = new PostgresStore(pool, where, full);
    try {
      await store.#transaction('migrate the schema', async (client) => {
        await client.query('SELECT pg_advisory_xact_lock($1)', [MIGRATION_LOCK]);
        await migrate(client, where, await schemaVersion(client, where));
      });
      await store.#renew();
    } catch (error) {
      await pool.end().catch(() => {});
      throw error;
    }
    // Renewal failures need no word here: lead() meets the same database and says it.
    store.#keepalive = setInterval(() => void store.#renew().catch(() => {}), store.leadershipCheckMs);
    store.#keepalive.unref();
    return store;
  }

  /**
   * For an operator command (SPEC §3): connects and migrates like open(), but joins no replicas,
   * takes no lease and keeps nothing alive: it reads and makes small writes beside them.
   */
  static async openOperator(url: string, warn: (message: string) => void = () => {}): Promise<PostgresStore> {
    const where = `state database ${maskSecret(url)}`;
    const pool = createPool(url, 30_000);
    const store = new PostgresStore(pool, where, { leaseMs: 5 * 60_000, leadershipMs: 30_000, replica: `operator-${hostname()}-${process.pid}`, passing: true, warn });
    try {
      await store.#transaction('migrate the schema', async (client) => {
        await client.query('SELECT pg_advisory_xact_lock($1)', [MIGRATION_LOCK]);
        await migrate(client, where, await schemaVersion(client, where));
      });
    } catch (error) {
      await pool.end().catch(() => {});
      throw error;
    }
    return store;
  }

  /** For check-config: the schema version of the database at `url` (0 before the first run), changing nothing. */
  static async inspect(url: string): Promise<{ version: number; current: number }> {
    const where = `state database ${maskSecret(url)}`;
    const pool = createPool(url, 30_000);
    try {
      const client = await pool.connect().catch((error: unknown) => {
        throw asStateError(error, where, 'connect');
      });
      try {
        const version = await schemaVersion(client, where).catch((error: unknown) => {
          throw asStateError(error, where, 'read the schema version');
        });
        return { version, current: PG_SCHEMA_VERSION };
      } finally {
        client.release();
      }
    } finally {
      await pool.end().catch(() => {});
    }
  }

  async loadSnapshot(accountId: string): Promise<StoredSnapshot> {
    // One consistent view across the pages, as of the transaction's start.
    return this.#transaction(
      'read the snapshot',
      async (client) => {
        const row = (await client.query<{ version: number }>('SELECT version FROM accounts WHERE account_id = $1', [accountId])).rows[0];
        if (!row) return { version: 0, snapshot: undefined, missing: new Set<string>(), flaps: new Map() };
        const missing = new Set((await client.query<{ user_id: string }>('SELECT user_id FROM users WHERE account_id = $1 AND missing', [accountId])).rows.map((r) => r.user_id));
        const userLevels = new StoredLevels();
        let after = '';
        for (;;) {
          const page = await client.query<[string, number]>({
            text: 'SELECT user_id, level FROM users WHERE account_id = $1 AND user_id > $2 ORDER BY user_id LIMIT $3',
            values: [accountId, after, LOAD_PAGE],
            rowMode: 'array',
          });
          userLevels.addRanks(page.rows);
          if (page.rows.length < LOAD_PAGE) break;
          after = page.rows[page.rows.length - 1]![0];
        }
        const behaviors = new Map<string, Behavior>();
        const rows = await client.query<{ behavior_id: string; name: string; description: string; enabled: boolean; risk_level: RiskLevel }>(
          'SELECT behavior_id, name, description, enabled, risk_level FROM behaviors WHERE account_id = $1',
          [accountId],
        );
        for (const b of rows.rows) behaviors.set(b.behavior_id, { id: b.behavior_id, name: b.name, description: b.description, enabled: b.enabled, risk_level: b.risk_level });
        const flaps = flapStatesFrom((await client.query<{ user_id: string; state: string }>('SELECT user_id, state FROM flapping WHERE account_id = $1', [accountId])).rows);
        return { version: row.version, snapshot: { userLevels, behaviors }, missing, flaps };
      },
      'BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY',
    );
  }

  async loadFlaps(accountId: string): Promise<Map<string, FlapState>> {
    return flapStatesFrom(await this.#query<{ user_id: string; state: string }>('read flapping users', 'SELECT user_id, state FROM flapping WHERE account_id = $1', [accountId]));
  }

  async loadUsers(accountId: string, userIds: readonly string[]): Promise<Map<string, RiskUser>> {
    const rows = await this.#query<{ user_id: string; level: number; email: string; name: string; event_count: number; last_event: string | null }>(
      'read users',
      'SELECT user_id, level, email, name, event_count, last_event FROM users WHERE account_id = $1 AND user_id = ANY($2::text[])',
      [accountId, userIds],
    );
    return new Map(
      rows.map((row) => [row.user_id, { user_id: row.user_id, email: row.email, name: row.name, event_count: row.event_count, last_event: row.last_event, max_risk_level: levelOfRank(row.level) }]),
    );
  }

  async commitPoll(commit: PollCommit): Promise<number> {
    const { accountId, delta, polledAt } = commit;
    return this.#transaction('commit the poll', async (client) => {
      // Fencing: the lease must be this replica's and unexpired; the update renews it and keeps its row
      // locked until the commit, so no replica can take the account over in between.
      const lease = await client.query("UPDATE leases SET expires_at = clock_timestamp() + $3 * interval '1 millisecond' WHERE account_id = $1 AND holder = $2 AND expires_at > clock_timestamp()", [
        accountId,
        this.replica,
        this.#leadershipMs,
      ]);
      if (lease.rowCount !== 1) throw new LeadershipLostError(accountId, this.replica);
      const current = (await client.query<{ version: number }>('SELECT version FROM accounts WHERE account_id = $1 FOR UPDATE', [accountId])).rows[0]?.version ?? 0;
      if (current !== commit.expectedVersion) throw new StaleSnapshotError(accountId, commit.expectedVersion, current);
      const version = current + 1;
      await client.query(
        `INSERT INTO accounts (account_id, version, polled_at) VALUES ($1, $2, $3)
         ON CONFLICT (account_id) DO UPDATE SET version = excluded.version, polled_at = excluded.polled_at`,
        [accountId, version, polledAt],
      );
      await client.query(
        `INSERT INTO account_status (account_id, last_success_at, last_error, last_error_at) VALUES ($1, $2, NULL, NULL)
         ON CONFLICT (account_id) DO UPDATE SET last_success_at = excluded.last_success_at, last_error = NULL, last_error_at = NULL`,
        [accountId, polledAt],
      );

      for (const users of chunks(delta.upsertUsers)) {
        await client.query(
          `INSERT INTO users (account_id, user_id, level, email, name, event_count, last_event)
           SELECT $1, * FROM unnest($2::text[], $3::smallint[], $4::text[], $5::text[], $6::bigint[], $7::text[])
           ON CONFLICT (account_id, user_id) DO UPDATE SET level = excluded.level, email = excluded.email, name = excluded.name,
             event_count = excluded.event_count, last_event = excluded.last_event`,
          [
            accountId,
            users.map((u) => u.user_id),
            users.map((u) => LEVEL_RANK[u.max_risk_level]),
            users.map((u) => u.email),
            users.map((u) => u.name),
            users.map((u) => u.event_count),
            users.map((u) => u.last_event),
          ],
        );
      }
      for (const [mark, ids] of [
        [true, commit.missing?.mark ?? []],
        [false, commit.missing?.clear ?? []],
      ] as const) {
        for (const chunk of chunks(ids)) await client.query('UPDATE users SET missing = $1 WHERE account_id = $2 AND user_id = ANY($3::text[])', [mark, accountId, chunk]);
      }
      for (const chunk of chunks(delta.removeUserIds)) await client.query('DELETE FROM users WHERE account_id = $1 AND user_id = ANY($2::text[])', [accountId, chunk]);
      for (const chunk of chunks([...(commit.flaps?.upsert ?? [])])) {
        await client.query(
          `INSERT INTO flapping (account_id, user_id, flapping, state) SELECT $1, f.user_id, f.flapping, f.state FROM unnest($2::text[], $3::smallint[], $4::text[]) AS f(user_id, flapping, state)
           ON CONFLICT (account_id, user_id) DO UPDATE SET flapping = excluded.flapping, state = excluded.state`,
          [accountId, chunk.map(([userId]) => userId), chunk.map(([, state]) => (state.flapping ? 1 : 0)), chunk.map(([, state]) => JSON.stringify(state))],
        );
      }
      for (const chunk of chunks(commit.flaps?.remove ?? [])) await client.query('DELETE FROM flapping WHERE account_id = $1 AND user_id = ANY($2::text[])', [accountId, chunk]);

      for (const b of delta.upsertBehaviors) {
        await client.query(
          `INSERT INTO behaviors (account_id, behavior_id, name, description, enabled, risk_level) VALUES ($1, $2, $3, $4, $5, $6)
           ON CONFLICT (account_id, behavior_id) DO UPDATE SET name = excluded.name, description = excluded.description,
             enabled = excluded.enabled, risk_level = excluded.risk_level`,
          [accountId, b.id, b.name, b.description, b.enabled, b.risk_level],
        );
      }
      if (delta.removeBehaviorIds.length > 0) {
        await client.query('DELETE FROM behaviors WHERE account_id = $1 AND behavior_id = ANY($2::text[])', [accountId, delta.removeBehaviorIds]);
      }

      // Silences are decided here, in the commit's own transaction (SPEC §8).
      const active =
        commit.events.length > 0 ? this.#silences.read((await client.query<StoredSilence>(`SELECT ${SILENCE_COLUMNS} FROM silences WHERE ends_at > $1 AND starts_at <= $1`, [polledAt])).rows) : [];
      const { silencedBy, deliveries: planned } = applySilences(commit.events, commit.deliveries, active);
      for (const events of chunks(commit.events)) {
        const columns = events.map(eventUserColumns);
        await client.query(
          `INSERT INTO events (id, account_id, type, created_at, body, user_id, email, silence_id)
           SELECT id, $1, type, $2, body, user_id, email, silence_id FROM unnest($3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[]) AS e(id, type, body, user_id, email, silence_id)`,
          [
            accountId,
            polledAt,
            events.map((e) => e.id),
            events.map((e) => e.type),
            events.map((e) => JSON.stringify(e)),
            columns.map((c) => c.userId),
            columns.map((c) => c.email),
            events.map((e) => silencedBy.get(e.id) ?? null),
          ],
        );
      }
      // A delivery of an event that is not stored would block its sink's outbox for good.
      const committed = new Set(commit.events.map((e) => e.id));
      const elsewhere = [...new Set(planned.flatMap((d) => d.eventIds.filter((id) => !committed.has(id))))];
      if (elsewhere.length > 0) {
        const absent = await client.query<{ id: string }>('SELECT id FROM unnest($1::text[]) AS x(id) WHERE NOT EXISTS (SELECT 1 FROM events e WHERE e.id = x.id) LIMIT 1', [elsewhere]);
        const missing = absent.rows[0]?.id;
        if (missing !== undefined) {
          const sink = planned.find((d) => d.eventIds.includes(missing))!.sink;
          throw new StateError(`${this.where}: a delivery to ${sink} names event ${missing}, which is not stored; nothing was committed`);
        }
      }
      // In the order of the commit: the account's row lock orders this commit after the account's last.
      const ids = await insertDeliveries(client, planned, polledAt);
      await recordIncidents(client, planned, ids, polledAt);
      return version;
    });
  }

  async claimDue(sink: string, now: number, limit: number): Promise<Delivery[]> {
    return this.#transaction('claim deliveries', async (client) => {
      // Free: not leased, or leased by another replica whose heartbeat lapsed (it died mid-send). Never
      // this replica's own in-flight claim, even should its own heartbeat lapse: its lease decides.
      const rows = (
        await client.query<ClaimedRow & { event_ids: string[] }>(
          `UPDATE deliveries SET leased_until = $3, leased_by = $4 WHERE id IN (
             SELECT d.id FROM deliveries d
             WHERE d.state = 'pending' AND d.sink = $1 AND d.next_attempt_at <= $2
               AND (d.leased_until <= $2
                    OR (d.leased_by IS DISTINCT FROM $4 AND NOT EXISTS (SELECT 1 FROM replicas r WHERE r.replica = d.leased_by AND r.expires_at > clock_timestamp())))
               AND NOT ${HELD_BY_EARLIER}
             ORDER BY d.id LIMIT $5 FOR UPDATE SKIP LOCKED
           ) RETURNING ${CLAIMED_COLUMNS}`,
          [sink, now, now + this.#leaseMs, this.replica, limit],
        )
      ).rows.sort((a, b) => a.id - b.id);
      if (rows.length === 0) return [];
      const bodies = new Map(
        (await client.query<{ id: string; body: string }>('SELECT id, body FROM events WHERE id = ANY($1::text[])', [[...new Set(rows.flatMap((r) => r.event_ids))]])).rows.map((r) => [r.id, r.body]),
      );
      return rows.map((row) => claimedDelivery(this.where, sink, row, row.event_ids, (id) => bodies.get(id)));
    });
  }

  async nextDueAt(sink: string): Promise<number | undefined> {
    // A claim held by a live replica falls due when its lease ends, or sooner if that replica's heartbeat lapses.
    const rows = await this.#query<{ due: number | null }>(
      'read the outbox',
      `SELECT MIN(CASE WHEN r.replica IS NULL THEN d.next_attempt_at
                       ELSE GREATEST(d.next_attempt_at, LEAST(d.leased_until, (extract(epoch FROM r.expires_at) * 1000)::bigint)) END) AS due
       FROM deliveries d LEFT JOIN replicas r ON r.replica = d.leased_by AND r.expires_at > clock_timestamp()
       WHERE d.state = 'pending' AND d.sink = $1 AND NOT ${HELD_BY_EARLIER}`,
      [sink],
    );
    return rows[0]?.due ?? undefined;
  }

  async recordOutcomes(outcomes: readonly SettledDelivery[]): Promise<void> {
    if (outcomes.length === 0) return;
    // One statement, so one transaction. Only the replica holding a claim settles it: a replica that
    // was paused past its heartbeat, whose delivery another one claimed (and perhaps delivered) since,
    // writes nothing for that one. Settled for good (delivered, dead): the next delivery of its
    // subjects may go, in the same statement.
    await this.#query(
      outcomes.length === 1 ? 'record a delivery outcome' : `record ${outcomes.length} delivery outcomes`,
      `WITH outcome AS (
         SELECT * FROM unnest($2::bigint[], $3::text[], $4::bigint[], $5::bigint[], $6::text[]) AS o(id, kind, at, next_attempt_at, error)
       ), settled AS (
         UPDATE deliveries d SET
           state = CASE o.kind WHEN 'retry' THEN d.state ELSE o.kind END,
           attempts = d.attempts + 1,
           finished_at = CASE o.kind WHEN 'retry' THEN d.finished_at ELSE o.at END,
           next_attempt_at = CASE o.kind WHEN 'retry' THEN o.next_attempt_at ELSE d.next_attempt_at END,
           leased_until = 0,
           last_error = o.error
         FROM outcome o
         WHERE d.id = o.id AND d.state = 'pending' AND d.leased_by = $1
         RETURNING d.id, o.kind
       )
       DELETE FROM delivery_subjects WHERE delivery_id IN (SELECT id FROM settled WHERE kind <> 'retry')`,
      [
        this.replica,
        outcomes.map((o) => o.deliveryId),
        outcomes.map((o) => o.outcome.kind),
        outcomes.map((o) => o.outcome.at),
        outcomes.map(({ outcome }) => (outcome.kind === 'retry' ? outcome.nextAttemptAt : null)),
        outcomes.map(({ outcome }) => (outcome.kind === 'delivered' ? null : outcome.error)),
      ],
    );
  }

  async holdSink(sink: string, until: number, now: number): Promise<number> {
    return this.#transaction('hold back a sink', async (client) => {
      const held = (
        await client.query<{ until: number }>(
          'INSERT INTO sink_holds (sink, until) VALUES ($1, $2) ON CONFLICT (sink) DO UPDATE SET until = GREATEST(sink_holds.until, excluded.until) RETURNING until',
          [sink, until],
        )
      ).rows[0]!.until;
      await client.query("UPDATE deliveries SET next_attempt_at = $2 WHERE state = 'pending' AND sink = $1 AND next_attempt_at < $2 AND leased_until <= $3", [sink, held, now]);
      return held;
    });
  }

  async recordPollFailure(accountId: string, error: string, at: number): Promise<void> {
    await this.#query(
      'record a failed poll',
      `INSERT INTO account_status (account_id, last_error, last_error_at) VALUES ($1, $2, $3)
       ON CONFLICT (account_id) DO UPDATE SET last_error = excluded.last_error, last_error_at = excluded.last_error_at`,
      [accountId, error, at],
    );
  }

  async prune(before: { delivered: number; history: number }): Promise<{ deliveries: number; events: number }> {
    return this.#transaction('prune old deliveries', async (client) => {
      const delivered = (await client.query("DELETE FROM deliveries WHERE state = 'delivered' AND finished_at < $1", [before.delivered])).rowCount ?? 0;
      // Dead letters are kept until retried or the history lapses (SPEC §8).
      const dead = (await client.query("DELETE FROM deliveries WHERE state = 'dead' AND COALESCE(finished_at, created_at) < $1", [before.history])).rowCount ?? 0;
      await client.query('DELETE FROM silences WHERE ends_at < $1', [before.history]);
      // Not an event a delivery still names, nor one that opened an incident still open (its close is made from it).
      const events = (
        await client.query(
          'DELETE FROM events e WHERE e.created_at < $1 AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.event_ids ? e.id) AND NOT EXISTS (SELECT 1 FROM incidents i WHERE i.event_id = e.id)',
          [before.history],
        )
      ).rowCount;
      return { deliveries: delivered + dead, events: events ?? 0 };
    });
  }

  // The operator commands (SPEC §3, §8): short statements, beside running replicas.

  async addSilence(silence: Silence): Promise<void> {
    await this.#query('add a silence', 'INSERT INTO silences (id, user_ref, behavior, account_id, starts_at, ends_at, reason, created_by) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)', [
      silence.id,
      silence.user,
      silence.behavior,
      silence.accountId,
      silence.startsAt,
      silence.endsAt,
      silence.reason,
      silence.by,
    ]);
  }

  async listSilences(options: { all: boolean; now: number }): Promise<Silence[]> {
    const rows = options.all
      ? await this.#query<StoredSilence>('read silences', `SELECT ${SILENCE_COLUMNS} FROM silences ORDER BY starts_at DESC, id`)
      : await this.#query<StoredSilence>('read silences', `SELECT ${SILENCE_COLUMNS} FROM silences WHERE ends_at > $1 AND starts_at <= $1 ORDER BY starts_at DESC, id`, [options.now]);
    return this.#silences.read(rows);
  }

  async expireSilence(id: string, now: number): Promise<boolean> {
    const rows = await this.#query('end a silence', `UPDATE silences SET ends_at = $2 WHERE id = $1 AND (ends_at > $2 AND starts_at <= $2 OR ${UNREADABLE_SILENCE_SQL}) RETURNING id`, [id, now]);
    return rows.length > 0;
  }

  async listUsers(query: UserQuery): Promise<UserRow[]> {
    const sql = usersSql({ account: '$1::text', level: '$2::smallint', user: '$3::text', flapping: '$4::smallint', limit: '$5::bigint', offset: '$6::bigint' });
    return (await this.#query<UserTableRow>('read users', sql, usersParams(query, null))).map(userRowFrom);
  }

  async listEvents(query: EventQuery): Promise<EventRow[]> {
    // Only the filters given, so that the planner can take the user's indexes.
    const { where, params } = eventFilters(query);
    let n = 0;
    const rows = await this.#query<{ body: string; silence_id: string | null }>(
      'read events',
      `SELECT body, silence_id FROM events WHERE ${where.replace(/\?/g, () => `$${++n}`)} ORDER BY created_at DESC, id LIMIT $${n + 1}`,
      [...params, query.limit],
    );
    return rows.map((row) => ({ event: JSON.parse(row.body) as RiskEvent, silenced: row.silence_id }));
  }

  async listDeliveries(query: DeliveryQuery): Promise<DeliveryRow[]> {
    // Of some events: any state, found through the index on event_ids.
    const { where, params } = deliveryFilters(query, (ids) => ['d.event_ids ?| ?::text[]', [...ids]]);
    let n = 0;
    const rows = await this.#query<DeliveryTableRow>(
      'read the outbox',
      `SELECT ${DELIVERY_ROW_COLUMNS},
         ARRAY(SELECT e.type FROM jsonb_array_elements_text(d.event_ids) WITH ORDINALITY AS j(event_id, n) LEFT JOIN events e ON e.id = j.event_id ORDER BY j.n) AS types
       FROM deliveries d WHERE ${where.replace(/\?(?!\|)/g, () => `$${++n}`)}`,
      params,
    );
    return rows.map(deliveryRowFrom);
  }

  async retryDeliveries(which: { sink: string } | { ids: readonly number[] }, now: number): Promise<Revived> {
    return this.#transaction('retry dead letters', async (client) => {
      const dead =
        'sink' in which
          ? await client.query<{ id: number }>("SELECT id FROM deliveries WHERE state = 'dead' AND sink = $1 ORDER BY id FOR UPDATE", [which.sink])
          : await client.query<{ id: number }>("SELECT id FROM deliveries WHERE state = 'dead' AND id = ANY($1::bigint[]) ORDER BY id FOR UPDATE", [[...which.ids]]);
      return revive(
        client,
        dead.rows.map((r) => r.id),
        now,
      );
    });
  }

  async moveDeliveries(from: string, to: string, now: number): Promise<Revived> {
    return this.#transaction('move deliveries', async (client) => {
      const moved = await client.query<{ id: number }>("UPDATE deliveries SET sink = $2 WHERE state IN ('pending', 'dead') AND sink = $1 RETURNING id", [from, to]);
      const ids = moved.rows.map((r) => r.id);
      // The incidents their triggers opened go with them, unless the new sink has one of that key already.
      await client.query('DELETE FROM incidents WHERE sink = $1 AND delivery_id = ANY($3::bigint[]) AND incident_key IN (SELECT incident_key FROM incidents WHERE sink = $2)', [from, to, ids]);
      await client.query('UPDATE incidents SET sink = $2 WHERE sink = $1 AND delivery_id = ANY($3::bigint[])', [from, to, ids]);
      return revive(client, ids, now);
    });
  }

  async listIncidents(query: { sink?: string }): Promise<OpenIncident[]> {
    return (await this.#query<IncidentTableRow>('read incidents', incidentsSql('$1::text'), [query.sink ?? null])).map(incidentFrom);
  }

  async retireIncidents(changes: readonly IncidentChange[], now: number): Promise<number> {
    return this.#transaction('close incidents the config no longer covers', async (client) => {
      let changed = 0;
      for (const change of changes) {
        const { sink, key, deliveryId } = change.incident;
        // Another replica loading the same config did it first, or a poll moved it on.
        const gone = await client.query('DELETE FROM incidents WHERE sink = $1 AND incident_key = $2 AND delivery_id = $3', [sink, key, deliveryId]);
        if (gone.rowCount === 0) continue;
        const { close, reopen } = incidentChangeDeliveries(change);
        const planned = [close, reopen].filter((d) => d !== undefined);
        await recordIncidents(client, planned, await insertDeliveries(client, planned, now), now);
        if (change.rehome) {
          const i = change.incident;
          await client.query(
            'INSERT INTO incidents (sink, incident_key, credential_id, account_id, subject, event_id, delivery_id, opened_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (sink, incident_key) DO NOTHING',
            [change.rehome.sink, i.key, i.credentialId, i.accountId, i.subject, i.eventId, i.deliveryId, i.openedAt],
          );
        }
        changed++;
      }
      return changed;
    });
  }

  async lastDigest(sink: string): Promise<number | undefined> {
    return (await this.#query<{ last_slot: number }>('read the last digest', 'SELECT last_slot FROM digests WHERE sink = $1', [sink]))[0]?.last_slot;
  }

  async commitDigest(digest: DigestCommit): Promise<boolean> {
    return this.#transaction('queue a digest', async (client) => {
      const { sink, at, slot, previous, event, delivery } = digest;
      const moved =
        previous === undefined
          ? await client.query('INSERT INTO digests (sink, last_slot) VALUES ($1, $2) ON CONFLICT (sink) DO NOTHING', [sink, slot])
          : await client.query('UPDATE digests SET last_slot = $2 WHERE sink = $1 AND last_slot = $3', [sink, slot, previous]);
      if (moved.rowCount === 0) return false;
      if (event && delivery) {
        await client.query('INSERT INTO events (id, account_id, type, created_at, body) VALUES ($1, $2, $3, $4, $5)', [event.id, delivery.accountId, event.type, at, JSON.stringify(event)]);
        await insertDeliveries(client, [delivery], at);
      }
      return true;
    });
  }

  async digestFacts(query: { accountIds: readonly string[]; minLevel: RiskLevel; since: number; until: number; limit: number }): Promise<Map<string, DigestFacts>> {
    return this.#transaction(
      'read a digest',
      async (client) => {
        const rank = LEVEL_RANK[query.minLevel];
        const facts = new Map<string, DigestFacts>();
        for (const id of query.accountIds) {
          const users = await client.query<UserTableRow>(
            `SELECT ${USER_ROW_COLUMNS}
             FROM users u WHERE u.account_id = $1 AND u.level >= $2 ORDER BY u.level DESC, u.email, u.user_id LIMIT $3`,
            [id, rank, query.limit],
          );
          const total = await client.query<{ n: number }>('SELECT COUNT(*) AS n FROM users WHERE account_id = $1 AND level >= $2', [id, rank]);
          const changes = await client.query<{ n: number }>("SELECT COUNT(*) AS n FROM events WHERE account_id = $1 AND created_at > $2 AND created_at <= $3 AND type <> 'digest'", [
            id,
            query.since,
            query.until,
          ]);
          facts.set(id, { users: users.rows.map(userRowFrom), total: Number(total.rows[0]!.n), changes: Number(changes.rows[0]!.n) });
        }
        return facts;
      },
      'BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY',
    );
  }

  async status(now: number): Promise<StoreStatus> {
    return this.#transaction('read the status', async (client) => {
      const rows = async <R extends pg.QueryResultRow>(text: string, values?: unknown[]) => (await client.query<R>(text, values)).rows;
      return statusFrom({
        accountIds: (await rows<{ account_id: string }>('SELECT account_id FROM accounts')).map((r) => r.account_id),
        status: await rows('SELECT account_id, last_success_at, last_error, last_error_at FROM account_status'),
        levels: await rows('SELECT account_id, level, COUNT(*) AS n FROM users GROUP BY account_id, level'),
        leaders: await rows('SELECT account_id, holder FROM leases WHERE holder IS NOT NULL AND expires_at > clock_timestamp()'),
        flapping: await rows(FLAPPING_COUNTS_SQL),
        counts: tallyDeliveries(await rows<DeliveryCountRow>(DELIVERY_COUNTS_SQL)),
        holds: await rows('SELECT sink, until FROM sink_holds WHERE until > $1', [now]),
        silences: (await rows<{ n: number }>('SELECT COUNT(*) AS n FROM silences WHERE ends_at > $1 AND starts_at <= $1', [now]))[0]!.n,
      });
    });
  }

  async deliveryCounts(): Promise<Map<string, { pending: number; dead: number }>> {
    return tallyDeliveries(await this.#query<DeliveryCountRow>('read the outbox', DELIVERY_COUNTS_SQL));
  }

  /**
   * Keeps what this replica leads, lets go of accounts no longer asked for or
   * beyond its fair share (accounts ÷ live replicas, rounded up), and takes
   * free or expired leases up to that share, so the accounts spread over the
   * replicas and a dead one's are taken over once its leases expire. Each
   * statement stands alone and skips rows a commit has locked, so a long
   * commit never holds up leadership.
   */
  async lead(accountIds: readonly string[]): Promise<ReadonlySet<string>> {
    const wanted = [...new Set(accountIds)].sort();
    const wantedSet = new Set(wanted);
    const ms = this.#leadershipMs;
    try {
      return await this.#session('take the lead', async (client) => {
        await this.#heartbeat(client);
        await client.query('INSERT INTO leases (account_id) SELECT unnest($1::text[]) ON CONFLICT DO NOTHING', [wanted]);
        const mine = (await client.query<{ account_id: string }>('SELECT account_id FROM leases WHERE holder = $1 AND expires_at > clock_timestamp() ORDER BY account_id', [this.replica])).rows
          .map((r) => r.account_id)
          .filter((id) => wantedSet.has(id));
        const live = (await client.query<{ n: number }>('SELECT COUNT(*) AS n FROM replicas WHERE expires_at > clock_timestamp() AND NOT passing')).rows[0]!.n;
        const share = this.#passing ? wanted.length : Math.ceil(wanted.length / Math.max(1, live));
        const kept = mine.slice(0, share);
        await this.#renewLeases(client, kept);
        await client.query(
          `UPDATE leases SET holder = NULL, expires_at = '-infinity' WHERE account_id IN (
             SELECT account_id FROM leases WHERE holder = $1 AND NOT (account_id = ANY($2::text[])) FOR UPDATE SKIP LOCKED
           ) AND holder = $1`,
          [this.replica, kept],
        );
        const taken =
          kept.length < share
            ? (
                await client.query<{ account_id: string }>(
                  `UPDATE leases SET holder = $1, expires_at = clock_timestamp() + $2 * interval '1 millisecond' WHERE account_id IN (
                     SELECT account_id FROM leases WHERE account_id = ANY($3::text[]) AND (holder IS NULL OR expires_at <= clock_timestamp())
                     ORDER BY account_id LIMIT $4 FOR UPDATE SKIP LOCKED
                   ) RETURNING account_id`,
                  [this.replica, ms, wanted, share - kept.length],
                )
              ).rows.map((r) => r.account_id)
            : [];
        this.#held = [...kept, ...taken];
        return new Set(this.#held);
      });
    } catch (error) {
      // The caller stops polling when this fails: stop renewing too, so the leases lapse and
      // other replicas take the accounts over rather than nobody polling them.
      this.#held = [];
      throw error;
    }
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    clearInterval(this.#keepalive);
    await this.#renewing?.catch(() => {});
    this.#held = [];
    // Let go at once (best effort, and not for long: if the database is gone, the leases simply expire).
    const release = (async () => {
      await this.#pool.query("UPDATE leases SET holder = NULL, expires_at = '-infinity' WHERE holder = $1", [this.replica]);
      await this.#pool.query('DELETE FROM replicas WHERE replica = $1', [this.replica]);
    })();
    await Promise.race([release.catch(() => {}), new Promise((resolve) => setTimeout(resolve, CLOSE_DEADLINE_MS).unref())]);
    await Promise.race([this.#pool.end().catch(() => {}), new Promise((resolve) => setTimeout(resolve, CLOSE_DEADLINE_MS).unref())]);
  }

  /**
   * The fleet's request budget (SPEC §11; allocate() in cloudflare/budget.ts decides): batches taken
   * under a lock per credential, counted on the database's clock for five minutes after their lease
   * (the last moment they can be used). Each account is due its share; which replica polls it is
   * what its lease says now, so an account taken over is owed what it has not had.
   */
  readonly grants: GrantPool = {
    take: (request) =>
      this.#transaction('take Cloudflare requests from the fleet budget', async (client) => {
        await client.query("SELECT pg_advisory_xact_lock(hashtextextended('riskwatch budget ' || $1, 0))", [request.credentialId]);
        if (request.settle) await this.#settleBatch(client, request.settle.batch, request.settle.used);
        const now = Number((await client.query<{ now: string }>('SELECT (extract(epoch FROM clock_timestamp()) * 1000)::bigint AS now')).rows[0]!.now);
        await client.query('DELETE FROM budget_grants WHERE credential_id = $1 AND expires_at <= $2', [request.credentialId, now]);
        const rows = (
          await client.query<{ replica: string; account_id: string | null; n: number; first: string }>(
            `SELECT replica, account_id, SUM(reserved)::integer AS n, MIN(expires_at) AS first FROM budget_grants
             WHERE credential_id = $1 AND reserved > 0 GROUP BY replica, account_id`,
            [request.credentialId],
          )
        ).rows;
        const led = (
          await client.query<{ account_id: string; holder: string }>(
            'SELECT account_id, holder FROM leases WHERE account_id = ANY($1::text[]) AND holder IS NOT NULL AND expires_at > clock_timestamp()',
            [[...request.accountIds]],
          )
        ).rows;
        // A replica polls the accounts it leads; a process passing through (once), those nobody leads ('').
        const pollers = new Map(led.map((r) => [r.account_id, r.holder]));
        const me = this.#passing ? '' : this.replica;
        const add = (map: Map<string, number>, key: string, n: number) => map.set(key, (map.get(key) ?? 0) + n);
        const spent = new Map<string, number>();
        let unsettled = 0;
        const elsewhere = new Map<string, number>();
        for (const row of rows) {
          if (row.account_id === null) unsettled += row.n;
          else {
            add(spent, row.account_id, row.n);
            if (row.replica !== this.replica && (pollers.get(row.account_id) ?? '') === me) add(elsewhere, row.account_id, row.n);
          }
        }
        const blocked = (await client.query<{ until_at: string }>('SELECT until_at FROM budget_blocks WHERE credential_id = $1', [request.credentialId])).rows[0];
        const blockedMs = blocked === undefined ? 0 : Math.max(0, Number(blocked.until_at) - now);
        const leaseMs = Math.min(this.#leadershipMs, 30_000);
        const granted = allocate({ limit: request.limit, want: request.want, accounts: request.accountIds, me, pollers, spent, unsettled });
        if (granted > 0) {
          const inserted = await client.query<{ id: string }>('INSERT INTO budget_grants (credential_id, replica, expires_at, reserved) VALUES ($1, $2, $3, $4) RETURNING id', [
            request.credentialId,
            this.replica,
            now + leaseMs + RATE_WINDOW_MS,
            granted,
          ]);
          return { granted, batch: Number(inserted.rows[0]!.id), waitMs: 0, blockedMs, leaseMs, elsewhere };
        }
        // Full: until the oldest grant stops counting. Held back for what other accounts are due: ask
        // again within a second, as batches settle, leases move or those accounts have their turns.
        const full = rows.reduce((a, r) => a + r.n, 0) >= request.limit;
        const waitMs = full ? Math.min(...rows.map((r) => Number(r.first))) - now + 1 : Math.min(1000, Math.max(250, this.leadershipCheckMs));
        return { granted: 0, batch: undefined, waitMs: Math.max(1, waitMs), blockedMs, leaseMs, elsewhere };
      }),
    settle: async (_credentialId, batch, used) => {
      await this.#transaction('return unused Cloudflare requests to the fleet budget', (client) => this.#settleBatch(client, batch, used));
    },
    block: async (credentialId, forMs) => {
      await this.#query(
        'hold the fleet back after a 429',
        `INSERT INTO budget_blocks (credential_id, until_at) VALUES ($1, (extract(epoch FROM clock_timestamp()) * 1000)::bigint + $2)
         ON CONFLICT (credential_id) DO UPDATE SET until_at = GREATEST(budget_blocks.until_at, excluded.until_at)`,
        [credentialId, Math.round(forMs)],
      );
    },
  };

  /** A batch becomes what its accounts used of it, counted as long as the batch would have been; the rest is free again. */
  async #settleBatch(client: pg.PoolClient, batch: number, used: ReadonlyMap<string, number>): Promise<void> {
    const gone = await client.query<{ credential_id: string; expires_at: string }>(
      'DELETE FROM budget_grants WHERE id = $1 AND replica = $2 AND account_id IS NULL RETURNING credential_id, expires_at',
      [batch, this.replica],
    );
    const row = gone.rows[0];
    if (row === undefined || used.size === 0) return;
    await client.query(
      `INSERT INTO budget_grants (credential_id, replica, account_id, expires_at, reserved)
       SELECT $1, $2, u.account_id, $3, u.n FROM unnest($4::text[], $5::integer[]) AS u(account_id, n) WHERE u.n > 0`,
      [row.credential_id, this.replica, row.expires_at, [...used.keys()], [...used.values()]],
    );
  }

  /** The heartbeat, and the leases lead() last handed out, pushed forward; in the background every leadershipCheckMs. */
  #renew(): Promise<void> {
    if (this.#closed) return Promise.resolve();
    this.#renewing ??= this.#session('renew leases', async (client) => {
      await this.#heartbeat(client);
      await this.#renewLeases(client, this.#held);
    }).finally(() => {
      this.#renewing = undefined;
    });
    return this.#renewing;
  }

  /** This replica is alive for another lease period (a statement of its own: nothing it waits on can hold it back). */
  async #heartbeat(client: pg.PoolClient): Promise<void> {
    await client.query(
      `INSERT INTO replicas (replica, host, pid, passing, started_at, expires_at) VALUES ($1, $2, $3, $4, now(), clock_timestamp() + $5 * interval '1 millisecond')
       ON CONFLICT (replica) DO UPDATE SET expires_at = excluded.expires_at`,
      [this.replica, hostname(), process.pid, this.#passing, this.#leadershipMs],
    );
    // Replicas long gone leave no trace (an hour: long enough to read who held what after a failover).
    await client.query("DELETE FROM replicas WHERE expires_at < clock_timestamp() - interval '1 hour'");
  }

  /**
   * Pushes these leases forward where this replica still holds them. A lease a commit has
   * locked is skipped: the commit renews it itself.
   */
  async #renewLeases(client: pg.PoolClient, accountIds: readonly string[]): Promise<void> {
    if (accountIds.length === 0) return;
    await client.query(
      `UPDATE leases SET expires_at = clock_timestamp() + $3 * interval '1 millisecond' WHERE account_id IN (
         SELECT account_id FROM leases WHERE holder = $1 AND account_id = ANY($2::text[]) FOR UPDATE SKIP LOCKED
       ) AND holder = $1`,
      [this.replica, accountIds, this.#leadershipMs],
    );
  }

  async #query<R extends pg.QueryResultRow>(what: string, text: string, values?: unknown[]): Promise<R[]> {
    try {
      return (await this.#pool.query<R>(text, values)).rows;
    } catch (error) {
      throw asStateError(error, this.where, what);
    }
  }

  /** Statements on one connection, each committed on its own. */
  async #session<T>(what: string, body: (client: pg.PoolClient) => Promise<T>): Promise<T> {
    const client = await this.#connect();
    let broken: Error | undefined;
    try {
      return await body(client);
    } catch (error) {
      broken = error as Error;
      throw asStateError(error, this.where, what);
    } finally {
      // After a failure the connection may be gone or mid-statement: don't hand it out again.
      client.release(broken);
    }
  }

  async #connect(): Promise<pg.PoolClient> {
    try {
      return await this.#pool.connect();
    } catch (error) {
      throw asStateError(error, this.where, 'connect');
    }
  }

  async #transaction<T>(what: string, body: (client: pg.PoolClient) => Promise<T>, begin = 'BEGIN'): Promise<T> {
    const client = await this.#connect();
    let broken: Error | undefined;
    try {
      await client.query(begin);
      const result = await body(client);
      await client.query('COMMIT');
      return result;
    } catch (error) {
      try {
        await client.query('ROLLBACK');
      } catch (rollbackFailed) {
        // The connection itself is gone: don't hand it out again.
        broken = rollbackFailed as Error;
      }
      throw asStateError(error, this.where, what);
    } finally {
      client.release(broken);
    }
  }
}

/**
 * The connections of one store. On each: riskwatch's schema, and server-side limits, so
 * that a replica frozen mid-transaction (SIGSTOP, a lost node) does not keep its locks, and
 * with them an account's lease, for longer than a lease lasts.
 */
function createPool(url: string, leadershipMs: number): pg.Pool {
  const pool = new pg.Pool({
    connectionString: url,
    // Polls, sink lanes, leases and scrapes share these.
    max: 16,
    connectionTimeoutMillis: 10_000,
    idleTimeoutMillis: 30_000,
    query_timeout: 60_000,
    keepAlive: true,
    application_name: 'riskwatch',
    // Before a new connection is handed out: errors of its own are heard (a connection the server drops
    // while in use must fail its query, not crash the process), and riskwatch's schema and limits are
    // set (here, not in the URL's options, which a user may also set).
    onConnect: async (client) => {
      client.on('error', () => {});
      await client.query(`SET search_path TO ${SCHEMA}; SET statement_timeout = 60000; SET idle_in_transaction_session_timeout = ${Math.max(1000, Math.round(leadershipMs))}`);
    },
    // Epoch milliseconds and counts are bigint: as numbers, not strings (safe far beyond any of ours).
    types: { getTypeParser: ((oid: number, format?: string) => (oid === 20 ? Number : pg.types.getTypeParser(oid, format as 'text'))) as pg.CustomTypesConfig['getTypeParser'] },
  });
  // An idle connection the server drops (a restart) must not bring the process down: the pool opens a new one.
  pool.on('error', () => {});
  return pool;
}

async function schemaVersion(client: pg.PoolClient, where: string): Promise<number> {
  const table = await client.query<{ found: boolean }>(`SELECT to_regclass('${SCHEMA}.schema_version') IS NOT NULL AS found`);
  if (!table.rows[0]!.found) return 0;
  const version = (await client.query<{ version: number }>(`SELECT version FROM ${SCHEMA}.schema_version`)).rows[0]?.version ?? 0;
  if (version > PG_SCHEMA_VERSION) {
    throw new StateError(`${where} was written by a newer riskwatch (schema ${version}; this one knows up to ${PG_SCHEMA_VERSION}); upgrade riskwatch`);
  }
  return version;
}

async function migrate(client: pg.PoolClient, where: string, version: number): Promise<void> {
  if (version === PG_SCHEMA_VERSION) return;
  if (version === 0) {
    // Only when missing: creating needs CREATE on the database even with IF NOT EXISTS, and an
    // operator may have made the schema for a user who lacks it.
    const exists = await client.query('SELECT 1 FROM pg_namespace WHERE nspname = $1', [SCHEMA]);
    if (exists.rowCount === 0) await client.query(`CREATE SCHEMA ${SCHEMA}`);
    const tables = await client.query<{ n: number }>('SELECT COUNT(*) AS n FROM pg_tables WHERE schemaname = $1', [SCHEMA]);
    if (tables.rows[0]!.n > 0) throw new StateError(`${where}: schema "${SCHEMA}" holds tables that are not riskwatch's; give riskwatch a database of its own`);
    await client.query(`CREATE TABLE ${SCHEMA}.schema_version (version integer NOT NULL)`);
    await client.query(`INSERT INTO ${SCHEMA}.schema_version VALUES (0)`);
  }
  for (let next = version; next < PG_SCHEMA_VERSION; next++) {
    const migration = PG_MIGRATIONS[next]!;
    if (typeof migration === 'string') await client.query(migration);
    else await migration(client);
  }
  await client.query(`UPDATE ${SCHEMA}.schema_version SET version = $1`, [PG_SCHEMA_VERSION]);
}

/** A silences row as a StoredSilence. */
const SILENCE_COLUMNS = 'id, user_ref AS "user", behavior, account_id AS "accountId", starts_at AS "startsAt", ends_at AS "endsAt", reason, created_by AS "by"';

/**
 * Makes deliveries pending again, due at `now`, under their ids, each behind its subject's earlier
 * ones (their subjects again); a stale trigger (STALE_INCIDENT_DELIVERY) is dropped instead.
 */
async function revive(client: pg.PoolClient, ids: readonly number[], now: number): Promise<Revived> {
  if (ids.length === 0) return { revived: 0, dropped: 0 };
  await client.query('DELETE FROM delivery_subjects WHERE delivery_id = ANY($1::bigint[])', [ids]);
  const dropped = (await client.query(`DELETE FROM deliveries d WHERE d.id = ANY($1::bigint[]) AND ${STALE_INCIDENT_DELIVERY}`, [ids])).rowCount ?? 0;
  const revived = await client.query<{ id: number }>(
    "UPDATE deliveries SET state = 'pending', attempts = 0, retried_at = $2, next_attempt_at = $2, leased_until = 0, leased_by = NULL, finished_at = NULL WHERE id = ANY($1::bigint[]) RETURNING id",
    [ids, now],
  );
  const bodies = await client.query<{ id: number; sink: string; body: string }>(
    `SELECT d.id, d.sink, e.body FROM deliveries d CROSS JOIN LATERAL jsonb_array_elements_text(d.event_ids) AS j(event_id)
     JOIN events e ON e.id = j.event_id WHERE d.id = ANY($1::bigint[])`,
    [revived.rows.map((r) => r.id)],
  );
  await insertSubjects(client, pendingSubjects(bodies.rows));
  return { revived: revived.rows.length, dropped };
}

/**
 * Pending deliveries and their subjects; returns their ids, in order. Ids are taken first so that
 * each delivery's subjects can name it. A sink held back (holdSink) holds new deliveries too.
 */
async function insertDeliveries(client: pg.PoolClient, planned: readonly PlannedDelivery[], now: number): Promise<number[]> {
  const all: number[] = [];
  for (const deliveries of chunks(planned)) {
    const ids = (await client.query<{ id: number }>(`SELECT nextval(pg_get_serial_sequence('${SCHEMA}.deliveries', 'id')) AS id FROM generate_series(1, $1)`, [deliveries.length])).rows
      .map((r) => Number(r.id))
      .sort((a, b) => a - b);
    await client.query(
      `INSERT INTO deliveries (id, sink, account_id, event_ids, state, created_at, next_attempt_at, incident_action, incident_key, incident_note)
       SELECT d.id, d.sink, d.account_id, d.event_ids::jsonb, 'pending', $1, GREATEST($1, COALESCE((SELECT until FROM sink_holds h WHERE h.sink = d.sink), 0)), d.action, d.key, d.note
       FROM unnest($2::bigint[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[]) AS d(id, sink, account_id, event_ids, action, key, note)`,
      [
        now,
        ids,
        deliveries.map((d) => d.sink),
        deliveries.map((d) => d.accountId),
        deliveries.map((d) => JSON.stringify(d.eventIds)),
        deliveries.map((d) => d.incident?.action ?? null),
        deliveries.map((d) => d.incident?.key ?? null),
        deliveries.map((d) => d.incident?.note ?? null),
      ],
    );
    await insertSubjects(
      client,
      deliveries.flatMap((d, i) => d.subjects.map((subject) => [ids[i]!, d.sink, subject] as const)),
    );
    all.push(...ids);
  }
  return all;
}

/**
 * A trigger makes its incident the sink's open one of that key; a close or retire forgets it.
 * `ids`: the deliveries', in order. A commit holds one event per subject, so no key comes twice.
 */
async function recordIncidents(client: pg.PoolClient, planned: readonly PlannedDelivery[], ids: readonly number[], now: number): Promise<void> {
  const opens = planned.flatMap((d, i) => (d.incident?.action === 'open' ? [{ d, id: ids[i]!, credentialId: d.incident.credentialId, key: d.incident.key }] : []));
  const closes = planned.flatMap((d) => (d.incident && d.incident.action !== 'open' ? [{ sink: d.sink, key: d.incident.key }] : []));
  for (const rows of chunks(closes)) {
    await client.query('DELETE FROM incidents i USING unnest($1::text[], $2::text[]) AS c(sink, key) WHERE i.sink = c.sink AND i.incident_key = c.key', [
      rows.map((r) => r.sink),
      rows.map((r) => r.key),
    ]);
  }
  for (const rows of chunks(opens)) {
    await client.query(
      `INSERT INTO incidents (sink, incident_key, credential_id, account_id, subject, event_id, delivery_id, opened_at)
       SELECT o.sink, o.key, o.credential_id, o.account_id, o.subject, o.event_id, o.delivery_id, $1
       FROM unnest($2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::bigint[]) AS o(sink, key, credential_id, account_id, subject, event_id, delivery_id)
       ON CONFLICT (sink, incident_key) DO UPDATE SET credential_id = excluded.credential_id, account_id = excluded.account_id, subject = excluded.subject,
         event_id = excluded.event_id, delivery_id = excluded.delivery_id, opened_at = excluded.opened_at`,
      [
        now,
        rows.map((r) => r.d.sink),
        rows.map((r) => r.key),
        rows.map((r) => r.credentialId),
        rows.map((r) => r.d.accountId),
        rows.map((r) => r.d.subjects[0]!),
        rows.map((r) => r.d.eventIds[0]!),
        rows.map((r) => r.id),
      ],
    );
  }
}

/** Rows of delivery_subjects: (delivery id, sink, subject). */
async function insertSubjects(client: pg.PoolClient, subjects: readonly (readonly [number, string, string])[]): Promise<void> {
  for (const rows of chunks(subjects)) {
    await client.query('INSERT INTO delivery_subjects (delivery_id, sink, subject) SELECT * FROM unnest($1::bigint[], $2::text[], $3::text[])', [
      rows.map((r) => r[0]),
      rows.map((r) => r[1]),
      rows.map((r) => r[2]),
    ]);
  }
}

function* chunks<T>(items: readonly T[]): Generator<readonly T[]> {
  for (let i = 0; i < items.length; i += BATCH) yield items.slice(i, i + BATCH);
}

/** Errors of the connection rather than of the request: the database may be back in a moment. */
const UNREACHABLE_CODES = new Set(['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EPIPE', 'EHOSTUNREACH', 'ENETUNREACH', 'EAI_AGAIN', '53300', '57P01', '57P02', '57P03', '40001', '40P01']);
const WHY: Record<string, string> = {
  ECONNREFUSED: 'connection refused',
  ENOTFOUND: 'host not found',
  '28P01': 'password authentication failed',
  '28000': 'this user may not connect',
  '3D000': 'the database does not exist',
  '42501': 'permission denied',
  '53300': 'too many connections',
  '57P01': 'the server is shutting down',
  '57P03': 'the server is starting up',
};

/** PostgreSQL's and the network's errors, said for an operator: which database, doing what, and why. */
function asStateError(error: unknown, where: string, doing: string): Error {
  if (error instanceof StateError || error instanceof StaleSnapshotError || error instanceof LeadershipLostError) return error;
  const code = (error as { code?: string }).code;
  const message = (error as Error).message ?? String(error);
  const why = (code && WHY[code]) ?? message;
  const unreachable = (code !== undefined && (UNREACHABLE_CODES.has(code) || code.startsWith('08'))) || /Connection terminated|timeout|connection.*(closed|ended)|not queryable/i.test(message);
  const line = `${where}: cannot ${doing}: ${why}`;
  return unreachable ? new StoreUnavailableError(line, { cause: error }) : new StateError(line, { cause: error });
}
