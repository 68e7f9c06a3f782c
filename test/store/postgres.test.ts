import pg from 'pg';
import { setTimeout as delay } from 'node:timers/promises';
import { afterEach, describe, expect, it } from 'vitest';
import { PG_SCHEMA_VERSION, PostgresStore, type PostgresStoreOptions } from '../../src/store/postgres.ts';
import { LeadershipLostError, StateError, StoreUnavailableError } from '../../src/store/store.ts';
import { freshDatabase } from '../support/postgres.ts';
import { ACCOUNT, OTHER_ACCOUNT, planned, pollCommit, riskUser, T0, userEvent } from '../support/store-fixtures.ts';

/**
 * What the PostgreSQL store does beyond the shared contract (test/store/contract.ts):
 * replicas sharing it, and a database that misbehaves underneath.
 */

const opened: PostgresStore[] = [];
const admins: pg.Client[] = [];

afterEach(async () => {
  for (const store of opened.splice(0)) await store.close();
  for (const admin of admins.splice(0)) await admin.end().catch(() => {});
});

async function open(url: string, options: PostgresStoreOptions = {}): Promise<PostgresStore> {
  const store = await PostgresStore.open(url, options);
  opened.push(store);
  return store;
}

/** A plain connection to the same database, to do what a test needs behind the store's back. */
async function admin(url: string): Promise<pg.Client> {
  const client = new pg.Client({ connectionString: url });
  client.on('error', () => {});
  await client.connect();
  admins.push(client);
  return client;
}

const ACCOUNTS = Array.from({ length: 10 }, (_, i) => i.toString(16).repeat(32));

describe('replicas starting together', () => {
  it('migrate one after the other: five stores opened at once on an empty database all come up on the current schema', async () => {
    const url = await freshDatabase();
    await Promise.all(Array.from({ length: 5 }, () => open(url)));
    const db = await admin(url);
    expect((await db.query('SELECT version FROM riskwatch.schema_version')).rows).toEqual([{ version: PG_SCHEMA_VERSION }]);
  });

  it('use a schema made for them by an operator, by a user who may not create schemas', async () => {
    const url = await freshDatabase();
    const db = await admin(url);
    const role = `rw_limited_${Math.random().toString(16).slice(2, 8)}`;
    const database = new URL(url).pathname.slice(1);
    await db.query(`CREATE ROLE ${role} LOGIN`);
    await db.query(`REVOKE CREATE ON DATABASE ${database} FROM PUBLIC`);
    await db.query(`CREATE SCHEMA riskwatch AUTHORIZATION ${role}`);
    const limited = new URL(url);
    limited.username = role;
    const store = await open(limited.toString());
    expect(await store.lead([ACCOUNT.id])).toEqual(new Set([ACCOUNT.id]));
  });

  it('refuse a database a newer riskwatch migrated, in one line', async () => {
    const url = await freshDatabase();
    await (await PostgresStore.open(url)).close();
    await (await admin(url)).query('UPDATE riskwatch.schema_version SET version = 99');
    const error = await PostgresStore.open(url).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(StateError);
    expect((error as Error).message).toMatch(/was written by a newer riskwatch \(schema 99; this one knows up to \d+\); upgrade riskwatch$/);
  });
});

