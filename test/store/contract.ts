import { afterEach, describe, expect, it } from 'vitest';
import type { RiskEvent } from '../../src/detect/events.ts';
import type { FlapState } from '../../src/detect/flapping.ts';
import { type EventQuery, type Silence, StaleSnapshotError, StateError, type StateStore } from '../../src/store/store.ts';
import { ACCOUNT, behavior, behaviorEvent, delta, OTHER_ACCOUNT, planned, pollCommit, riskUser, T0, userEvent } from '../support/store-fixtures.ts';

/**
 * The StateStore contract: what every implementation (SQLite, PostgreSQL) does, tested through
 * the interface alone. What a store's own medium adds (files, locks, schema versions) is tested
 * next to it, in <name>.test.ts.
 */

export interface StoreOptions {
  /** How long a claimed delivery stays invisible to other claims; the store's default when absent. */
  readonly leaseMs?: number;
  readonly now?: () => number;
  readonly warn?: (message: string) => void;
}

/** What the contract needs of one implementation: fresh stores, restarts, and a way to count what a commit wrote. */
export interface StoreHarness {
  /** A new, empty store (a fresh file, a fresh database) of this process alone. */
  open(options?: StoreOptions): Promise<StateStore>;
  /** Closes `store` (one open() or reopen() gave) and opens the same state again, as the next process would. */
  reopen(store: StateStore, options?: StoreOptions): Promise<StateStore>;
  /**
   * How many rows of stored state the transactions committed while `during` ran inserted, updated
   * or deleted, in all: the accounts' versions, their users and behaviors, the events and the
   * deliveries; not the store's own bookkeeping (locks, leases, heartbeats, holds). An upsert counts
   * once. A transaction that was rolled back counts nothing (AFTER ROW triggers writing to a counter
   * table do this in SQLite and PostgreSQL alike; pg_stat_user_tables does not: it counts the rows
   * of aborted transactions too, and reports late). `during` may throw; the counting is undone either way.
   */
  countWrites(store: StateStore, during: () => Promise<unknown>): Promise<number>;
  /**
   * Makes the store fail to change delivery `deliveryId` (any update of its row is refused, as a
   * constraint or a failing disk would refuse it) until the function returned is called.
   */
  refuseUpdatesOf(store: StateStore, deliveryId: number): Promise<() => Promise<void>>;
  /** What this store's StateErrors name it by, so that an operator knows which: the file's path, the database's name. */
  named(store: StateStore): string;
  /**
   * `replica` and `leadershipCheckMs` of a store from open(), for toEqual (asymmetric matchers
   * welcome): undefined for a store that is always alone (SQLite).
   */
  readonly alone: { readonly replica: unknown; readonly leadershipCheckMs: unknown };
  /** Closes every store open() and reopen() gave that is still open, and removes what they left. Runs after each test. */
  closeAll(): Promise<void>;
}

const HOUR = 3_600_000;
const users3 = [riskUser(1, 'high'), riskUser(2, 'low'), riskUser(3, 'medium')];
const impTravel = behavior('imp_travel', { risk_level: 'high' });
const highDlp = behavior('high_dlp', { enabled: false });
/** Every account these tests commit for. */
const ACCOUNTS = [ACCOUNT.id, OTHER_ACCOUNT.id];
const NOTHING_PENDING = { pending: 0, dead: 0 };

/** The error `attempt` fails with; fails the test if it does not. */
async function failureOf(attempt: () => Promise<unknown>): Promise<unknown> {
  try {
    await attempt();
  } catch (error) {
    return error;
  }
  throw new Error('expected the attempt to fail, but it succeeded');
}

const eventIds = (deliveries: readonly { events: readonly RiskEvent[] }[]) => deliveries.map((d) => d.events.map((e) => e.id));