describe('accounts spread over the live replicas, each led by one', () => {
  it('gives each of three replicas its share, none twice, and hands a closed replica’s accounts to the others', async () => {
    const url = await freshDatabase();
    const [a, b, c] = await Promise.all([open(url), open(url), open(url)]);
    // Each asks a few times, as the daemon does: those over their share let go, the others take.
    for (let round = 0; round < 3; round++) for (const store of [a!, b!, c!]) await store.lead(ACCOUNTS);
    const shares = await Promise.all([a!, b!, c!].map((s) => s.lead(ACCOUNTS)));
    // At most ceil(10 / 3) each, and every account led by exactly one.
    for (const share of shares) {
      expect(share.size).toBeGreaterThanOrEqual(1);
      expect(share.size).toBeLessThanOrEqual(4);
    }
    expect(shares.reduce((n, s) => n + s.size, 0)).toBe(ACCOUNTS.length);
    expect(new Set(shares.flatMap((s) => [...s]))).toEqual(new Set(ACCOUNTS));

    await c!.close();
    const after = [await a!.lead(ACCOUNTS), await b!.lead(ACCOUNTS)];
    expect(after.map((s) => s.size)).toEqual([5, 5]);
    expect(new Set(after.flatMap((s) => [...s]))).toEqual(new Set(ACCOUNTS));
  });

  it('a process passing through (once) takes only accounts nobody leads, and takes none away', async () => {
    const url = await freshDatabase();
    const replica = await open(url);
    expect((await replica.lead(ACCOUNTS.slice(0, 8))).size).toBe(8);
    const passing = await open(url, { passing: true });
    expect(await passing.lead(ACCOUNTS)).toEqual(new Set(ACCOUNTS.slice(8)));
    expect((await replica.lead(ACCOUNTS.slice(0, 8))).size).toBe(8);
  });

  it('a long commit holding a lease row does not hold up lead(): it answers at once and keeps the account', async () => {
    const url = await freshDatabase();
    const store = await open(url);
    expect(await store.lead([ACCOUNT.id, OTHER_ACCOUNT.id])).toEqual(new Set([ACCOUNT.id, OTHER_ACCOUNT.id]));
    const db = await admin(url);
    await db.query('BEGIN');
    await db.query('SELECT * FROM riskwatch.leases WHERE account_id = $1 FOR UPDATE', [ACCOUNT.id]);
    try {
      const answer = await Promise.race([store.lead([ACCOUNT.id, OTHER_ACCOUNT.id]), new Promise((resolve) => setTimeout(() => resolve('blocked'), 5000))]);
      expect(answer).toEqual(new Set([ACCOUNT.id, OTHER_ACCOUNT.id]));
    } finally {
      await db.query('ROLLBACK');
    }
  });
});

describe('fencing: a replica commits only while it holds the account’s lease', () => {
  it('refuses the commit of a replica whose lease was taken over, and writes nothing', async () => {
    const url = await freshDatabase();
    const stale = await open(url, { leadershipMs: 60_000 });
    expect(await stale.lead([ACCOUNT.id])).toEqual(new Set([ACCOUNT.id]));
    // Its lease lapses (as if it had been frozen), and another replica takes the account over.
    await (await admin(url)).query("UPDATE riskwatch.leases SET expires_at = now() - interval '1 second'");
    const next = await open(url);
    expect(await next.lead([ACCOUNT.id])).toEqual(new Set([ACCOUNT.id]));

    const user = riskUser(1, 'high');
    const event = userEvent('evt-stale', user, 'low', 'high');
    const error = await stale
      .commitPoll(pollCommit({ delta: { upsertUsers: [user], removeUserIds: [], upsertBehaviors: [], removeBehaviorIds: [] }, events: [event], deliveries: [planned('hook', [event])] }))
      .catch((e: unknown) => e);
    expect(error).toBeInstanceOf(LeadershipLostError);
    expect((error as Error).message).toBe(`account ${ACCOUNT.id}: replica ${stale.replica} does not hold its lease (it lapsed, or another replica took the account over); nothing was committed`);
    expect((await next.loadSnapshot(ACCOUNT.id)).version).toBe(0);
    expect(await next.deliveryCounts()).toEqual(new Map());
    expect(await next.commitPoll(pollCommit())).toBe(1);
  });
});

describe('one outbox for every replica', () => {
  it('frees the claims of a replica whose heartbeat lapsed at once, and ignores the outcome it reports late', async () => {
    const url = await freshDatabase();
    const dead = await open(url, { leadershipMs: 60_000 });
    const alive = await open(url);
    await dead.lead([ACCOUNT.id]);
    const event = userEvent('evt-1', riskUser(1, 'high'), 'low', 'high');
    await dead.commitPoll(pollCommit({ events: [event], deliveries: [planned('hook', [event])] }));
    const [claimed] = await dead.claimDue('hook', T0, 16);
    expect(claimed).toBeDefined();
    // The claim is invisible while its replica lives…
    expect(await alive.claimDue('hook', T0 + 1000, 16)).toEqual([]);
    // …and free as soon as its heartbeat lapses, with the same event (and so the same webhook-id).
    await (await admin(url)).query("UPDATE riskwatch.replicas SET expires_at = now() - interval '1 second' WHERE replica = $1", [dead.replica]);
    // Never by the lapsed replica itself, whose send may still be in flight: its own lease decides for it.
    expect(await dead.claimDue('hook', T0 + 1000, 16)).toEqual([]);
    const [again] = await alive.claimDue('hook', T0 + 1000, 16);
    expect(again?.id).toBe(claimed!.id);
    expect(again?.events.map((e) => e.id)).toEqual(['evt-1']);

    // The first replica wakes up and reports a failure: the claim is no longer its own, so nothing changes.
    await dead.recordOutcomes([{ deliveryId: claimed!.id, outcome: { kind: 'retry', at: T0 + 2000, nextAttemptAt: T0 + 60_000, error: 'late' } }]);
    await alive.recordOutcomes([{ deliveryId: claimed!.id, outcome: { kind: 'delivered', at: T0 + 2000 } }]);
    expect(await alive.deliveryCounts()).toEqual(new Map());
  });

  it('settles a late batch only where the claims are still its own: what another replica took over is left to that one', async () => {
    const url = await freshDatabase();
    const paused = await open(url, { leaseMs: 1000 });
    const other = await open(url);
    await paused.lead([ACCOUNT.id]);
    const events = [1, 2, 3].map((n) => userEvent(`evt-${n}`, riskUser(n, 'high'), 'low', 'high'));
    await paused.commitPoll(pollCommit({ events, deliveries: events.map((e) => planned('hook', [e])) }));
    const claimed = await paused.claimDue('hook', T0, 16);
    expect(claimed.map((d) => d.events[0]!.id)).toEqual(['evt-1', 'evt-2', 'evt-3']);
    // The first one's lease ran out while its replica was paused: the other replica claimed it, and is sending it.
    const [takenOver] = await other.claimDue('hook', T0 + 1000, 1);
    expect(takenOver?.id).toBe(claimed[0]!.id);
    await paused.recordOutcomes(claimed.map((d) => ({ deliveryId: d.id, outcome: { kind: 'delivered', at: T0 + 2000 } })));
    // Its own two are settled; the one taken over is still pending, the other replica's to settle.
    expect(await other.deliveryCounts()).toEqual(new Map([['hook', { pending: 1, dead: 0 }]]));
    await other.recordOutcomes([{ deliveryId: takenOver!.id, outcome: { kind: 'retry', at: T0 + 2000, nextAttemptAt: T0 + 60_000, error: 'HTTP 503' } }]);
    expect((await other.listDeliveries({ sink: 'hook' })).map((row) => [row.id, row.attempts, row.lastError])).toEqual([[takenOver!.id, 1, 'HTTP 503']]);
  });
});

describe('one subject at a time across replicas', () => {
  it('a replica does not claim a user’s reset while another replica has their raise in flight, nor while it waits for a retry', async () => {
    const url = await freshDatabase();
    const first = await open(url);
    const second = await open(url);
    await first.lead([ACCOUNT.id]);
    const rise = userEvent('evt-rise', riskUser(1, 'high'), 'low', 'high');
    const reset = userEvent('evt-reset', riskUser(1, 'high'), 'high', null);
    const other = userEvent('evt-other', riskUser(2, 'high'), null, 'high');
    const events = [rise, reset, other];
    await first.commitPoll(pollCommit({ events, deliveries: events.map((e) => planned('hook', [e])) }));
    const [raise] = await first.claimDue('hook', T0, 1);
    expect(raise?.events.map((e) => e.id)).toEqual(['evt-rise']);
    // The second replica gets the unrelated one, not the reset.
    expect((await second.claimDue('hook', T0, 16)).map((d) => d.events[0]!.id)).toEqual(['evt-other']);
    await first.recordOutcomes([{ deliveryId: raise!.id, outcome: { kind: 'retry', at: T0, nextAttemptAt: T0 + 60_000, error: 'HTTP 503' } }]);
    expect(await second.claimDue('hook', T0 + 1000, 16)).toEqual([]);
    expect(await second.nextDueAt('hook')).toBe(T0 + 60_000);
    const [again] = await second.claimDue('hook', T0 + 60_000, 16);
    expect(again?.events.map((e) => e.id)).toEqual(['evt-rise']);
    await second.recordOutcomes([{ deliveryId: again!.id, outcome: { kind: 'delivered', at: T0 + 60_000 } }]);
    expect((await first.claimDue('hook', T0 + 60_000, 16)).map((d) => d.events[0]!.id)).toEqual(['evt-reset']);
  });
});