export function describeStoreContract(name: string, harness: StoreHarness): void {
  /**
   * A fresh store that the harness closes after the test, which has asked to lead the accounts
   * the tests commit for, as the daemon does before it polls (a store alone leads them all).
   */
  async function open(options?: StoreOptions): Promise<StateStore> {
    return leading(await harness.open(options));
  }

  /** The same state, opened again by the next process after `store` closed. */
  async function reopen(store: StateStore, options?: StoreOptions): Promise<StateStore> {
    return leading(await harness.reopen(store, options));
  }

  async function leading(store: StateStore): Promise<StateStore> {
    expect(await store.lead(ACCOUNTS)).toEqual(new Set(ACCOUNTS));
    return store;
  }

  /** `error`, checked to be a StateError of one line with exit code 2 that names the store. */
  function asStateError(store: StateStore, error: unknown): StateError {
    expect(error).toBeInstanceOf(StateError);
    const stateError = error as StateError;
    expect(stateError.exitCode).toBe(2);
    expect(stateError.message).not.toContain('\n');
    expect(stateError.message).toContain(harness.named(store));
    return stateError;
  }

  /** How `attempt` failed, and how many rows it wrote meanwhile. */
  async function refusal(store: StateStore, attempt: () => Promise<unknown>): Promise<{ error: unknown; writes: number }> {
    let error: unknown;
    const writes = await harness.countWrites(store, async () => {
      error = await failureOf(attempt);
    });
    return { error, writes };
  }

  describe(`StateStore contract: ${name}`, () => {
    afterEach(() => harness.closeAll());

    describe('a fresh store holds no snapshot until the first commit, then counts versions', () => {
      it('reports version 0 and no snapshot, and has nothing to deliver', async () => {
        const store = await open();
        expect(await store.loadSnapshot(ACCOUNT.id)).toEqual({ version: 0, snapshot: undefined, missing: new Set(), flaps: new Map() });
        expect(await store.deliveryCounts()).toEqual(new Map());
        expect(await store.nextDueAt('secops')).toBeUndefined();
        expect(await store.claimDue('secops', T0 + HOUR, 10)).toEqual([]);
      });

      it('returns version 1 from the first commit, after which loadSnapshot returns the levels and behaviors committed', async () => {
        const store = await open();
        expect(await store.commitPoll(pollCommit({ delta: delta({ upsertUsers: users3, upsertBehaviors: [impTravel, highDlp] }) }))).toBe(1);
        const loaded = await store.loadSnapshot(ACCOUNT.id);
        expect({ ...loaded, snapshot: loaded.snapshot && { ...loaded.snapshot, userLevels: new Map(loaded.snapshot.userLevels) } }).toEqual({
          version: 1,
          snapshot: {
            userLevels: new Map(users3.map((u) => [u.user_id, u.max_risk_level])),
            behaviors: new Map([
              ['imp_travel', impTravel],
              ['high_dlp', highDlp],
            ]),
          },
          missing: new Set(),
          flaps: new Map(),
        });
      });

      it('marks users a read missed, hands them back with the snapshot, and clears a mark when they return', async () => {
        const store = await open();
        await store.commitPoll(pollCommit({ delta: delta({ upsertUsers: users3 }) }));
        await store.commitPoll(pollCommit({ expectedVersion: 1, missing: { mark: [users3[0]!.user_id, users3[1]!.user_id], clear: [] } }));
        expect((await store.loadSnapshot(ACCOUNT.id)).missing).toEqual(new Set([users3[0]!.user_id, users3[1]!.user_id]));
        await store.commitPoll(pollCommit({ expectedVersion: 2, missing: { mark: [], clear: [users3[1]!.user_id] } }));
        expect((await store.loadSnapshot(ACCOUNT.id)).missing).toEqual(new Set([users3[0]!.user_id]));
      });

      it('applies the next commit, expecting version 1, as a delta on the stored snapshot and returns 2', async () => {
        const store = await open();
        await store.commitPoll(pollCommit({ delta: delta({ upsertUsers: users3, upsertBehaviors: [impTravel, highDlp] }) }));
        const lowered = riskUser(1, 'low');
        const newcomer = riskUser(4, 'high');
        const enabled = { ...highDlp, enabled: true };
        const added = behavior('sentinel_one');
        const second = pollCommit({
          expectedVersion: 1,
          polledAt: T0 + 60_000,
          delta: delta({ upsertUsers: [lowered, newcomer], removeUserIds: [riskUser(2).user_id], upsertBehaviors: [enabled, added], removeBehaviorIds: ['imp_travel'] }),
        });
        expect(await store.commitPoll(second)).toBe(2);
        const { version, snapshot } = await store.loadSnapshot(ACCOUNT.id);
        expect(version).toBe(2);
        expect(new Map(snapshot?.userLevels)).toEqual(
          new Map([
            [lowered.user_id, 'low'],
            [riskUser(3).user_id, 'medium'],
            [newcomer.user_id, 'high'],
          ]),
        );
        expect(snapshot?.behaviors).toEqual(
          new Map([
            ['high_dlp', enabled],
            ['sentinel_one', added],
          ]),
        );
      });

      it("keeps each account's snapshot and version to itself", async () => {
        const store = await open();
        expect(await store.commitPoll(pollCommit({ delta: delta({ upsertUsers: users3 }) }))).toBe(1);
        expect(await store.commitPoll(pollCommit({ delta: delta({ upsertUsers: [users3[0]!] }), expectedVersion: 1 }))).toBe(2);
        expect(await store.loadSnapshot(OTHER_ACCOUNT.id)).toEqual({ version: 0, snapshot: undefined, missing: new Set(), flaps: new Map() });
        expect(await store.commitPoll(pollCommit({ accountId: OTHER_ACCOUNT.id, delta: delta({ upsertUsers: [riskUser(9, 'medium')] }) }))).toBe(1);
        expect(new Map((await store.loadSnapshot(OTHER_ACCOUNT.id)).snapshot?.userLevels)).toEqual(new Map([[riskUser(9).user_id, 'medium']]));
        expect((await store.loadSnapshot(ACCOUNT.id)).snapshot?.userLevels.size).toBe(3);
      });
    });

    describe('a commit against a version that is no longer current is refused and writes nothing', () => {
      it.each([
        ['0: another first poll got in first', 0],
        ['2: a version this store never reached', 2],
      ])('expectedVersion %s', async (_label, stale) => {
        const store = await open();
        const raised = userEvent('evt-1', riskUser(1, 'high'), null, 'high');
        await store.commitPoll(pollCommit({ delta: delta({ upsertUsers: users3 }), events: [raised], deliveries: [planned('secops', [raised])] }));
        const snapshotBefore = await store.loadSnapshot(ACCOUNT.id);

        const late = userEvent('evt-2', riskUser(5, 'high'), null, 'high');
        const { error, writes } = await refusal(store, () =>
          store.commitPoll(
            pollCommit({
              expectedVersion: stale,
              polledAt: T0 + 60_000,
              delta: delta({ upsertUsers: [riskUser(5, 'high'), riskUser(2, 'high')], removeUserIds: [riskUser(3).user_id], removeBehaviorIds: ['imp_travel'] }),
              events: [late],
              deliveries: [planned('secops', [late]), planned('incidents', [late])],
            }),
          ),
        );
        expect(error).toBeInstanceOf(StaleSnapshotError);
        expect((error as Error).message).toContain(`account ${ACCOUNT.id}: snapshot version is 1, expected ${stale}`);

        expect(writes).toBe(0);
        expect(await store.loadSnapshot(ACCOUNT.id)).toEqual(snapshotBefore);
        expect(await store.loadUsers(ACCOUNT.id, [riskUser(5).user_id])).toEqual(new Map());
        expect(await store.deliveryCounts()).toEqual(new Map([['secops', { pending: 1, dead: 0 }]]));
      });
    });

    describe('a poll is committed in one transaction: all of it or none of it', () => {
      it('writes nothing of a first commit that fails halfway (two events with one id), and says so in one line naming the store', async () => {
        const store = await open();
        const first = userEvent('evt-1', riskUser(1, 'high'), null, 'high');
        const sameId = userEvent('evt-1', riskUser(3, 'medium'), null, 'medium');
        const { error, writes } = await refusal(store, () =>
          store.commitPoll(
            pollCommit({
              delta: delta({ upsertUsers: users3, upsertBehaviors: [impTravel] }),
              events: [first, sameId],
              deliveries: [planned('secops', [first, sameId])],
            }),
          ),
        );
        asStateError(store, error);
        expect(writes).toBe(0);
        expect(await store.loadSnapshot(ACCOUNT.id)).toEqual({ version: 0, snapshot: undefined, missing: new Set(), flaps: new Map() });
        expect(
          await store.loadUsers(
            ACCOUNT.id,
            users3.map((u) => u.user_id),
          ),
        ).toEqual(new Map());
        expect(await store.deliveryCounts()).toEqual(new Map());
        expect(await store.nextDueAt('secops')).toBeUndefined();
      });

      it('keeps the previous snapshot whole when a later commit fails halfway (an event id already stored), and commits the redone poll', async () => {
        const store = await open();
        const e1 = userEvent('evt-1', riskUser(1, 'high'), null, 'high');
        await store.commitPoll(pollCommit({ delta: delta({ upsertUsers: users3, upsertBehaviors: [impTravel] }), events: [e1], deliveries: [planned('secops', [e1])] }));
        const snapshotBefore = await store.loadSnapshot(ACCOUNT.id);

        const change = delta({ upsertUsers: [riskUser(2, 'high'), riskUser(4, 'high')], removeUserIds: [riskUser(3).user_id], removeBehaviorIds: ['imp_travel'] });
        const e2 = userEvent('evt-2', riskUser(2, 'high'), 'low', 'high', T0 + 60_000);
        const reused = userEvent('evt-1', riskUser(4, 'high'), null, 'high', T0 + 60_000);
        const { error, writes } = await refusal(store, () =>
          store.commitPoll(pollCommit({ expectedVersion: 1, polledAt: T0 + 60_000, delta: change, events: [e2, reused], deliveries: [planned('secops', [e2, reused])] })),
        );
        asStateError(store, error);
        expect(writes).toBe(0);
        expect(await store.loadSnapshot(ACCOUNT.id)).toEqual(snapshotBefore);
        expect(await store.deliveryCounts()).toEqual(new Map([['secops', { pending: 1, dead: 0 }]]));

        // The failed commit left no transaction open: the redone poll, with fresh ids, goes through.
        const e4 = userEvent('evt-4', riskUser(4, 'high'), null, 'high', T0 + 60_000);
        expect(await store.commitPoll(pollCommit({ expectedVersion: 1, polledAt: T0 + 60_000, delta: change, events: [e2, e4], deliveries: [planned('secops', [e2, e4])] }))).toBe(2);
        const { snapshot } = await store.loadSnapshot(ACCOUNT.id);
        expect(new Map(snapshot?.userLevels)).toEqual(
          new Map([
            [riskUser(1).user_id, 'high'],
            [riskUser(2).user_id, 'high'],
            [riskUser(4).user_id, 'high'],
          ]),
        );
        expect(snapshot?.behaviors).toEqual(new Map());
        expect((await store.claimDue('secops', T0 + 60_000, 10)).map((d) => d.events)).toEqual([[e1], [e2, e4]]);
      });

      it('writes nothing when the very last row fails (a second delivery that cannot be stored, after the first was)', async () => {
        const store = await open();
        const e1 = userEvent('evt-1', riskUser(1, 'high'), null, 'high');
        const unstorable = { sink: null, accountId: ACCOUNT.id, eventIds: [e1.id] } as unknown as ReturnType<typeof planned>;
        const { error, writes } = await refusal(store, () => store.commitPoll(pollCommit({ delta: delta({ upsertUsers: users3 }), events: [e1], deliveries: [planned('secops', [e1]), unstorable] })));
        asStateError(store, error);
        expect(writes).toBe(0);
        expect(await store.loadSnapshot(ACCOUNT.id)).toEqual({ version: 0, snapshot: undefined, missing: new Set(), flaps: new Map() });
        expect(await store.deliveryCounts()).toEqual(new Map());
      });

      it('refuses a delivery of an event that is neither in the commit nor stored, writing nothing', async () => {
        const store = await open();
        const e1 = userEvent('evt-1', riskUser(1, 'high'), null, 'high');
        const ghost = userEvent('evt-ghost', riskUser(2, 'high'), null, 'high');
        const { error, writes } = await refusal(store, () =>
          store.commitPoll(pollCommit({ delta: delta({ upsertUsers: users3 }), events: [e1], deliveries: [planned('secops', [e1]), planned('secops', [ghost])] })),
        );
        const stateError = asStateError(store, error);
        expect(stateError.message).toMatch(/names event evt-ghost, which is not stored/);
        expect(writes).toBe(0);
        expect(await store.loadSnapshot(ACCOUNT.id)).toEqual({ version: 0, snapshot: undefined, missing: new Set(), flaps: new Map() });
        expect(await store.deliveryCounts()).toEqual(new Map());
      });
    });

    describe('a steady poll writes only what changed', () => {
      it('10 level changes and 2 departures among 100,000 users write 12 user rows, not 100,000', async () => {
        const store = await open();
        const everyone = Array.from({ length: 100_000 }, (_, n) => riskUser(n));
        // The first poll writes everyone: which also shows that every row written is counted.
        const baseline = await harness.countWrites(store, async () => {
          expect(await store.commitPoll(pollCommit({ delta: delta({ upsertUsers: everyone, upsertBehaviors: [impTravel] }) }))).toBe(1);
        });
        expect(baseline).toBe(1 + 100_000 + 1); // the account, its users, its behavior

        const raised = Array.from({ length: 10 }, (_, i) => riskUser(i * 9_973 + 17, 'high'));
        const departed = [riskUser(4_242).user_id, riskUser(99_999).user_id];
        const events = raised.map((u, i) => userEvent(`evt-${i}`, u, 'low', 'high', T0 + 60_000));
        const steady = await harness.countWrites(store, async () => {
          const version = await store.commitPoll(
            pollCommit({
              expectedVersion: 1,
              polledAt: T0 + 60_000,
              delta: delta({ upsertUsers: raised, removeUserIds: departed }),
              events,
              deliveries: [planned('secops', events)],
            }),
          );
          expect(version).toBe(2);
        });
        expect(steady).toBe(1 + 12 + 10 + 1); // the account's version, 12 users, 10 events, 1 delivery

        const { snapshot } = await store.loadSnapshot(ACCOUNT.id);
        expect(snapshot?.userLevels.size).toBe(99_998);
        for (const u of raised) expect(snapshot?.userLevels.get(u.user_id)).toBe('high');
        for (const id of departed) expect(snapshot?.userLevels.has(id)).toBe(false);
        expect(snapshot?.userLevels.get(riskUser(50_000).user_id)).toBe('low');
      });
    });

    describe('loadUsers returns what was stored of users, for the events of those who left the summary', () => {
      it('returns every stored field of the users asked for, and nothing for ids it never stored', async () => {
        const store = await open();
        const quiet = riskUser(1, 'high', { last_event: null, event_count: 0 });
        // event_count is an integer >= 0 with no bound in the schema: past 2^31-1 too (up to 2^53, what JSON gives exactly).
        const odd = riskUser(2, 'medium', { name: "Zoë O'Brien <b>&", email: 'zoë+risk@example.com', event_count: 3_000_000_000 });
        await store.commitPoll(pollCommit({ delta: delta({ upsertUsers: [quiet, odd, riskUser(3)] }) }));
        expect(await store.loadUsers(ACCOUNT.id, [quiet.user_id, odd.user_id, riskUser(404).user_id])).toEqual(
          new Map([
            [quiet.user_id, quiet],
            [odd.user_id, odd],
          ]),
        );
        expect(await store.loadUsers(OTHER_ACCOUNT.id, [quiet.user_id])).toEqual(new Map());
        expect(await store.loadUsers(ACCOUNT.id, [])).toEqual(new Map());
      });

      it('returns the fields of the latest commit, and nothing for a user removed since', async () => {
        const store = await open();
        await store.commitPoll(pollCommit({ delta: delta({ upsertUsers: users3 }) }));
        const changed = riskUser(1, 'medium', { email: 'renamed@example.com', name: 'Renamed', event_count: 42, last_event: '2026-11-22T18:00:30Z' });
        await store.commitPoll(pollCommit({ expectedVersion: 1, polledAt: T0 + 60_000, delta: delta({ upsertUsers: [changed], removeUserIds: [riskUser(2).user_id] }) }));
        expect(
          await store.loadUsers(
            ACCOUNT.id,
            users3.map((u) => u.user_id),
          ),
        ).toEqual(
          new Map([
            [changed.user_id, changed],
            [users3[2]!.user_id, users3[2]!],
          ]),
        );
      });
    });

    describe('the outbox hands out due deliveries, and records what became of them', () => {
      const e1 = userEvent('evt-1', riskUser(1, 'high'), null, 'high');
      const e2 = behaviorEvent('evt-2', { ...highDlp, enabled: false }, 'behavior.disabled', { enabled: true, risk_level: 'medium' });
      const e3 = userEvent('evt-3', riskUser(3, 'medium'), 'low', 'medium', T0 + 60_000);

      /** Two polls: incidents gets one delivery per event, secops one group per poll. */
      async function twoPolls(store: StateStore): Promise<void> {
        await store.commitPoll(
          pollCommit({
            delta: delta({ upsertUsers: [riskUser(1, 'high')] }),
            events: [e1, e2],
            deliveries: [planned('incidents', [e1]), planned('secops', [e2, e1]), planned('incidents', [e2])],
          }),
        );
        await store.commitPoll(
          pollCommit({
            expectedVersion: 1,
            polledAt: T0 + 60_000,
            delta: delta({ upsertUsers: [riskUser(3, 'medium')] }),
            events: [e3],
            deliveries: [planned('incidents', [e3])],
          }),
        );
      }

      it("claims a sink's due deliveries oldest first, each with the full events it was planned with, in their order", async () => {
        const store = await open();
        await twoPolls(store);
        const incidents = await store.claimDue('incidents', T0 + 60_000, 10);
        expect(incidents.map((d) => d.events)).toEqual([[e1], [e2], [e3]]);
        expect(incidents.map((d) => d.id)).toEqual([...incidents.map((d) => d.id)].sort((a, b) => a - b));
        expect(incidents.map(({ sink, accountId, attempts, createdAt }) => ({ sink, accountId, attempts, createdAt }))).toEqual([
          { sink: 'incidents', accountId: ACCOUNT.id, attempts: 0, createdAt: T0 },
          { sink: 'incidents', accountId: ACCOUNT.id, attempts: 0, createdAt: T0 },
          { sink: 'incidents', accountId: ACCOUNT.id, attempts: 0, createdAt: T0 + 60_000 },
        ]);
        const secops = await store.claimDue('secops', T0 + 60_000, 10);
        expect(secops.map((d) => d.events)).toEqual([[e2, e1]]);
      });

      it('hands out no more than `limit`, the oldest first', async () => {
        const store = await open();
        await twoPolls(store);
        const now = T0 + 60_000;
        expect(eventIds(await store.claimDue('incidents', now, 2))).toEqual([['evt-1'], ['evt-2']]);
        expect(eventIds(await store.claimDue('incidents', now, 2))).toEqual([['evt-3']]);
        expect(await store.claimDue('incidents', now, 2)).toEqual([]);
      });

      it('does not hand out a delivery before it is due', async () => {
        const store = await open();
        await twoPolls(store);
        expect(eventIds(await store.claimDue('incidents', T0 + 59_999, 10))).toEqual([['evt-1'], ['evt-2']]);
        expect(await store.nextDueAt('incidents')).toBe(T0 + 60_000);
        expect(eventIds(await store.claimDue('incidents', T0 + 60_000, 10))).toEqual([['evt-3']]);
      });

      it('hides a claimed delivery from further claims until its lease runs out', async () => {
        const store = await open({ leaseMs: 1000 });
        await twoPolls(store);
        const [claimed] = await store.claimDue('secops', T0 + 60_000, 10);
        expect(claimed).toBeDefined();
        expect(await store.claimDue('secops', T0 + 60_999, 10)).toEqual([]);
        expect(await store.nextDueAt('secops')).toBe(T0 + 61_000);
        const again = await store.claimDue('secops', T0 + 61_000, 10);
        expect(again.map((d) => [d.id, d.attempts])).toEqual([[claimed!.id, 0]]);
        expect(again[0]!.events).toEqual(claimed!.events);
      });

      it('delivered: never handed out again', async () => {
        const store = await open({ leaseMs: 1000 });
        await twoPolls(store);
        const [delivery] = await store.claimDue('secops', T0, 10);
        await store.recordOutcomes([{ deliveryId: delivery!.id, outcome: { kind: 'delivered', at: T0 + 5 } }]);
        expect(await store.claimDue('secops', T0 + 48 * HOUR, 10)).toEqual([]);
        expect(await store.nextDueAt('secops')).toBeUndefined();
        expect((await store.deliveryCounts()).get('secops') ?? NOTHING_PENDING).toEqual(NOTHING_PENDING);
      });

      it('retry: handed out again at nextAttemptAt and not before, lease or no lease, with its attempts counted', async () => {
        const store = await open(); // the default lease (minutes) outlasts the retry: recording the outcome must end it
        await twoPolls(store);
        const [first] = await store.claimDue('secops', T0, 10);
        await store.recordOutcomes([{ deliveryId: first!.id, outcome: { kind: 'retry', at: T0 + 5, nextAttemptAt: T0 + 30_000, error: 'HTTP 503' } }]);
        expect(await store.claimDue('secops', T0 + 29_999, 10)).toEqual([]);
        expect(await store.nextDueAt('secops')).toBe(T0 + 30_000);
        const [second] = await store.claimDue('secops', T0 + 30_000, 10);
        expect([second?.id, second?.attempts]).toEqual([first!.id, 1]);
        expect(second!.events).toEqual(first!.events);
        await store.recordOutcomes([{ deliveryId: second!.id, outcome: { kind: 'retry', at: T0 + 30_005, nextAttemptAt: T0 + 90_000, error: 'timeout' } }]);
        const [third] = await store.claimDue('secops', T0 + 90_000, 10);
        expect([third?.id, third?.attempts]).toEqual([first!.id, 2]);
        expect((await store.deliveryCounts()).get('secops')).toEqual({ pending: 1, dead: 0 });
      });

      it('dead: kept and counted as dead-lettered, never handed out again', async () => {
        const store = await open({ leaseMs: 1000 });
        await twoPolls(store);
        const [first] = await store.claimDue('incidents', T0, 1);
        await store.recordOutcomes([{ deliveryId: first!.id, outcome: { kind: 'dead', at: T0 + 5, error: 'HTTP 404' } }]);
        expect((await store.deliveryCounts()).get('incidents')).toEqual({ pending: 2, dead: 1 });
        expect(eventIds(await store.claimDue('incidents', T0 + 48 * HOUR, 10))).toEqual([['evt-2'], ['evt-3']]);
      });

      it('recordOutcomes settles deliveries sent together, each as one alone would be: delivered, retry, dead', async () => {
        const store = await open({ leaseMs: 1000 });
        await twoPolls(store);
        // User 1 drops later: that delivery waits behind their rise (e1) until the rise is settled.
        const drop = userEvent('evt-4', riskUser(1, 'low'), 'high', 'low', T0 + 120_000);
        await store.commitPoll(pollCommit({ expectedVersion: 2, polledAt: T0 + 120_000, events: [drop], deliveries: [planned('incidents', [drop])] }));
        const now = T0 + 120_000;
        const [d1, d2, d3] = await store.claimDue('incidents', now, 10);
        expect(eventIds([d1!, d2!, d3!])).toEqual([['evt-1'], ['evt-2'], ['evt-3']]);
        const writes = await harness.countWrites(store, () =>
          store.recordOutcomes([
            { deliveryId: d1!.id, outcome: { kind: 'delivered', at: now + 1 } },
            { deliveryId: d2!.id, outcome: { kind: 'retry', at: now + 1, nextAttemptAt: now + 300_000, error: 'HTTP 503' } },
            { deliveryId: d3!.id, outcome: { kind: 'dead', at: now + 1, error: 'HTTP 404' } },
          ]),
        );
        expect(writes).toBe(3);
        expect((await store.deliveryCounts()).get('incidents')).toEqual({ pending: 2, dead: 1 });
        const rows = new Map((await store.listDeliveries({ sink: 'incidents' })).map((row) => [row.id, row]));
        expect(rows.has(d1!.id)).toBe(false);
        expect(rows.get(d2!.id)).toMatchObject({ state: 'pending', attempts: 1, lastError: 'HTTP 503', nextAttemptAt: now + 300_000 });
        expect(rows.get(d3!.id)).toMatchObject({ state: 'dead', attempts: 1, lastError: 'HTTP 404' });
        // The rise is delivered: the drop goes now. The retry waits for its time, leases or not.
        const [next] = await store.claimDue('incidents', now + 1, 10);
        expect(eventIds([next!])).toEqual([['evt-4']]);
        await store.recordOutcomes([{ deliveryId: next!.id, outcome: { kind: 'delivered', at: now + 2 } }]);
        expect(await store.claimDue('incidents', now + 299_999, 10)).toEqual([]);
        expect((await store.claimDue('incidents', now + 300_000, 10)).map((d) => [d.id, d.attempts])).toEqual([[d2!.id, 1]]);
        // Nothing to record: nothing written.
        expect(await harness.countWrites(store, () => store.recordOutcomes([]))).toBe(0);
      });

      it('recordOutcomes is one transaction: when one outcome cannot be written none is, and the same batch goes in once the store takes it', async () => {
        const store = await open({ leaseMs: 1000 });
        await twoPolls(store);
        const now = T0 + 60_000;
        const claimed = await store.claimDue('incidents', now, 10);
        expect(eventIds(claimed)).toEqual([['evt-1'], ['evt-2'], ['evt-3']]);
        const batch = claimed.map((d, i) => ({ deliveryId: d.id, outcome: i === 2 ? ({ kind: 'dead', at: now + 1, error: 'HTTP 400' } as const) : ({ kind: 'delivered', at: now + 1 } as const) }));
        // The last of the three cannot be written: the two before it, written first, are undone.
        const allow = await harness.refuseUpdatesOf(store, claimed[2]!.id);
        const { error, writes } = await refusal(store, () => store.recordOutcomes(batch));
        asStateError(store, error);
        expect(writes).toBe(0);
        expect((await store.listDeliveries({ sink: 'incidents' })).map((row) => [row.id, row.state, row.attempts])).toEqual(claimed.map((d) => [d.id, 'pending', 0]));
        await allow();
        await store.recordOutcomes(batch);
        expect((await store.deliveryCounts()).get('incidents')).toEqual({ pending: 0, dead: 1 });
        expect(await store.claimDue('incidents', now + 48 * HOUR, 10)).toEqual([]);
      });

      it("nextDueAt is the earliest time one of the sink's pending deliveries falls due", async () => {
        const store = await open({ leaseMs: 1000 });
        await twoPolls(store);
        expect(await store.nextDueAt('incidents')).toBe(T0);
        expect(await store.nextDueAt('console')).toBeUndefined();
        const [d1, d2] = await store.claimDue('incidents', T0, 2);
        await store.recordOutcomes([{ deliveryId: d1!.id, outcome: { kind: 'delivered', at: T0 + 1 } }]);
        await store.recordOutcomes([{ deliveryId: d2!.id, outcome: { kind: 'retry', at: T0 + 1, nextAttemptAt: T0 + 300_000, error: 'HTTP 429' } }]);
        expect(await store.nextDueAt('incidents')).toBe(T0 + 60_000);
        const [d3] = await store.claimDue('incidents', T0 + 60_000, 10);
        await store.recordOutcomes([{ deliveryId: d3!.id, outcome: { kind: 'dead', at: T0 + 60_001, error: 'HTTP 400' } }]);
        expect(await store.nextDueAt('incidents')).toBe(T0 + 300_000);
        const [last] = await store.claimDue('incidents', T0 + 300_000, 10);
        await store.recordOutcomes([{ deliveryId: last!.id, outcome: { kind: 'delivered', at: T0 + 300_001 } }]);
        expect(await store.nextDueAt('incidents')).toBeUndefined();
      });

      it('prune forgets delivered deliveries, then what is past the history: dead letters, and events nothing pending needs', async () => {
        const store = await open({ leaseMs: 1000 });
        await twoPolls(store);
        // incidents: e1 delivered, e2 dead, e3 pending; secops: [e2, e1] delivered.
        const [i1, i2] = await store.claimDue('incidents', T0, 2);
        await store.recordOutcomes([{ deliveryId: i1!.id, outcome: { kind: 'delivered', at: T0 + 1 } }]);
        await store.recordOutcomes([{ deliveryId: i2!.id, outcome: { kind: 'dead', at: T0 + 1, error: 'HTTP 400' } }]);
        const [s1] = await store.claimDue('secops', T0, 1);
        await store.recordOutcomes([{ deliveryId: s1!.id, outcome: { kind: 'delivered', at: T0 + 1 } }]);
        expect(await store.prune({ delivered: T0, history: T0 })).toEqual({ deliveries: 0, events: 0 }); // nothing is that old yet
        // Delivered ones go after their week; every event is still within the history, and the dead letter too.
        expect(await store.prune({ delivered: T0 + 120_000, history: T0 })).toEqual({ deliveries: 2, events: 0 });
        expect(await store.deliveryCounts()).toEqual(new Map([['incidents', { pending: 1, dead: 1 }]]));
        expect((await store.listEvents({ since: 0, limit: 10 })).map((r) => r.event.id).sort()).toEqual(['evt-1', 'evt-2', 'evt-3']);
        // Past the history: e1, which only delivered ones needed, goes; the dead letter is kept for the history from
        // when it died (T0 + 1), and e2 with it; then they go too. e3 is pending.
        expect(await store.prune({ delivered: T0 + 120_000, history: T0 + 1 })).toEqual({ deliveries: 0, events: 1 });
        expect(await store.prune({ delivered: T0 + 120_000, history: T0 + 2 })).toEqual({ deliveries: 1, events: 1 });
        expect(await store.deliveryCounts()).toEqual(new Map([['incidents', { pending: 1, dead: 0 }]]));
        const [pending] = await store.claimDue('incidents', T0 + 120_000, 10);
        expect(eventIds([pending!])).toEqual([['evt-3']]);

        // What was forgotten is gone: a delivery may no longer name e1.
        const forgotten = asStateError(store, await failureOf(() => store.commitPoll(pollCommit({ expectedVersion: 2, polledAt: T0 + 120_000, deliveries: [planned('console', [e1])] }))));
        expect(forgotten.message).toMatch(/names event evt-1, which is not stored/);
      });

      it('deliveryCounts gives pending and dead-lettered deliveries per sink', async () => {
        const store = await open({ leaseMs: 1000 });
        await twoPolls(store);
        await store.commitPoll(pollCommit({ expectedVersion: 2, polledAt: T0 + 120_000, deliveries: [planned('console', [e3])] }));
        expect(await store.deliveryCounts()).toEqual(
          new Map([
            ['incidents', { pending: 3, dead: 0 }],
            ['secops', { pending: 1, dead: 0 }],
            ['console', { pending: 1, dead: 0 }],
          ]),
        );
        const [i1, i2] = await store.claimDue('incidents', T0, 10);
        await store.recordOutcomes([{ deliveryId: i1!.id, outcome: { kind: 'dead', at: T0 + 1, error: 'HTTP 410' } }]);
        await store.recordOutcomes([{ deliveryId: i2!.id, outcome: { kind: 'delivered', at: T0 + 1 } }]);
        const [c1] = await store.claimDue('console', T0 + 120_000, 10);
        await store.recordOutcomes([{ deliveryId: c1!.id, outcome: { kind: 'delivered', at: T0 + 120_001 } }]);
        const counts = await store.deliveryCounts();
        expect(counts.get('incidents')).toEqual({ pending: 1, dead: 1 });
        expect(counts.get('secops')).toEqual({ pending: 1, dead: 0 });
        expect(counts.get('console') ?? NOTHING_PENDING).toEqual(NOTHING_PENDING);
      });
    });

    describe('a sink held back (holdSink) hands out nothing waiting before the hold ends, nor anything committed meanwhile', () => {
      const e1 = userEvent('evt-1', riskUser(1, 'high'), null, 'high');
      const e2 = userEvent('evt-2', riskUser(2, 'high'), 'low', 'high');

      /** secops: one delivery per event; incidents: one for both. */
      async function onePoll(store: StateStore): Promise<void> {
        await store.commitPoll(pollCommit({ events: [e1, e2], deliveries: [planned('secops', [e1]), planned('secops', [e2]), planned('incidents', [e1, e2])] }));
      }

      it('moves what waits to the end of the hold, in its order, returns that end, and leaves other sinks alone', async () => {
        const store = await open({ leaseMs: 1000 });
        await onePoll(store);
        expect(await store.holdSink('secops', T0 + 30_000, T0)).toBe(T0 + 30_000);
        expect(await store.claimDue('secops', T0 + 29_999, 10)).toEqual([]);
        expect(await store.nextDueAt('secops')).toBe(T0 + 30_000);
        expect(eventIds(await store.claimDue('incidents', T0, 10))).toEqual([['evt-1', 'evt-2']]);
        const released = await store.claimDue('secops', T0 + 30_000, 10);
        expect(eventIds(released)).toEqual([['evt-1'], ['evt-2']]);
        expect(released.map((d) => d.attempts)).toEqual([0, 0]);
      });

      it('keeps the latest end asked: a shorter hold neither shortens it nor is refused', async () => {
        const store = await open({ leaseMs: 1000 });
        await onePoll(store);
        expect(await store.holdSink('secops', T0 + 60_000, T0)).toBe(T0 + 60_000);
        expect(await store.holdSink('secops', T0 + 30_000, T0 + 1)).toBe(T0 + 60_000);
        expect(await store.nextDueAt('secops')).toBe(T0 + 60_000);
        expect(await store.claimDue('secops', T0 + 59_999, 10)).toEqual([]);
        expect(await store.holdSink('secops', T0 + 90_000, T0 + 2)).toBe(T0 + 90_000);
        expect(await store.nextDueAt('secops')).toBe(T0 + 90_000);
        expect(eventIds(await store.claimDue('secops', T0 + 90_000, 10))).toEqual([['evt-1'], ['evt-2']]);
      });

      it('lets the delivery in flight that asked for the hold, retried at its end, go first when it ends', async () => {
        const store = await open({ leaseMs: 1000 });
        await onePoll(store);
        const [inFlight] = await store.claimDue('secops', T0, 1);
        const until = await store.holdSink('secops', T0 + 30_000, T0 + 10);
        await store.recordOutcomes([{ deliveryId: inFlight!.id, outcome: { kind: 'retry', at: T0 + 10, nextAttemptAt: until, error: 'HTTP 503' } }]);
        expect(await store.claimDue('secops', T0 + 29_999, 10)).toEqual([]);
        const released = await store.claimDue('secops', T0 + 30_000, 10);
        expect(released.map((d) => [d.id, d.attempts])).toEqual([
          [inFlight!.id, 1],
          [expect.any(Number), 0],
        ]);
        expect(eventIds(released)).toEqual([['evt-1'], ['evt-2']]);
      });

      it('holds deliveries committed while the hold lasts, and not those committed after it ended', async () => {
        const store = await open({ leaseMs: 1000 });
        expect(await store.holdSink('secops', T0 + 30_000, T0)).toBe(T0 + 30_000); // nothing waits yet
        await store.commitPoll(pollCommit({ polledAt: T0 + 10_000, events: [e1], deliveries: [planned('secops', [e1]), planned('incidents', [e1])] }));
        expect(await store.nextDueAt('secops')).toBe(T0 + 30_000);
        expect(await store.claimDue('secops', T0 + 29_999, 10)).toEqual([]);
        expect(await store.nextDueAt('incidents')).toBe(T0 + 10_000);

        await store.commitPoll(pollCommit({ expectedVersion: 1, polledAt: T0 + 40_000, events: [e2], deliveries: [planned('secops', [e2])] }));
        const held = await store.claimDue('secops', T0 + 30_000, 10);
        expect(eventIds(held)).toEqual([['evt-1']]);
        await store.recordOutcomes([{ deliveryId: held[0]!.id, outcome: { kind: 'delivered', at: T0 + 30_001 } }]);
        expect(await store.nextDueAt('secops')).toBe(T0 + 40_000);
        expect(eventIds(await store.claimDue('secops', T0 + 40_000, 10))).toEqual([['evt-2']]);
      });
    });

    describe('one subject at a time: a delivery waits while an earlier one about the same user or behavior is pending', () => {
      // Two polls: user 1 rises, then drops (two deliveries about one subject); user 2 and a behavior are unrelated.
      const rise = userEvent('evt-rise', riskUser(1, 'high'), 'low', 'high');
      const other = userEvent('evt-other', riskUser(2, 'high'), null, 'high');
      const disabled = behaviorEvent('evt-off', { ...impTravel, enabled: false }, 'behavior.disabled', { enabled: true, risk_level: 'high' });
      const drop = userEvent('evt-drop', riskUser(1, 'low'), 'high', 'low', T0 + 60_000);
      const enabled = behaviorEvent('evt-on', impTravel, 'behavior.enabled', { enabled: false, risk_level: 'high' }, T0 + 60_000);
      const unrelated = userEvent('evt-new', riskUser(3, 'medium'), null, 'medium', T0 + 60_000);
      async function bothPolls(store: StateStore): Promise<void> {
        const first = [rise, other, disabled];
        await store.commitPoll(pollCommit({ events: first, deliveries: first.map((e) => planned('incidents', [e])) }));
        const second = [drop, enabled, unrelated];
        await store.commitPoll(pollCommit({ expectedVersion: 1, polledAt: T0 + 60_000, events: second, deliveries: second.map((e) => planned('incidents', [e])) }));
      }
      const now = T0 + 60_000;

      it('never hands out two deliveries of one subject together: the later waits until the earlier is delivered', async () => {
        const store = await open();
        await bothPolls(store);
        const first = await store.claimDue('incidents', now, 10);
        expect(eventIds(first)).toEqual([['evt-rise'], ['evt-other'], ['evt-off'], ['evt-new']]);
        // Nothing more while the rise and the disable are in flight.
        expect(await store.claimDue('incidents', now + 1, 10)).toEqual([]);
        for (const d of first.filter((d) => d.events[0]!.id !== 'evt-off')) await store.recordOutcomes([{ deliveryId: d.id, outcome: { kind: 'delivered', at: now } }]);
        expect(eventIds(await store.claimDue('incidents', now, 10))).toEqual([['evt-drop']]);
      });

      it('waits behind an earlier one that waits for a retry, and goes once that one is dead-lettered', async () => {
        const store = await open();
        await bothPolls(store);
        const [riseDelivery] = await store.claimDue('incidents', now, 1);
        await store.recordOutcomes([{ deliveryId: riseDelivery!.id, outcome: { kind: 'retry', at: now, nextAttemptAt: now + HOUR, error: 'HTTP 500' } }]);
        // Due, not in flight, not leased: the drop still waits for the rise.
        const meanwhile = eventIds(await store.claimDue('incidents', now, 10));
        expect(meanwhile).not.toContainEqual(['evt-drop']);
        expect(meanwhile).toEqual([['evt-other'], ['evt-off'], ['evt-new']]);
        const settle = async (claimed: readonly { id: number }[]) => {
          for (const d of claimed) await store.recordOutcomes([{ deliveryId: d.id, outcome: { kind: 'delivered', at: now } }]);
        };
        await settle(await store.claimDue('incidents', now + 6 * 60_000, 10)); // the three above, their lease over
        await settle(await store.claimDue('incidents', now + 6 * 60_000, 10)); // the enable, behind the disable
        // All that is left is the rise's retry and the drop behind it: the drop is not counted as due.
        expect(await store.nextDueAt('incidents')).toBe(now + HOUR);
        expect(await store.claimDue('incidents', now + 6 * 60_000, 10)).toEqual([]);
        const [riseAgain] = await store.claimDue('incidents', now + HOUR, 1);
        expect(riseAgain!.id).toBe(riseDelivery!.id);
        await store.recordOutcomes([{ deliveryId: riseAgain!.id, outcome: { kind: 'dead', at: now + HOUR, error: 'HTTP 400' } }]);
        expect(eventIds(await store.claimDue('incidents', now + HOUR, 10))).toEqual([['evt-drop']]);
      });

      it('keeps the order of a subject between sinks independent, and groups (one delivery, many subjects) by every subject they hold', async () => {
        const store = await open();
        await store.commitPoll(pollCommit({ events: [rise, other], deliveries: [planned('secops', [rise, other]), planned('incidents', [rise])] }));
        await store.commitPoll(pollCommit({ expectedVersion: 1, polledAt: now, events: [drop], deliveries: [planned('secops', [drop]), planned('incidents', [drop])] }));
        // incidents' rise is in flight: secops is another sink, its first delivery goes.
        const [incidentRise] = await store.claimDue('incidents', now, 10);
        expect(eventIds(await store.claimDue('secops', now, 10))).toEqual([['evt-rise', 'evt-other']]);
        expect(await store.claimDue('incidents', now, 10)).toEqual([]);
        await store.recordOutcomes([{ deliveryId: incidentRise!.id, outcome: { kind: 'delivered', at: now } }]);
        expect(eventIds(await store.claimDue('incidents', now, 10))).toEqual([['evt-drop']]);
      });

      it('keeps that order after close() and another process opening the same state', async () => {
        const store = await open();
        await bothPolls(store);
        const [riseDelivery] = await store.claimDue('incidents', now, 1);
        const again = await reopen(store);
        const claimed = eventIds(await again.claimDue('incidents', now + 10 * HOUR, 10));
        expect(claimed).not.toContainEqual(['evt-drop']);
        expect(claimed).toContainEqual(['evt-rise']);
        expect(riseDelivery).toBeDefined();
      });
    });

    describe('a store of this process alone leads every account it is asked about', () => {
      it('lead() of a fresh store returns every id asked, and only those', async () => {
        const store = await harness.open();
        const ids = [ACCOUNT.id, OTHER_ACCOUNT.id, 'a0d5e1c6b4f24c8f9e7d3b2a1c0f9e8d'];
        expect(await store.lead(ids)).toEqual(new Set(ids));
        expect(await store.lead([OTHER_ACCOUNT.id])).toEqual(new Set([OTHER_ACCOUNT.id]));
        expect(await store.lead([])).toEqual(new Set());
      });

      it('commits the polls of the accounts it leads', async () => {
        const store = await harness.open();
        expect(await store.lead(ACCOUNTS)).toEqual(new Set(ACCOUNTS));
        expect(await store.commitPoll(pollCommit({ delta: delta({ upsertUsers: users3 }) }))).toBe(1);
        expect(await store.commitPoll(pollCommit({ accountId: OTHER_ACCOUNT.id, delta: delta({ upsertUsers: users3 }) }))).toBe(1);
        expect(await store.lead(ACCOUNTS)).toEqual(new Set(ACCOUNTS));
        expect(await store.commitPoll(pollCommit({ expectedVersion: 1, polledAt: T0 + 60_000 }))).toBe(2);
      });

      it('leads them all again once reopened after close()', async () => {
        const first = await harness.open();
        expect(await first.lead(ACCOUNTS)).toEqual(new Set(ACCOUNTS));
        const second = await harness.reopen(first);
        expect(await second.lead(ACCOUNTS)).toEqual(new Set(ACCOUNTS));
      });

      it('says whether it shares the store: replica and leadershipCheckMs are as expected of a store alone', async () => {
        const store = await harness.open();
        expect({ replica: store.replica, leadershipCheckMs: store.leadershipCheckMs }).toEqual(harness.alone);
        if (store.replica !== undefined) expect(store.replica).toMatch(/^\S[^\n]*$/);
        if (store.leadershipCheckMs !== undefined) expect(store.leadershipCheckMs).toBeGreaterThan(0);
      });
    });

    describe('silences (SPEC §8): decided at commit, in its transaction; recorded, counted, sent nowhere', () => {
      const alice = riskUser(1, 'high', { email: 'Alice@Example.com' });
      const bob = riskUser(2, 'high');
      const rise = (id: string, user = alice, at = T0) => userEvent(id, user, 'low', 'high', at);
      const silence = (fields: Partial<Silence> = {}): Silence => ({
        id: 'sil_0001',
        user: 'alice@example.com',
        behavior: null,
        accountId: null,
        startsAt: T0 - HOUR,
        endsAt: T0 + HOUR,
        reason: 'under investigation',
        by: 'ana@laptop',
        ...fields,
      });

      it('a silenced user’s events are stored with the silence id and left out of every delivery; others go on', async () => {
        const store = await open();
        await store.addSilence(silence());
        const [a, b] = [rise('evt-a'), rise('evt-b', bob)];
        const disabled = behaviorEvent('evt-c', behavior('imp_travel', { enabled: false }), 'behavior.disabled', { enabled: true, risk_level: 'medium' });
        await store.commitPoll(
          pollCommit({
            delta: delta({ upsertUsers: [alice, bob] }),
            events: [a, b, disabled],
            deliveries: [planned('secops', [a, b, disabled]), planned('incidents', [a]), planned('incidents', [b])],
          }),
        );
        expect(eventIds(await store.claimDue('secops', T0, 10))).toEqual([['evt-b', 'evt-c']]);
        expect(eventIds(await store.claimDue('incidents', T0, 10))).toEqual([['evt-b']]);
        const recorded = await store.listEvents({ since: 0, limit: 10 });
        expect(Object.fromEntries(recorded.map((r) => [r.event.id, r.silenced]))).toEqual({ 'evt-a': 'sil_0001', 'evt-b': null, 'evt-c': null });
      });

      it('matches a user by id too, a behavior by id, and only in its account when it names one', async () => {
        const store = await open();
        await store.addSilence(silence({ id: 'sil_user', user: bob.user_id }));
        await store.addSilence(silence({ id: 'sil_beh', user: null, behavior: 'imp_travel' }));
        await store.addSilence(silence({ id: 'sil_other', user: 'alice@example.com', accountId: OTHER_ACCOUNT.id }));
        const events = [rise('evt-a'), rise('evt-b', bob), behaviorEvent('evt-c', behavior('imp_travel'), 'behavior.enabled', { enabled: false, risk_level: 'medium' })];
        await store.commitPoll(pollCommit({ events, deliveries: [planned('secops', events)] }));
        expect(eventIds(await store.claimDue('secops', T0, 10))).toEqual([['evt-a']]);
        const silenced = Object.fromEntries((await store.listEvents({ since: 0, limit: 10 })).map((r) => [r.event.id, r.silenced]));
        expect(silenced).toEqual({ 'evt-a': null, 'evt-b': 'sil_user', 'evt-c': 'sil_beh' });
      });

      it('a delivery whose every event is silenced is not made; an ended silence mutes nothing and replays nothing', async () => {
        const store = await open();
        await store.addSilence(silence({ endsAt: T0 + 60_000 }));
        const first = rise('evt-1');
        await store.commitPoll(pollCommit({ events: [first], deliveries: [planned('incidents', [first])] }));
        expect(await store.deliveryCounts()).toEqual(new Map());
        const later = userEvent('evt-2', alice, 'high', 'low', T0 + 60_000);
        await store.commitPoll(pollCommit({ expectedVersion: 1, polledAt: T0 + 60_000, events: [later], deliveries: [planned('incidents', [later])] }));
        expect(eventIds(await store.claimDue('incidents', T0 + 60_000, 10))).toEqual([['evt-2']]);
      });

      it('a delivery that closes an incident is not held back: the incident was opened before the silence', async () => {
        const store = await open();
        await store.addSilence(silence());
        const drop = userEvent('evt-drop', riskUser(1, 'low', { email: 'Alice@Example.com' }), 'high', 'low');
        await store.commitPoll(
          pollCommit({ events: [drop], deliveries: [planned('secops', [drop]), { ...planned('incidents', [drop]), incident: { action: 'close', key: 'riskwatch/x', credentialId: 'cred-1' } }] }),
        );
        expect(eventIds(await store.claimDue('secops', T0, 10))).toEqual([]);
        expect(eventIds(await store.claimDue('incidents', T0, 10))).toEqual([['evt-drop']]);
        expect((await store.listEvents({ since: 0, limit: 10 })).map((r) => r.silenced)).toEqual(['sil_0001']);
      });

      it('lists the active silences, or all; expire ends an active one once', async () => {
        const store = await open();
        await store.addSilence(silence({ id: 'sil_old', startsAt: T0 - 3 * HOUR, endsAt: T0 - HOUR }));
        await store.addSilence(silence({ id: 'sil_now' }));
        expect((await store.listSilences({ all: false, now: T0 })).map((x) => x.id)).toEqual(['sil_now']);
        expect(await store.listSilences({ all: true, now: T0 })).toEqual([silence({ id: 'sil_now' }), silence({ id: 'sil_old', startsAt: T0 - 3 * HOUR, endsAt: T0 - HOUR })]);
        expect(await store.expireSilence('sil_now', T0 + 1)).toBe(true);
        expect(await store.expireSilence('sil_now', T0 + 2)).toBe(false);
        expect(await store.expireSilence('sil_nope', T0 + 2)).toBe(false);
        expect(await store.listSilences({ all: false, now: T0 + 2 })).toEqual([]);
        expect((await store.status(T0 + 2)).silences).toBe(0);
      });

      it('a user id is matched in any case: the silence and the events filter are normalised as the client stores ids', async () => {
        const store = await open();
        const user = riskUser(5, 'high', { user_id: '182bd5e5-6e1a-4fe4-a799-aa6d9a6ab26e' });
        await store.addSilence(silence({ user: '182BD5E5-6E1A-4FE4-A799-AA6D9A6AB26E' }));
        const event = rise('evt-up', user);
        await store.commitPoll(pollCommit({ events: [event], deliveries: [planned('secops', [event])] }));
        expect(await store.deliveryCounts()).toEqual(new Map());
        expect((await store.listEvents({ since: 0, limit: 10, user: '182BD5E5-6E1A-4FE4-A799-AA6D9A6AB26E' })).map((r) => [r.event.id, r.silenced])).toEqual([['evt-up', 'sil_0001']]);
      });

      it('a silence whose stored end is past what a Date holds mutes nothing, is skipped with one warning, never stops a poll, and can still be ended', async () => {
        const warnings: string[] = [];
        const store = await open({ warn: (message) => warnings.push(message) });
        // What `silence add --for 999999999d` stored before it was bounded: 8.64e16 ms, past a double's safe integers.
        await store.addSilence(silence({ id: 'sil_huge', endsAt: 86_400_000_000_000_000 }));
        await store.addSilence(silence({ id: 'sil_ok', user: null, behavior: 'imp_travel' }));
        const [up, disabled] = [rise('evt-a'), behaviorEvent('evt-b', behavior('imp_travel', { enabled: false }), 'behavior.disabled', { enabled: true, risk_level: 'medium' })];
        await store.commitPoll(pollCommit({ events: [up, disabled], deliveries: [planned('secops', [up, disabled])] }));
        expect(eventIds(await store.claimDue('secops', T0, 10))).toEqual([['evt-a']]);
        await store.commitPoll(pollCommit({ expectedVersion: 1, polledAt: T0 + 1, events: [rise('evt-c', alice, T0 + 1)] }));
        expect((await store.listSilences({ all: true, now: T0 })).map((s) => s.id)).toEqual(['sil_ok']);
        expect(warnings).toEqual([
          expect.stringMatching(/^silence sil_huge: its stored ends_at \(86400000000000000\) is not a time, so it mutes nothing; end it with riskwatch silence expire sil_huge$/),
        ]);
        expect(await store.expireSilence('sil_huge', T0 + 2)).toBe(true);
        expect((await store.listSilences({ all: true, now: T0 + 2 })).map((s) => s.id)).toEqual(['sil_huge', 'sil_ok']);
      });
    });

    describe('flapping (SPEC §9): each user’s recent changes are committed with the poll and read back with the snapshot', () => {
      const state = (flapping: boolean, n: number): FlapState => ({
        changes: [{ at: T0 - 1000, from: 'low', to: 'high' }],
        flapping: flapping ? { lowest: 'low', highest: 'high' } : null,
        user: { user_id: riskUser(n).user_id, email: riskUser(n).email, name: riskUser(n).name, event_count: 1, last_event: null },
      });
      it('upserts and forgets states in the commit; users and status say who is flapping', async () => {
        const store = await open();
        const [a, b] = [riskUser(1, 'high'), riskUser(2, 'low')];
        await store.commitPoll(
          pollCommit({
            delta: delta({ upsertUsers: [a, b] }),
            flaps: {
              upsert: new Map([
                [a.user_id, state(true, 1)],
                [b.user_id, state(false, 2)],
              ]),
              remove: [],
            },
          }),
        );
        expect((await store.loadSnapshot(ACCOUNT.id)).flaps).toEqual(
          new Map([
            [a.user_id, state(true, 1)],
            [b.user_id, state(false, 2)],
          ]),
        );
        expect((await store.listUsers({})).map((u) => [u.userId, u.flapping])).toEqual([
          [a.user_id, true],
          [b.user_id, false],
        ]);
        expect((await store.status(T0)).accounts.find((x) => x.id === ACCOUNT.id)?.flapping).toBe(1);
        await store.commitPoll(pollCommit({ expectedVersion: 1, polledAt: T0 + 1, flaps: { upsert: new Map(), remove: [a.user_id] } }));
        const reopened = await harness.reopen(store);
        expect((await reopened.loadSnapshot(ACCOUNT.id)).flaps).toEqual(new Map([[b.user_id, state(false, 2)]]));
        expect((await reopened.status(T0)).accounts.find((x) => x.id === ACCOUNT.id)?.flapping).toBe(0);
      });

      it('a state refused by a stale commit is not stored: it is decided with the poll, under its version', async () => {
        const store = await open();
        await store.commitPoll(pollCommit({}));
        await failureOf(() => store.commitPoll(pollCommit({ expectedVersion: 0, flaps: { upsert: new Map([['u', state(true, 1)]]), remove: [] } })));
        expect((await store.loadSnapshot(ACCOUNT.id)).flaps).toEqual(new Map());
      });
    });

    describe('digests (SPEC §9): each sink’s last slot moves on once, with its event and delivery', () => {
      const digest = (slot: number, sink = 'daily') =>
        ({
          id: `digest/${sink}/${new Date(slot).toISOString()}`,
          type: 'digest',
          timestamp: new Date(slot).toISOString(),
          data: { sink, min_level: 'high', since: new Date(slot - HOUR).toISOString(), accounts: [] },
        }) as const;
      const delivery = (slot: number, sink = 'daily') => ({ sink, accountId: '*', eventIds: [digest(slot, sink).id], subjects: [`digest/${sink}`] });

      it('a first look records the slot only; the next slot is queued once, whoever asks twice; the delivery carries the digest', async () => {
        const store = await open();
        expect(await store.lastDigest('daily')).toBeUndefined();
        expect(await store.commitDigest({ sink: 'daily', at: T0, slot: T0, previous: undefined })).toBe(true);
        expect(await store.commitDigest({ sink: 'daily', at: T0, slot: T0, previous: undefined })).toBe(false);
        expect(await store.lastDigest('daily')).toBe(T0);
        expect(await store.deliveryCounts()).toEqual(new Map());
        const next = T0 + HOUR;
        expect(await store.commitDigest({ sink: 'daily', at: next + 5, slot: next, previous: T0, event: digest(next), delivery: delivery(next) })).toBe(true);
        // A replica that read the same last slot: refused, nothing written twice.
        expect(await store.commitDigest({ sink: 'daily', at: next + 6, slot: next, previous: T0, event: digest(next), delivery: delivery(next) })).toBe(false);
        expect(await store.lastDigest('daily')).toBe(next);
        const [claimed, ...more] = await store.claimDue('daily', next + 5, 10);
        expect(more).toEqual([]);
        expect(claimed).toMatchObject({ accountId: '*', events: [], digest: digest(next), createdAt: next + 5 });
        // Not a change: `events` leaves it out.
        expect(await store.listEvents({ since: 0, limit: 10 })).toEqual([]);
      });

      it('digestFacts: per account, users at min_level or above (highest first, limited), their count, and the changes since', async () => {
        const store = await open();
        const users = [riskUser(1, 'high'), riskUser(2, 'medium'), riskUser(3, 'low'), riskUser(4, 'high')];
        const up = userEvent('evt-up', users[0]!, 'low', 'high', T0 + 10);
        await store.commitPoll(pollCommit({ polledAt: T0 + 10, delta: delta({ upsertUsers: users }), events: [up] }));
        const facts = await store.digestFacts({ accountIds: [ACCOUNT.id, OTHER_ACCOUNT.id], minLevel: 'medium', since: T0, until: T0 + 10, limit: 2 });
        expect(facts.get(ACCOUNT.id)).toEqual({
          users: [expect.objectContaining({ userId: users[0]!.user_id, level: 'high', since: T0 + 10 }), expect.objectContaining({ userId: users[3]!.user_id, level: 'high', since: null })],
          total: 3,
          changes: 1,
        });
        expect(facts.get(OTHER_ACCOUNT.id)).toEqual({ users: [], total: 0, changes: 0 });
        expect((await store.digestFacts({ accountIds: [ACCOUNT.id], minLevel: 'high', since: T0 + 10, until: T0 + HOUR, limit: 10 })).get(ACCOUNT.id)).toMatchObject({ total: 2, changes: 0 });
        // Up to the slot, not after it: the next digest counts what came later.
        expect((await store.digestFacts({ accountIds: [ACCOUNT.id], minLevel: 'high', since: T0, until: T0 + 9, limit: 10 })).get(ACCOUNT.id)).toMatchObject({ changes: 0 });
      });
    });

    describe('incidents: what sinks opened and riskwatch has not closed', () => {
      const alice = riskUser(1, 'high');
      const KEY = `riskwatch/${ACCOUNT.id}/user/${alice.user_id}`;
      const SUBJECT = `${ACCOUNT.id}/user/${alice.user_id}`;
      const trigger = (event: RiskEvent, credentialId = 'cred-1') => ({ ...planned('pd', [event]), incident: { action: 'open' as const, key: KEY, credentialId } });
      const resolve = (event: RiskEvent) => ({ ...planned('pd', [event]), incident: { action: 'close' as const, key: KEY, credentialId: 'cred-1' } });
      const rise = (id: string, at = T0) => userEvent(id, alice, 'low', 'high', at);
      const drop = (id: string, at = T0) => userEvent(id, riskUser(1, 'low'), 'high', 'low', at);
      const settle = async (store: StateStore, sink: string, kind: 'delivered' | 'dead', at: number) => {
        const claimed = await store.claimDue(sink, at, 10);
        await store.recordOutcomes(claimed.map((d) => ({ deliveryId: d.id, outcome: kind === 'dead' ? { kind, at, error: 'HTTP 400' } : { kind, at } })));
        return claimed;
      };

      it('a trigger opens one (its key, credential, account, subject, event, delivery, when), its close forgets it, a silenced trigger opens nothing', async () => {
        const store = await open({ leaseMs: 1000 });
        const up = rise('evt-up');
        await store.commitPoll(pollCommit({ events: [up], deliveries: [trigger(up)] }));
        const [d] = await store.listDeliveries({ sink: 'pd' });
        const opened = { sink: 'pd', key: KEY, credentialId: 'cred-1', accountId: ACCOUNT.id, subject: SUBJECT, eventId: 'evt-up', deliveryId: d!.id, openedAt: T0 };
        expect(await store.listIncidents({})).toEqual([{ ...opened, trigger: 'pending' }]);
        expect(await store.listIncidents({ sink: 'other' })).toEqual([]);
        const [claimed] = await settle(store, 'pd', 'delivered', T0 + 1);
        expect(claimed!.incident).toEqual({ action: 'open', key: KEY });
        expect(await store.listIncidents({ sink: 'pd' })).toEqual([{ ...opened, trigger: 'delivered' }]);

        const down = drop('evt-down', T0 + 2);
        await store.commitPoll(pollCommit({ expectedVersion: 1, polledAt: T0 + 2, events: [down], deliveries: [resolve(down)] }));
        expect(await store.listIncidents({})).toEqual([]);

        await store.addSilence({ id: 'sil_1', user: alice.email, behavior: null, accountId: null, startsAt: T0, endsAt: T0 + HOUR, reason: 'x', by: 'y' });
        const again = rise('evt-again', T0 + 3);
        await store.commitPoll(pollCommit({ expectedVersion: 2, polledAt: T0 + 3, events: [again], deliveries: [trigger(again)] }));
        expect(await store.listIncidents({})).toEqual([]);
      });

      it('retireIncidents queues its close (a retire of the opening event, to the sink named) and forgets it, once however often asked; reopen opens it again under the new key', async () => {
        const store = await open({ leaseMs: 1000 });
        const up = rise('evt-up');
        await store.commitPoll(pollCommit({ events: [up], deliveries: [trigger(up)] }));
        await settle(store, 'pd', 'delivered', T0 + 1);
        const [incident] = await store.listIncidents({});
        const change = { incident: incident!, close: { sink: 'pd@cred-1', note: "sink pd's routing key changed" }, reopen: { credentialId: 'cred-2' } };
        expect(await store.retireIncidents([change], T0 + 5)).toBe(1);
        expect(await store.retireIncidents([change], T0 + 6)).toBe(0);
        const [close] = await store.claimDue('pd@cred-1', T0 + 5, 10);
        expect(close).toMatchObject({ accountId: ACCOUNT.id, incident: { action: 'retire', key: KEY, note: "sink pd's routing key changed" } });
        expect(close!.events.map((e) => e.id)).toEqual(['evt-up']);
        const [reopened] = await store.claimDue('pd', T0 + 5, 10);
        expect(reopened).toMatchObject({ incident: { action: 'open', key: KEY } });
        expect(await store.listIncidents({})).toEqual([
          { sink: 'pd', key: KEY, credentialId: 'cred-2', accountId: ACCOUNT.id, subject: SUBJECT, eventId: 'evt-up', deliveryId: reopened!.id, openedAt: T0 + 5, trigger: 'pending' },
        ]);
        // Closed for good (a raised min_level): no reopen, nothing left open.
        const [moved] = await store.listIncidents({});
        expect(await store.retireIncidents([{ incident: moved!, close: { sink: 'pd', note: 'below min_level' } }], T0 + 7)).toBe(1);
        expect(await store.listIncidents({})).toEqual([]);
      });

      it('a dead trigger retried after its incident was closed is dropped, not sent; one whose incident is still open goes again', async () => {
        const store = await open({ leaseMs: 1000 });
        const up = rise('evt-up');
        await store.commitPoll(pollCommit({ events: [up], deliveries: [trigger(up)] }));
        await settle(store, 'pd', 'dead', T0 + 1);
        const down = drop('evt-down', T0 + 2);
        await store.commitPoll(pollCommit({ expectedVersion: 1, polledAt: T0 + 2, events: [down], deliveries: [resolve(down)] }));
        await settle(store, 'pd', 'delivered', T0 + 3);
        expect(await store.retryDeliveries({ sink: 'pd' }, T0 + 4)).toEqual({ revived: 0, dropped: 1 });
        expect(await store.listDeliveries({ sink: 'pd' })).toEqual([]);

        const upAgain = rise('evt-up-again', T0 + 5);
        await store.commitPoll(pollCommit({ expectedVersion: 2, polledAt: T0 + 5, events: [upAgain], deliveries: [trigger(upAgain)] }));
        const [dead] = await settle(store, 'pd', 'dead', T0 + 6);
        expect(await store.retryDeliveries({ ids: [dead!.id] }, T0 + 7)).toEqual({ revived: 1, dropped: 0 });
        expect(eventIds(await store.claimDue('pd', T0 + 7, 10))).toEqual([['evt-up-again']]);
      });

      it('a dead close retried after a later trigger opened the incident again is dropped: it would close that one', async () => {
        const store = await open({ leaseMs: 1000 });
        const up = rise('evt-up');
        await store.commitPoll(pollCommit({ events: [up], deliveries: [trigger(up)] }));
        await settle(store, 'pd', 'delivered', T0 + 1);
        const down = drop('evt-down', T0 + 2);
        await store.commitPoll(pollCommit({ expectedVersion: 1, polledAt: T0 + 2, events: [down], deliveries: [resolve(down)] }));
        await settle(store, 'pd', 'dead', T0 + 3);
        const again = rise('evt-again', T0 + 4);
        await store.commitPoll(pollCommit({ expectedVersion: 2, polledAt: T0 + 4, events: [again], deliveries: [trigger(again)] }));
        await settle(store, 'pd', 'delivered', T0 + 5);
        expect(await store.retryDeliveries({ sink: 'pd' }, T0 + 6)).toEqual({ revived: 0, dropped: 1 });
        expect(await store.listIncidents({})).toMatchObject([{ eventId: 'evt-again' }]);
      });

      it('moving a sink whose incident the new sink has open too keeps the new sink’s, and fails on nothing', async () => {
        const store = await open({ leaseMs: 1000 });
        const up = rise('evt-up');
        await store.commitPoll(pollCommit({ events: [up], deliveries: [trigger(up)] }));
        const again = rise('evt-again', T0 + 1);
        await store.commitPoll(pollCommit({ expectedVersion: 1, polledAt: T0 + 1, events: [again], deliveries: [{ ...trigger(again), sink: 'pd2' }] }));
        expect(await store.moveDeliveries('pd', 'pd2', T0 + 2)).toEqual({ revived: 1, dropped: 0 });
        expect((await store.listIncidents({})).map((i) => [i.sink, i.eventId])).toEqual([['pd2', 'evt-again']]);
      });

      it('the event that opened an incident still open outlives the history: its close is made from it', async () => {
        const store = await open({ leaseMs: 1000 });
        const up = rise('evt-up');
        const other = userEvent('evt-other', riskUser(2, 'high'), null, 'high');
        await store.commitPoll(pollCommit({ events: [up, other], deliveries: [trigger(up), planned('hook', [other])] }));
        await settle(store, 'pd', 'delivered', T0 + 1);
        await settle(store, 'hook', 'delivered', T0 + 1);
        expect(await store.prune({ delivered: T0 + HOUR, history: T0 + HOUR })).toEqual({ deliveries: 2, events: 1 });
        expect((await store.listEvents({ since: 0, limit: 10 })).map((r) => r.event.id)).toEqual(['evt-up']);
      });

      it('an outcome for a claim an operator moved since is not recorded: the delivery stays pending for its new sink', async () => {
        const store = await open({ leaseMs: 1000 });
        const up = rise('evt-up');
        await store.commitPoll(pollCommit({ events: [up], deliveries: [planned('old', [up])] }));
        const [claimed] = await store.claimDue('old', T0, 10);
        expect(await store.moveDeliveries('old', 'new', T0 + 1)).toEqual({ revived: 1, dropped: 0 });
        await store.recordOutcomes([{ deliveryId: claimed!.id, outcome: { kind: 'delivered', at: T0 + 2 } }]);
        expect((await store.listDeliveries({})).map((d) => [d.sink, d.state])).toEqual([['new', 'pending']]);
        expect(eventIds(await store.claimDue('new', T0 + 2, 10))).toEqual([['evt-up']]);
      });
    });

    describe('history: users with since, events by user, account and type, newest first', () => {
      it('lists users highest level first, with the time of the event that brought them there', async () => {
        const store = await open();
        const u = [riskUser(1, 'low'), riskUser(2, 'high'), riskUser(3, 'medium', { email: 'a3@example.com' })];
        await store.commitPoll(pollCommit({ delta: delta({ upsertUsers: u }) }));
        const up = userEvent('evt-up', riskUser(2, 'high'), 'low', 'high', T0 + 60_000);
        await store.commitPoll(pollCommit({ expectedVersion: 1, polledAt: T0 + 60_000, events: [up] }));
        await store.commitPoll(pollCommit({ accountId: OTHER_ACCOUNT.id, delta: delta({ upsertUsers: [riskUser(9, 'high')] }) }));
        const rows = await store.listUsers({});
        expect(rows.map((r) => [r.accountId === ACCOUNT.id ? 'prod' : 'other', r.email, r.level, r.since])).toEqual([
          ['prod', 'user2@example.com', 'high', T0 + 60_000],
          ['other', 'user9@example.com', 'high', null],
          ['prod', 'a3@example.com', 'medium', null],
          ['prod', 'user1@example.com', 'low', null],
        ]);
        expect((await store.listUsers({ accountId: ACCOUNT.id, level: 'high' })).map((r) => r.userId)).toEqual([riskUser(2).user_id]);
        expect(await store.listUsers({ accountId: OTHER_ACCOUNT.id, level: 'low' })).toEqual([]);
      });

      it('finds events since a time, by account, by user email in any case or id, by type, newest first, up to a limit', async () => {
        const store = await open();
        const alice = riskUser(1, 'high', { email: 'Alice@Example.com' });
        const events = [
          userEvent('evt-1', alice, null, 'low', T0),
          userEvent('evt-2', alice, 'low', 'high', T0 + 60_000),
          userEvent('evt-3', riskUser(2), null, 'low', T0 + 60_000),
          behaviorEvent('evt-4', behavior('imp_travel'), 'behavior.added', null, T0 + 120_000),
        ];
        await store.commitPoll(pollCommit({ events: [events[0]!] }));
        await store.commitPoll(pollCommit({ expectedVersion: 1, polledAt: T0 + 60_000, events: [events[1]!, events[2]!] }));
        await store.commitPoll(pollCommit({ expectedVersion: 2, polledAt: T0 + 120_000, events: [events[3]!] }));
        const ids = async (query: Partial<EventQuery>) => (await store.listEvents({ since: 0, limit: 100, ...query })).map((r) => r.event.id);
        expect(await ids({})).toEqual(['evt-4', 'evt-2', 'evt-3', 'evt-1']);
        expect(await ids({ user: 'ALICE@example.com' })).toEqual(['evt-2', 'evt-1']);
        expect(await ids({ user: alice.user_id })).toEqual(['evt-2', 'evt-1']);
        expect(await ids({ since: T0 + 60_000 })).toEqual(['evt-4', 'evt-2', 'evt-3']);
        expect(await ids({ type: 'user.risk_level_raised', limit: 2 })).toEqual(['evt-2', 'evt-3']);
        expect(await ids({ accountId: OTHER_ACCOUNT.id })).toEqual([]);
        expect((await store.listEvents({ since: 0, limit: 1 }))[0]).toEqual({ event: events[3], silenced: null });
      });
    });

    describe('dead letters: listed with their error, retried under their old ids', () => {
      const e1 = userEvent('evt-1', riskUser(1, 'high'), null, 'high');
      const e2 = userEvent('evt-2', riskUser(1, 'high'), 'high', 'low', T0 + 1);

      it('lists pending and dead deliveries; retry makes the dead pending, due now, with a fresh start, in its subject’s order', async () => {
        const store = await open({ leaseMs: 1000 });
        await store.commitPoll(pollCommit({ events: [e1, e2], deliveries: [planned('hook', [e1]), planned('hook', [e2]), planned('slack', [e1, e2])] }));
        const [d1] = await store.claimDue('hook', T0, 10);
        await store.recordOutcomes([{ deliveryId: d1!.id, outcome: { kind: 'dead', at: T0 + 5, error: 'HTTP 410 (permanent): "gone"' } }]);
        const listed = await store.listDeliveries({});
        expect(listed.map(({ sink, state, eventIds: ids, types, attempts, lastError }) => ({ sink, state, ids, types, attempts, lastError }))).toEqual([
          { sink: 'hook', state: 'dead', ids: ['evt-1'], types: ['user.risk_level_raised'], attempts: 1, lastError: 'HTTP 410 (permanent): "gone"' },
          { sink: 'hook', state: 'pending', ids: ['evt-2'], types: ['user.risk_level_lowered'], attempts: 0, lastError: null },
          { sink: 'slack', state: 'pending', ids: ['evt-1', 'evt-2'], types: ['user.risk_level_raised', 'user.risk_level_lowered'], attempts: 0, lastError: null },
        ]);
        expect((await store.listDeliveries({ state: 'dead' })).map((d) => d.id)).toEqual([d1!.id]);
        expect(await store.listDeliveries({ sink: 'nowhere' })).toEqual([]);

        expect(await store.retryDeliveries({ ids: [d1!.id, 999_999] }, T0 + HOUR)).toEqual({ revived: 1, dropped: 0 });
        expect(await store.retryDeliveries({ sink: 'hook' }, T0 + HOUR)).toEqual({ revived: 0, dropped: 0 });
        const [again] = await store.listDeliveries({ sink: 'hook' });
        // It keeps when it was made; its max age counts from the retry.
        expect(again).toMatchObject({ id: d1!.id, state: 'pending', attempts: 0, nextAttemptAt: T0 + HOUR, createdAt: T0 });
        // The drop (evt-2) was sent meanwhile? No: it waits behind the retried rise of the same user, which goes first.
        const claimed = await store.claimDue('hook', T0 + HOUR, 10);
        expect(eventIds(claimed)).toEqual([['evt-1']]);
        expect(claimed[0]).toMatchObject({ id: d1!.id, createdAt: T0, since: T0 + HOUR });
      });

      it('retry by sink takes every dead letter of it, and none of another', async () => {
        const store = await open({ leaseMs: 1000 });
        await store.commitPoll(pollCommit({ events: [e1], deliveries: [planned('hook', [e1]), planned('slack', [e1])] }));
        for (const sink of ['hook', 'slack']) {
          const [d] = await store.claimDue(sink, T0, 1);
          await store.recordOutcomes([{ deliveryId: d!.id, outcome: { kind: 'dead', at: T0 + 1, error: 'HTTP 400' } }]);
        }
        expect(await store.retryDeliveries({ sink: 'hook' }, T0 + 2)).toEqual({ revived: 1, dropped: 0 });
        expect((await store.listDeliveries({ state: 'dead' })).map((d) => d.sink)).toEqual(['slack']);
      });

      it("move hands a sink's pending and dead deliveries to another, pending and due, under their ids, each behind its subject's earlier ones", async () => {
        const store = await open({ leaseMs: 1000 });
        await store.commitPoll(pollCommit({ events: [e1, e2], deliveries: [planned('old', [e1]), planned('old', [e2]), planned('slack', [e1])] }));
        const [d1] = await store.claimDue('old', T0, 1);
        await store.recordOutcomes([{ deliveryId: d1!.id, outcome: { kind: 'dead', at: T0 + 1, error: 'HTTP 400' } }]);
        // The new sink already has a later delivery of the same user: it waits behind the moved ones.
        const e3 = userEvent('evt-3', riskUser(1, 'high'), 'low', 'high', T0 + 2);
        await store.commitPoll(pollCommit({ expectedVersion: 1, polledAt: T0 + 2, events: [e3], deliveries: [planned('new', [e3])] }));
        expect(await store.moveDeliveries('old', 'new', T0 + 3)).toEqual({ revived: 2, dropped: 0 });
        expect(await store.moveDeliveries('old', 'new', T0 + 3)).toEqual({ revived: 0, dropped: 0 });
        expect(await store.listDeliveries({ sink: 'old' })).toEqual([]);
        expect((await store.listDeliveries({ sink: 'new' })).map(({ state, eventIds: ids, attempts, createdAt }) => ({ state, ids, attempts, createdAt }))).toEqual([
          { state: 'pending', ids: ['evt-1'], attempts: 0, createdAt: T0 },
          { state: 'pending', ids: ['evt-2'], attempts: 0, createdAt: T0 },
          { state: 'pending', ids: ['evt-3'], attempts: 0, createdAt: T0 + 2 },
        ]);
        const order: string[][] = [];
        for (let round = 0; round < 3; round++) {
          const claimed = await store.claimDue('new', T0 + 3, 10);
          order.push(...eventIds(claimed));
          await store.recordOutcomes(claimed.map((d) => ({ deliveryId: d.id, outcome: { kind: 'delivered', at: T0 + 4 } })));
        }
        expect(order).toEqual([['evt-1'], ['evt-2'], ['evt-3']]);
        expect(eventIds(await store.claimDue('slack', T0 + 3, 10))).toEqual([['evt-1']]);
      });
    });

    describe('status: what each account and sink is at, from the store alone', () => {
      it('keeps the last success and the last error per account, users per level, and the outbox per sink', async () => {
        const store = await open({ leaseMs: 1000 });
        const e1 = userEvent('evt-1', riskUser(1, 'high'), null, 'high');
        await store.commitPoll(pollCommit({ delta: delta({ upsertUsers: users3 }), events: [e1], deliveries: [planned('hook', [e1]), planned('slack', [e1])] }));
        await store.recordPollFailure(ACCOUNT.id, 'summary of account …: HTTP 503', T0 + 60_000);
        await store.recordPollFailure(OTHER_ACCOUNT.id, 'HTTP 403: missing permission Zero Trust: PII Read', T0 + 60_000);
        const [d] = await store.claimDue('slack', T0, 1);
        await store.recordOutcomes([{ deliveryId: d!.id, outcome: { kind: 'dead', at: T0 + 1, error: 'HTTP 404' } }]);
        await store.holdSink('hook', T0 + 600_000, T0 + 1);
        const status = await store.status(T0 + 60_000);
        expect(status.accounts.find((a) => a.id === ACCOUNT.id)).toEqual({
          id: ACCOUNT.id,
          lastSuccessAt: T0,
          lastError: 'summary of account …: HTTP 503',
          lastErrorAt: T0 + 60_000,
          users: { low: 1, medium: 1, high: 1 },
          leader: expect.toSatisfy((leader: unknown) => leader === null || typeof leader === 'string'),
          flapping: 0,
        });
        expect(status.accounts.find((a) => a.id === OTHER_ACCOUNT.id)).toMatchObject({
          lastSuccessAt: null,
          lastError: 'HTTP 403: missing permission Zero Trust: PII Read',
          users: { low: 0, medium: 0, high: 0 },
        });
        expect(status.sinks).toEqual([
          { name: 'hook', pending: 1, dead: 0, heldUntil: T0 + 600_000 },
          { name: 'slack', pending: 0, dead: 1, heldUntil: null },
        ]);
        // A later success clears the error, and survives the next process.
        await store.commitPoll(pollCommit({ expectedVersion: 1, polledAt: T0 + 120_000 }));
        const after = await reopen(store, { leaseMs: 1000 });
        expect((await after.status(T0 + 700_000)).accounts.find((a) => a.id === ACCOUNT.id)).toMatchObject({ lastSuccessAt: T0 + 120_000, lastError: null, lastErrorAt: null });
        expect((await after.status(T0 + 700_000)).sinks.find((x) => x.name === 'hook')?.heldUntil).toBeNull();
      });
    });

    describe('what was committed survives close() and the next process opening the same state', () => {
      const e1 = userEvent('evt-1', riskUser(1, 'high'), null, 'high');
      const e2 = behaviorEvent('evt-2', behavior('sentinel_one'), 'behavior.added', null);

      it('keeps the snapshot, the users, the events and the pending and dead deliveries', async () => {
        const first = await open();
        await first.commitPoll(
          pollCommit({
            delta: delta({ upsertUsers: users3, upsertBehaviors: [impTravel, behavior('sentinel_one')] }),
            events: [e1, e2],
            deliveries: [planned('secops', [e1, e2]), planned('incidents', [e1]), planned('incidents', [e2])],
          }),
        );
        const [delivered, dead] = await first.claimDue('incidents', T0, 2);
        await first.recordOutcomes([{ deliveryId: delivered!.id, outcome: { kind: 'delivered', at: T0 + 1 } }]);
        await first.recordOutcomes([{ deliveryId: dead!.id, outcome: { kind: 'dead', at: T0 + 1, error: 'HTTP 404' } }]);
        await first.commitPoll(pollCommit({ expectedVersion: 1, polledAt: T0 + 60_000, deliveries: [planned('incidents', [e2])] }));
        const snapshot = await first.loadSnapshot(ACCOUNT.id);

        const second = await reopen(first);
        expect(await second.loadSnapshot(ACCOUNT.id)).toEqual(snapshot);
        expect(snapshot.version).toBe(2);
        expect(await second.loadUsers(ACCOUNT.id, [users3[1]!.user_id])).toEqual(new Map([[users3[1]!.user_id, users3[1]!]]));
        expect(await second.deliveryCounts()).toEqual(
          new Map([
            ['secops', { pending: 1, dead: 0 }],
            ['incidents', { pending: 1, dead: 1 }],
          ]),
        );
        expect((await second.claimDue('secops', T0 + HOUR, 10)).map((d) => d.events)).toEqual([[e1, e2]]);
        expect((await second.claimDue('incidents', T0 + HOUR, 10)).map((d) => d.events)).toEqual([[e2]]);
        expect(await second.commitPoll(pollCommit({ expectedVersion: 2, polledAt: T0 + 120_000 }))).toBe(3);
      });

      it('hands a delivery claimed but never settled by the last process to the next one at once, with the same events', async () => {
        const first = await open(); // a lease of minutes
        await first.commitPoll(pollCommit({ events: [e1, e2], deliveries: [planned('secops', [e1, e2])] }));
        const [claimed] = await first.claimDue('secops', T0, 10);

        const second = await reopen(first);
        const again = await second.claimDue('secops', T0, 10);
        expect(again.map((d) => [d.id, d.attempts])).toEqual([[claimed!.id, 0]]);
        expect(again[0]!.events.map((e) => e.id)).toEqual(['evt-1', 'evt-2']);
      });

      it("keeps the users a read missed, and a sink's hold with what it holds back", async () => {
        const first = await open({ leaseMs: 1000 });
        await first.commitPoll(pollCommit({ delta: delta({ upsertUsers: users3 }), missing: { mark: [users3[2]!.user_id], clear: [] } }));
        expect(await first.holdSink('secops', T0 + 30_000, T0)).toBe(T0 + 30_000);

        const second = await reopen(first, { leaseMs: 1000 });
        expect((await second.loadSnapshot(ACCOUNT.id)).missing).toEqual(new Set([users3[2]!.user_id]));
        await second.commitPoll(pollCommit({ expectedVersion: 1, polledAt: T0 + 10_000, events: [e1], deliveries: [planned('secops', [e1])] }));
        expect(await second.nextDueAt('secops')).toBe(T0 + 30_000);
        expect(await second.holdSink('secops', T0 + 20_000, T0 + 10_000)).toBe(T0 + 30_000);
      });
    });
  });
}