describe('a database that goes away under a connection', () => {
  it('fails the call in flight with one line saying the store cannot be reached, and the next call works', async () => {
    const url = await freshDatabase();
    const store = await open(url);
    await store.lead([ACCOUNT.id]);
    await store.commitPoll(pollCommit({ delta: { upsertUsers: [riskUser(1)], removeUserIds: [], upsertBehaviors: [], removeBehaviorIds: [] } }));
    const db = await admin(url);
    // A snapshot read waits on a lock, and its connection is cut meanwhile (what a restart or failover does).
    await db.query('BEGIN');
    await db.query('LOCK TABLE riskwatch.users IN ACCESS EXCLUSIVE MODE');
    const reading = store.loadSnapshot(ACCOUNT.id).catch((e: unknown) => e);
    await waitFor(async () => (await db.query("SELECT 1 FROM pg_stat_activity WHERE application_name = 'riskwatch' AND wait_event_type = 'Lock'")).rowCount! > 0);
    await db.query("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'riskwatch' AND wait_event_type = 'Lock'");
    const error = await reading;
    await db.query('ROLLBACK');
    expect(error).toBeInstanceOf(StoreUnavailableError);
    expect((error as Error).message).toMatch(/^state database postgres:\/\/\S+: cannot read the snapshot: /);
    expect((error as Error).message).not.toContain('\n');
    expect((await store.loadSnapshot(ACCOUNT.id)).version).toBe(1);
  });
});

async function waitFor(condition: () => Promise<boolean>, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

describe('one Cloudflare budget for the fleet (SPEC §11)', () => {
  const CREDENTIAL = 'cred-0123abcd';
  const LIMIT = 60;
  const take = (store: PostgresStore, want = 3, settle?: { batch: number; used: ReadonlyMap<string, number> }) =>
    store.grants.take({ credentialId: CREDENTIAL, accountIds: ACCOUNTS, limit: LIMIT, want, ...(settle ? { settle } : {}) });

  /** Takes until the store is granted nothing, as a replica whose accounts all wait would, spending each batch on its accounts in turn. */
  async function drain(store: PostgresStore, accounts: readonly string[]): Promise<{ taken: number; waitMs: number }> {
    let taken = 0;
    let settle: { batch: number; used: Map<string, number> } | undefined;
    for (let turn = 0, heldBack = 0; ; ) {
      const answer = await take(store, 3, settle);
      if (answer.granted === 0) {
        if (settle) await store.grants.settle(CREDENTIAL, settle.batch, settle.used);
        settle = undefined;
        // Held back (not full) while other replicas' batches are unsettled: asked again shortly, as a replica does.
        if (answer.waitMs <= 1000 && heldBack++ < 50) {
          await delay(20);
          continue;
        }
        return { taken, waitMs: answer.waitMs };
      }
      const used = new Map<string, number>();
      for (let i = 0; i < answer.granted; i++, turn++) used.set(accounts[turn % accounts.length]!, (used.get(accounts[turn % accounts.length]!) ?? 0) + 1);
      settle = { batch: answer.batch!, used };
      taken += answer.granted;
    }
  }

  async function threeReplicas(url: string) {
    const stores = await Promise.all([open(url), open(url), open(url)]);
    for (let round = 0; round < 3; round++) for (const store of stores) await store.lead(ACCOUNTS);
    const leads = await Promise.all(stores.map(async (s) => [...(await s.lead(ACCOUNTS))]));
    return { stores, leads };
  }

  it("never grants the fleet more than the limit in a window, and each replica its accounts' shares (6 each of 60 over 10)", async () => {
    const url = await freshDatabase();
    const { stores, leads } = await threeReplicas(url);
    const taken = await Promise.all(stores.map((s, i) => drain(s, leads[i]!)));
    expect(taken.reduce((a, t) => a + t.taken, 0)).toBe(LIMIT);
    for (const [i, t] of taken.entries()) expect(t.taken).toBeGreaterThanOrEqual(6 * leads[i]!.length);
    // Full: the answer says to wait until the oldest batch stops counting (five minutes after its lease).
    const full = await take(stores[0]!);
    expect(full.granted).toBe(0);
    expect(full.waitMs).toBeGreaterThan(4 * 60_000);
    expect(full.waitMs).toBeLessThanOrEqual(5 * 60_000 + full.leaseMs + 1);
  });

  it("counts the window on the database's clock: grants no longer counting are free again", async () => {
    const url = await freshDatabase();
    const store = await open(url);
    const led = [...(await store.lead(ACCOUNTS))];
    expect((await drain(store, led)).taken).toBe(LIMIT);
    const db = await admin(url);
    await db.query('UPDATE riskwatch.budget_grants SET expires_at = (extract(epoch FROM clock_timestamp()) * 1000)::bigint - 1');
    expect((await drain(store, led)).taken).toBe(LIMIT);
  });

  it('a batch counts as what its accounts used: the rest goes back at the next take, or when the replica stops', async () => {
    const url = await freshDatabase();
    const [a, b] = await Promise.all([open(url), open(url)]);
    const led = [...(await a.lead(ACCOUNTS))];
    const first = await take(a, 3);
    expect(first.granted).toBe(3);
    // One used, by the first account: the next take says so, and its own batch is given back whole when a stops.
    const second = await take(a, 3, { batch: first.batch!, used: new Map([[led[0]!, 1]]) });
    await a.grants.settle(CREDENTIAL, second.batch!, new Map());
    await a.close();
    expect((await drain(b, [...(await b.lead(ACCOUNTS))])).taken).toBe(LIMIT - 1);
  });

  it('an account taken over from a replica killed mid-window is owed what it has not had: the others keep it for it', async () => {
    const url = await freshDatabase();
    const { stores, leads } = await threeReplicas(url);
    const [a, b, c] = stores as [PostgresStore, PostgresStore, PostgresStore];
    // a and b spend their accounts' shares; c, which has taken nothing yet, dies (kill -9): nothing is released.
    const spent = (await drain(a, leads[0]!)).taken + (await drain(b, leads[1]!)).taken;
    expect(spent).toBe(6 * (leads[0]!.length + leads[1]!.length));
    const db = await admin(url);
    await db.query("UPDATE riskwatch.replicas SET expires_at = clock_timestamp() - interval '1 second' WHERE replica = $1", [c.replica]);
    await db.query("UPDATE riskwatch.leases SET expires_at = clock_timestamp() - interval '1 second' WHERE holder = $1", [c.replica]);
    // Whoever takes c's accounts over gets what they are due, and nobody else does.
    const ledByA = [...(await a.lead(ACCOUNTS))];
    const ledByB = [...(await b.lead(ACCOUNTS))];
    const taken =
      (
        await drain(
          a,
          ledByA.filter((x) => leads[2]!.includes(x)),
        )
      ).taken +
      (
        await drain(
          b,
          ledByB.filter((x) => leads[2]!.includes(x)),
        )
      ).taken;
    expect(spent + taken).toBe(LIMIT);
  });

  it("a 429 seen by one replica holds the others back, on the database's clock", async () => {
    const url = await freshDatabase();
    const [a, b] = await Promise.all([open(url), open(url)]);
    await a.grants.block(CREDENTIAL, 60_000);
    const answer = await take(b);
    expect(answer.blockedMs).toBeGreaterThan(55_000);
    expect(answer.blockedMs).toBeLessThanOrEqual(60_000);
    // Another credential is not held back.
    expect((await b.grants.take({ credentialId: 'cred-other', accountIds: [], limit: LIMIT, want: 1 })).blockedMs).toBe(0);
  });
});
