import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { once } from 'node:events';
import fs from 'node:fs';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { DatabaseSync } from 'node:sqlite';
import { pathToFileURL } from 'node:url';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { RiskEvent } from '../../src/detect/events.ts';
import { SCHEMA_VERSION, SqliteStore, type SqliteStoreOptions, StateError } from '../../src/store/sqlite.ts';
import { StaleSnapshotError } from '../../src/store/store.ts';
import { REPO } from '../support/process.ts';
import {
  ACCOUNT,
  behavior,
  behaviorEvent,
  delta,
  makeStateDir,
  OTHER_ACCOUNT,
  planned,
  pollCommit,
  riskUser,
  rowCounts,
  type StateDir,
  T0,
  userEvent,
} from '../support/store-fixtures.ts';

let tmp: StateDir;
let file: string;
const opened: SqliteStore[] = [];
const children: ChildProcess[] = [];

beforeEach(() => {
  tmp = makeStateDir();
  file = tmp.path('riskwatch.db');
});
afterEach(async () => {
  for (const child of children.splice(0)) {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGKILL');
      await once(child, 'exit');
    }
  }
  for (const store of opened.splice(0)) await store.close();
  tmp.remove();
});

/** Opens a store that afterEach closes. */
function open(at: string = file, options?: SqliteStoreOptions): SqliteStore {
  const store = SqliteStore.open(at, options);
  opened.push(store);
  return store;
}

/** The StateError `attempt` fails with, checked to be one line with exit code 2. */
async function stateErrorOf(attempt: () => unknown): Promise<StateError> {
  let error: unknown;
  try {
    await attempt();
  } catch (caught) {
    error = caught;
  }
  if (error === undefined) throw new Error('expected a StateError, but nothing was thrown');
  expect(error).toBeInstanceOf(StateError);
  const stateError = error as StateError;
  expect(stateError.exitCode).toBe(2);
  expect(stateError.message).not.toContain('\n');
  return stateError;
}

const HOUR = 3_600_000;
const users3 = [riskUser(1, 'high'), riskUser(2, 'low'), riskUser(3, 'medium')];
const impTravel = behavior('imp_travel', { risk_level: 'high' });
const highDlp = behavior('high_dlp', { enabled: false });

describe('a fresh state file holds no snapshot until the first commit, then counts versions', () => {
  it('reports version 0 and no snapshot, and has nothing to deliver', async () => {
    const store = open();
    expect(await store.loadSnapshot(ACCOUNT.id)).toEqual({ version: 0, snapshot: undefined, missing: new Set() });
    expect(await store.deliveryCounts()).toEqual(new Map());
    expect(await store.nextDueAt('secops')).toBeUndefined();
    expect(await store.claimDue('secops', T0 + HOUR, 10)).toEqual([]);
  });

  it('is one SQLite file in WAL mode at the current schema version', async () => {
    open();
    const db = new DatabaseSync(file, { readOnly: true });
    try {
      expect(db.prepare('PRAGMA journal_mode').get()).toEqual(expect.objectContaining({ journal_mode: 'wal' }));
      expect(db.prepare('PRAGMA user_version').get()).toEqual(expect.objectContaining({ user_version: SCHEMA_VERSION }));
    } finally {
      db.close();
    }
  });

  it('returns version 1 from the first commit, after which loadSnapshot returns the levels and behaviors committed', async () => {
    const store = open();
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
    });
  });

  it('marks users a read missed, hands them back with the snapshot, and clears a mark when they return', async () => {
    const store = open();
    await store.commitPoll(pollCommit({ delta: delta({ upsertUsers: users3 }) }));
    await store.commitPoll(pollCommit({ expectedVersion: 1, missing: { mark: [users3[0]!.user_id, users3[1]!.user_id], clear: [] } }));
    expect((await store.loadSnapshot(ACCOUNT.id)).missing).toEqual(new Set([users3[0]!.user_id, users3[1]!.user_id]));
    await store.commitPoll(pollCommit({ expectedVersion: 2, missing: { mark: [], clear: [users3[1]!.user_id] } }));
    expect((await store.loadSnapshot(ACCOUNT.id)).missing).toEqual(new Set([users3[0]!.user_id]));
  });

  it('applies the next commit, expecting version 1, as a delta on the stored snapshot and returns 2', async () => {
    const store = open();
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
    const store = open();
    expect(await store.commitPoll(pollCommit({ delta: delta({ upsertUsers: users3 }) }))).toBe(1);
    expect(await store.commitPoll(pollCommit({ delta: delta({ upsertUsers: [users3[0]!] }), expectedVersion: 1 }))).toBe(2);
    expect(await store.loadSnapshot(OTHER_ACCOUNT.id)).toEqual({ version: 0, snapshot: undefined, missing: new Set() });
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
    const store = open();
    const raised = userEvent('evt-1', riskUser(1, 'high'), null, 'high');
    await store.commitPoll(pollCommit({ delta: delta({ upsertUsers: users3 }), events: [raised], deliveries: [planned('secops', [raised])] }));
    const rowsBefore = rowCounts(file);
    const snapshotBefore = await store.loadSnapshot(ACCOUNT.id);

    const late = userEvent('evt-2', riskUser(5, 'high'), null, 'high');
    const attempt = store.commitPoll(
      pollCommit({
        expectedVersion: stale,
        polledAt: T0 + 60_000,
        delta: delta({ upsertUsers: [riskUser(5, 'high'), riskUser(2, 'high')], removeUserIds: [riskUser(3).user_id], removeBehaviorIds: ['imp_travel'] }),
        events: [late],
        deliveries: [planned('secops', [late]), planned('incidents', [late])],
      }),
    );
    await expect(attempt).rejects.toBeInstanceOf(StaleSnapshotError);
    await expect(attempt).rejects.toThrow(`account ${ACCOUNT.id}: snapshot version is 1, expected ${stale}`);

    expect(rowCounts(file)).toEqual(rowsBefore);
    expect(await store.loadSnapshot(ACCOUNT.id)).toEqual(snapshotBefore);
    expect(await store.loadUsers(ACCOUNT.id, [riskUser(5).user_id])).toEqual(new Map());
    expect(await store.deliveryCounts()).toEqual(new Map([['secops', { pending: 1, dead: 0 }]]));
  });
});

describe('a poll is committed in one transaction: all of it or none of it', () => {
  it('writes nothing of a first commit that fails halfway (two events with one id), and says so in one line naming the file', async () => {
    const store = open();
    const first = userEvent('evt-1', riskUser(1, 'high'), null, 'high');
    const sameId = userEvent('evt-1', riskUser(3, 'medium'), null, 'medium');
    const error = await stateErrorOf(() =>
      store.commitPoll(
        pollCommit({
          delta: delta({ upsertUsers: users3, upsertBehaviors: [impTravel] }),
          events: [first, sameId],
          deliveries: [planned('secops', [first, sameId])],
        }),
      ),
    );
    expect(error.message).toContain(file);
    expect(rowCounts(file)).toEqual({ accounts: 0, users: 0, behaviors: 0, events: 0, deliveries: 0 });
    expect(await store.loadSnapshot(ACCOUNT.id)).toEqual({ version: 0, snapshot: undefined, missing: new Set() });
    expect(await store.deliveryCounts()).toEqual(new Map());
  });

  it('keeps the previous snapshot whole when a later commit fails halfway (an event id already stored), and commits the redone poll', async () => {
    const store = open();
    const e1 = userEvent('evt-1', riskUser(1, 'high'), null, 'high');
    await store.commitPoll(pollCommit({ delta: delta({ upsertUsers: users3, upsertBehaviors: [impTravel] }), events: [e1], deliveries: [planned('secops', [e1])] }));
    const rowsBefore = rowCounts(file);
    const snapshotBefore = await store.loadSnapshot(ACCOUNT.id);

    const change = delta({ upsertUsers: [riskUser(2, 'high'), riskUser(4, 'high')], removeUserIds: [riskUser(3).user_id], removeBehaviorIds: ['imp_travel'] });
    const e2 = userEvent('evt-2', riskUser(2, 'high'), 'low', 'high', T0 + 60_000);
    const reused = userEvent('evt-1', riskUser(4, 'high'), null, 'high', T0 + 60_000);
    const error = await stateErrorOf(() =>
      store.commitPoll(
        pollCommit({ expectedVersion: 1, polledAt: T0 + 60_000, delta: change, events: [e2, reused], deliveries: [planned('secops', [e2, reused])] }),
      ),
    );
    expect(error.message).toContain(file);
    expect(rowCounts(file)).toEqual(rowsBefore);
    expect(await store.loadSnapshot(ACCOUNT.id)).toEqual(snapshotBefore);

    // The failed commit left no transaction open: the redone poll, with fresh ids, goes through.
    const e4 = userEvent('evt-4', riskUser(4, 'high'), null, 'high', T0 + 60_000);
    expect(
      await store.commitPoll(pollCommit({ expectedVersion: 1, polledAt: T0 + 60_000, delta: change, events: [e2, e4], deliveries: [planned('secops', [e2, e4])] })),
    ).toBe(2);
    expect(rowCounts(file)).toEqual({ accounts: 1, users: 3, behaviors: 0, events: 3, deliveries: 2 });
  });

  it('writes nothing when the very last row fails (a second delivery that cannot be stored, after the first was)', async () => {
    const store = open();
    const e1 = userEvent('evt-1', riskUser(1, 'high'), null, 'high');
    const unstorable = { sink: null, accountId: ACCOUNT.id, eventIds: [e1.id] } as unknown as ReturnType<typeof planned>;
    await stateErrorOf(() =>
      store.commitPoll(pollCommit({ delta: delta({ upsertUsers: users3 }), events: [e1], deliveries: [planned('secops', [e1]), unstorable] })),
    );
    expect(rowCounts(file)).toEqual({ accounts: 0, users: 0, behaviors: 0, events: 0, deliveries: 0 });
  });

  it('refuses a delivery of an event that is neither in the commit nor stored, writing nothing', async () => {
    const store = open();
    const e1 = userEvent('evt-1', riskUser(1, 'high'), null, 'high');
    const ghost = userEvent('evt-ghost', riskUser(2, 'high'), null, 'high');
    const error = await stateErrorOf(() =>
      store.commitPoll(pollCommit({ delta: delta({ upsertUsers: users3 }), events: [e1], deliveries: [planned('secops', [e1]), planned('secops', [ghost])] })),
    );
    expect(error.message).toMatch(/names event evt-ghost, which is not stored/);
    expect(rowCounts(file)).toEqual({ accounts: 0, users: 0, behaviors: 0, events: 0, deliveries: 0 });
  });
});

/**
 * How "writes only what changed" is measured, two ways, both independent of machine speed:
 * - rows: AFTER INSERT/UPDATE/DELETE triggers, added to the file through a connection of
 *   our own, count every row the store's connection writes, per table (SQLite runs a
 *   table's triggers whichever connection writes it, and upserts fire the UPDATE ones);
 * - pages: the WAL is checkpointed and truncated to 0 bytes before a commit, so its size
 *   afterwards is 32 + frames × (page_size + 24) for exactly the pages that commit wrote
 *   (a page changed many times in one transaction is one frame).
 */
describe('a steady poll writes only what changed', () => {
  const COUNTED = ['accounts', 'users', 'behaviors', 'events', 'deliveries'] as const;

  function countWrites(db: DatabaseSync): void {
    db.exec('CREATE TABLE test_writes (tbl TEXT PRIMARY KEY, n INTEGER NOT NULL)');
    for (const table of COUNTED) {
      db.prepare('INSERT INTO test_writes VALUES (?, 0)').run(table);
      for (const op of ['INSERT', 'UPDATE', 'DELETE']) {
        db.exec(`CREATE TRIGGER test_${table}_${op.toLowerCase()} AFTER ${op} ON ${table} BEGIN UPDATE test_writes SET n = n + 1 WHERE tbl = '${table}'; END`);
      }
    }
  }
  const writes = (db: DatabaseSync) =>
    Object.fromEntries((db.prepare('SELECT tbl, n FROM test_writes').all() as { tbl: string; n: number }[]).map((r) => [r.tbl, r.n]));

  function truncateWal(db: DatabaseSync): void {
    expect(db.prepare('PRAGMA wal_checkpoint(TRUNCATE)').get()).toEqual(expect.objectContaining({ busy: 0 }));
    expect(fs.statSync(`${file}-wal`).size).toBe(0);
  }
  function pagesWritten(db: DatabaseSync): number {
    const pageSize = (db.prepare('PRAGMA page_size').get() as { page_size: number }).page_size;
    const size = fs.statSync(`${file}-wal`).size;
    expect((size - 32) % (pageSize + 24)).toBe(0);
    return (size - 32) / (pageSize + 24);
  }

  it('10 level changes and 2 departures among 100,000 users write 12 user rows and a few pages, not 100,000', async () => {
    const store = open();
    const probe = new DatabaseSync(file);
    try {
      truncateWal(probe);
      const everyone = Array.from({ length: 100_000 }, (_, n) => riskUser(n));
      expect(await store.commitPoll(pollCommit({ delta: delta({ upsertUsers: everyone, upsertBehaviors: [impTravel] }) }))).toBe(1);
      const baselinePages = pagesWritten(probe);

      countWrites(probe);
      truncateWal(probe);
      const raised = Array.from({ length: 10 }, (_, i) => riskUser(i * 9_973 + 17, 'high'));
      const departed = [riskUser(4_242).user_id, riskUser(99_999).user_id];
      const events = raised.map((u, i) => userEvent(`evt-${i}`, u, 'low', 'high', T0 + 60_000));
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
      const steadyPages = pagesWritten(probe);

      expect(writes(probe)).toEqual({ accounts: 1, users: 12, behaviors: 0, events: 10, deliveries: 1 });
      expect(baselinePages).toBeGreaterThan(1_000);
      expect(steadyPages).toBeLessThanOrEqual(baselinePages / 100);

      const { snapshot } = await store.loadSnapshot(ACCOUNT.id);
      expect(snapshot?.userLevels.size).toBe(99_998);
      for (const u of raised) expect(snapshot?.userLevels.get(u.user_id)).toBe('high');
      for (const id of departed) expect(snapshot?.userLevels.has(id)).toBe(false);
      expect(snapshot?.userLevels.get(riskUser(50_000).user_id)).toBe('low');
    } finally {
      probe.close();
    }
  });
});

describe('loadUsers returns what was stored of users, for the events of those who left the summary', () => {
  it('returns every stored field of the users asked for, and nothing for ids it never stored', async () => {
    const store = open();
    const quiet = riskUser(1, 'high', { last_event: null, event_count: 0 });
    const odd = riskUser(2, 'medium', { name: "Zoë O'Brien <b>&", email: 'zoë+risk@example.com' });
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
    const store = open();
    await store.commitPoll(pollCommit({ delta: delta({ upsertUsers: users3 }) }));
    const changed = riskUser(1, 'medium', { email: 'renamed@example.com', name: 'Renamed', event_count: 42, last_event: '2026-11-22T18:00:30Z' });
    await store.commitPoll(pollCommit({ expectedVersion: 1, polledAt: T0 + 60_000, delta: delta({ upsertUsers: [changed], removeUserIds: [riskUser(2).user_id] }) }));
    expect(await store.loadUsers(ACCOUNT.id, users3.map((u) => u.user_id))).toEqual(
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
  async function twoPolls(store: SqliteStore): Promise<void> {
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

  const eventIds = (deliveries: readonly { events: readonly RiskEvent[] }[]) => deliveries.map((d) => d.events.map((e) => e.id));

  it("claims a sink's due deliveries oldest first, each with the full events it was planned with, in their order", async () => {
    const store = open();
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
    const store = open();
    await twoPolls(store);
    const now = T0 + 60_000;
    expect(eventIds(await store.claimDue('incidents', now, 2))).toEqual([['evt-1'], ['evt-2']]);
    expect(eventIds(await store.claimDue('incidents', now, 2))).toEqual([['evt-3']]);
    expect(await store.claimDue('incidents', now, 2)).toEqual([]);
  });

  it('does not hand out a delivery before it is due', async () => {
    const store = open();
    await twoPolls(store);
    expect(eventIds(await store.claimDue('incidents', T0 + 59_999, 10))).toEqual([['evt-1'], ['evt-2']]);
    expect(await store.nextDueAt('incidents')).toBe(T0 + 60_000);
    expect(eventIds(await store.claimDue('incidents', T0 + 60_000, 10))).toEqual([['evt-3']]);
  });

  it('hides a claimed delivery from further claims until its lease runs out', async () => {
    const store = open(file, { leaseMs: 1000 });
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
    const store = open(file, { leaseMs: 1000 });
    await twoPolls(store);
    const [delivery] = await store.claimDue('secops', T0, 10);
    await store.recordOutcome(delivery!.id, { kind: 'delivered', at: T0 + 5 });
    expect(await store.claimDue('secops', T0 + 48 * HOUR, 10)).toEqual([]);
    expect(await store.nextDueAt('secops')).toBeUndefined();
    expect((await store.deliveryCounts()).get('secops') ?? { pending: 0, dead: 0 }).toEqual({ pending: 0, dead: 0 });
  });

  it('retry: handed out again at nextAttemptAt and not before, lease or no lease, with its attempts counted', async () => {
    const store = open(); // the default lease (minutes) outlasts the retry: recording the outcome must end it
    await twoPolls(store);
    const [first] = await store.claimDue('secops', T0, 10);
    await store.recordOutcome(first!.id, { kind: 'retry', at: T0 + 5, nextAttemptAt: T0 + 30_000, error: 'HTTP 503' });
    expect(await store.claimDue('secops', T0 + 29_999, 10)).toEqual([]);
    expect(await store.nextDueAt('secops')).toBe(T0 + 30_000);
    const [second] = await store.claimDue('secops', T0 + 30_000, 10);
    expect([second?.id, second?.attempts]).toEqual([first!.id, 1]);
    expect(second!.events).toEqual(first!.events);
    await store.recordOutcome(second!.id, { kind: 'retry', at: T0 + 30_005, nextAttemptAt: T0 + 90_000, error: 'timeout' });
    const [third] = await store.claimDue('secops', T0 + 90_000, 10);
    expect([third?.id, third?.attempts]).toEqual([first!.id, 2]);
    expect((await store.deliveryCounts()).get('secops')).toEqual({ pending: 1, dead: 0 });
  });

  it('dead: kept and counted as dead-lettered, never handed out again', async () => {
    const store = open(file, { leaseMs: 1000 });
    await twoPolls(store);
    const [first] = await store.claimDue('incidents', T0, 1);
    await store.recordOutcome(first!.id, { kind: 'dead', at: T0 + 5, error: 'HTTP 404' });
    expect((await store.deliveryCounts()).get('incidents')).toEqual({ pending: 2, dead: 1 });
    expect(eventIds(await store.claimDue('incidents', T0 + 48 * HOUR, 10))).toEqual([['evt-2'], ['evt-3']]);
  });

  it("nextDueAt is the earliest time one of the sink's pending deliveries falls due", async () => {
    const store = open(file, { leaseMs: 1000 });
    await twoPolls(store);
    expect(await store.nextDueAt('incidents')).toBe(T0);
    expect(await store.nextDueAt('console')).toBeUndefined();
    const [d1, d2] = await store.claimDue('incidents', T0, 2);
    await store.recordOutcome(d1!.id, { kind: 'delivered', at: T0 + 1 });
    await store.recordOutcome(d2!.id, { kind: 'retry', at: T0 + 1, nextAttemptAt: T0 + 300_000, error: 'HTTP 429' });
    expect(await store.nextDueAt('incidents')).toBe(T0 + 60_000);
    const [d3] = await store.claimDue('incidents', T0 + 60_000, 10);
    await store.recordOutcome(d3!.id, { kind: 'dead', at: T0 + 60_001, error: 'HTTP 400' });
    expect(await store.nextDueAt('incidents')).toBe(T0 + 300_000);
    const [last] = await store.claimDue('incidents', T0 + 300_000, 10);
    await store.recordOutcome(last!.id, { kind: 'delivered', at: T0 + 300_001 });
    expect(await store.nextDueAt('incidents')).toBeUndefined();
  });

  it('prune forgets delivered history, and keeps what pending or dead-lettered deliveries still need', async () => {
    const store = open(file, { leaseMs: 1000 });
    await twoPolls(store);
    // incidents: e1 delivered, e2 dead, e3 pending; secops: [e2, e1] delivered.
    const [i1, i2] = await store.claimDue('incidents', T0, 2);
    await store.recordOutcome(i1!.id, { kind: 'delivered', at: T0 + 1 });
    await store.recordOutcome(i2!.id, { kind: 'dead', at: T0 + 1, error: 'HTTP 400' });
    const [s1] = await store.claimDue('secops', T0, 1);
    await store.recordOutcome(s1!.id, { kind: 'delivered', at: T0 + 1 });
    expect(await store.prune(T0)).toEqual({ deliveries: 0, events: 0 }); // nothing is that old yet
    expect(await store.prune(T0 + 120_000)).toEqual({ deliveries: 2, events: 1 }); // e1: only delivered ones needed it
    expect(rowCounts(file)).toMatchObject({ events: 2, deliveries: 2 });
    const [pending] = await store.claimDue('incidents', T0 + 120_000, 10);
    expect(eventIds([pending!])).toEqual([['evt-3']]);
  });

  it('deliveryCounts gives pending and dead-lettered deliveries per sink', async () => {
    const store = open(file, { leaseMs: 1000 });
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
    await store.recordOutcome(i1!.id, { kind: 'dead', at: T0 + 1, error: 'HTTP 410' });
    await store.recordOutcome(i2!.id, { kind: 'delivered', at: T0 + 1 });
    const [c1] = await store.claimDue('console', T0 + 120_000, 10);
    await store.recordOutcome(c1!.id, { kind: 'delivered', at: T0 + 120_001 });
    const counts = await store.deliveryCounts();
    expect(counts.get('incidents')).toEqual({ pending: 1, dead: 1 });
    expect(counts.get('secops')).toEqual({ pending: 1, dead: 0 });
    expect(counts.get('console') ?? { pending: 0, dead: 0 }).toEqual({ pending: 0, dead: 0 });
  });
});

describe('what was committed survives a restart', () => {
  const e1 = userEvent('evt-1', riskUser(1, 'high'), null, 'high');
  const e2 = behaviorEvent('evt-2', behavior('sentinel_one'), 'behavior.added', null);

  it('keeps the snapshot, the users, the events and the pending and dead deliveries', async () => {
    const first = open();
    await first.commitPoll(
      pollCommit({
        delta: delta({ upsertUsers: users3, upsertBehaviors: [impTravel, behavior('sentinel_one')] }),
        events: [e1, e2],
        deliveries: [planned('secops', [e1, e2]), planned('incidents', [e1]), planned('incidents', [e2])],
      }),
    );
    const [delivered, dead] = await first.claimDue('incidents', T0, 2);
    await first.recordOutcome(delivered!.id, { kind: 'delivered', at: T0 + 1 });
    await first.recordOutcome(dead!.id, { kind: 'dead', at: T0 + 1, error: 'HTTP 404' });
    await first.commitPoll(pollCommit({ expectedVersion: 1, polledAt: T0 + 60_000, deliveries: [planned('incidents', [e2])] }));
    const snapshot = await first.loadSnapshot(ACCOUNT.id);
    await first.close();

    const second = open();
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
    const first = open(); // a lease of minutes
    await first.commitPoll(pollCommit({ events: [e1, e2], deliveries: [planned('secops', [e1, e2])] }));
    const [claimed] = await first.claimDue('secops', T0, 10);
    await first.close();

    const second = open();
    const again = await second.claimDue('secops', T0, 10);
    expect(again.map((d) => [d.id, d.attempts])).toEqual([[claimed!.id, 0]]);
    expect(again[0]!.events.map((e) => e.id)).toEqual(['evt-1', 'evt-2']);
  });
});

describe('a state file that cannot be used is refused with a one-line StateError (exit 2) naming it', () => {
  /** Writes an SQLite file of our own making at `file`. */
  function sqliteFile(sql: string): void {
    const db = new DatabaseSync(file);
    db.exec(sql);
    db.close();
  }

  it('a corrupt file: not an SQLite database at all', async () => {
    fs.writeFileSync(file, 'not a database '.repeat(1000));
    const error = await stateErrorOf(() => open());
    expect(error.message).toContain(file);
    expect(error.message).toMatch(/not an SQLite database|corrupt/);
  });

  it("a file whose users' pages were damaged: found at open or at the first read, never a raw SQLite error", async () => {
    const store = open();
    await store.commitPoll(pollCommit({ delta: delta({ upsertUsers: Array.from({ length: 2_000 }, (_, n) => riskUser(n)) }) }));
    await store.close();
    const db = new DatabaseSync(file, { readOnly: true });
    const leaves = (db.prepare("SELECT pageno FROM dbstat WHERE name = 'users' AND pagetype = 'leaf'").all() as { pageno: number }[]).map((r) => r.pageno);
    const pageSize = (db.prepare('PRAGMA page_size').get() as { page_size: number }).page_size;
    db.close();
    expect(leaves.length).toBeGreaterThan(10);
    const fd = fs.openSync(file, 'r+');
    for (const page of leaves) fs.writeSync(fd, Buffer.alloc(pageSize, 0xa5), 0, pageSize, (page - 1) * pageSize);
    fs.closeSync(fd);

    let reopened: SqliteStore;
    try {
      reopened = open();
    } catch (atOpen) {
      const error = await stateErrorOf(() => Promise.reject(atOpen));
      expect(error.message).toContain(file);
      return;
    }
    // Found at the first read: each read of the damaged pages must say so the same way.
    const reads = { loadSnapshot: () => reopened.loadSnapshot(ACCOUNT.id), loadUsers: () => reopened.loadUsers(ACCOUNT.id, [riskUser(1).user_id]) };
    for (const [name, read] of Object.entries(reads)) {
      const error = await stateErrorOf(read);
      expect(error.message, name).toContain(file);
      expect(error.message, name).toMatch(/corrupt/);
    }
  });

  it('a file written by a newer riskwatch (schema version 99)', async () => {
    sqliteFile('CREATE TABLE future (x); PRAGMA user_version = 99;');
    const error = await stateErrorOf(() => open());
    expect(error.message).toContain(file);
    expect(error.message).toMatch(/newer riskwatch/);
    expect(error.message).toContain('99');
  });

  it('an SQLite file of another program (tables, but no riskwatch schema version)', async () => {
    sqliteFile("CREATE TABLE invoices (id INTEGER PRIMARY KEY, total REAL); INSERT INTO invoices VALUES (1, 9.5);");
    const error = await stateErrorOf(() => open());
    expect(error.message).toContain(file);
    expect(error.message).toMatch(/not a riskwatch state file/);
  });

  it.each([
    ['a corrupt file', () => fs.writeFileSync(file, 'not a database '.repeat(1000))],
    ['a newer schema', () => sqliteFile('CREATE TABLE future (x); PRAGMA user_version = 99;')],
    ["another program's SQLite file", () => sqliteFile('CREATE TABLE invoices (id INTEGER PRIMARY KEY, total REAL);')],
  ])('leaves a file it refuses byte for byte as it was: %s', async (_kind, make) => {
    make();
    const before = fs.readFileSync(file);
    await stateErrorOf(() => open());
    expect(fs.readFileSync(file).equals(before)).toBe(true);
    expect(fs.existsSync(`${file}-wal`)).toBe(false);
  });

  it('a directory that does not exist', async () => {
    const missing = tmp.path('no/such/dir/riskwatch.db');
    const error = await stateErrorOf(() => open(missing));
    expect(error.message).toContain(missing);
    expect(error.message).toMatch(/does not exist/);
    expect(fs.existsSync(tmp.path('no'))).toBe(false);
  });

  it('a directory this user cannot write to', async () => {
    const readOnlyDir = tmp.path('read-only');
    fs.mkdirSync(readOnlyDir, { mode: 0o555 });
    fs.chmodSync(readOnlyDir, 0o555);
    const inside = path.join(readOnlyDir, 'riskwatch.db');
    if (process.getuid?.() !== 0) {
      const error = await stateErrorOf(() => open(inside));
      expect(error.message).toContain(inside);
      expect(error.message).toMatch(/not writable/);
      return;
    }
    // root writes through 0o555, so the refusal is only observable for another user:
    // open the store in a child running as nobody (uid 65534), which only root may start.
    fs.chmodSync(tmp.dir, 0o755);
    const script = tmp.path('open-store.mjs');
    fs.writeFileSync(
      script,
      `import { SqliteStore } from ${JSON.stringify(pathToFileURL(path.join(REPO, 'src/store/sqlite.ts')).href)};
try { SqliteStore.open(process.argv[2]); console.log(JSON.stringify({ opened: true })); }
catch (e) { console.log(JSON.stringify({ name: e.name, exitCode: e.exitCode, message: e.message })); }
`,
    );
    const child = spawnSync(process.execPath, [script, inside], { uid: 65534, gid: 65534, encoding: 'utf8', timeout: 15_000 });
    expect(child.status, child.stderr).toBe(0);
    const outcome = JSON.parse(child.stdout.trim()) as { name?: string; exitCode?: number; message?: string };
    expect(outcome.name).toBe('StateError');
    expect(outcome.exitCode).toBe(2);
    expect(outcome.message).not.toContain('\n');
    expect(outcome.message).toContain(inside);
    expect(outcome.message).toMatch(/not writable/);
    expect(fs.readdirSync(readOnlyDir)).toEqual([]);
  });

  it('a state path that is a directory', async () => {
    const dir = tmp.path('riskwatch.db');
    fs.mkdirSync(dir);
    const error = await stateErrorOf(() => open(dir));
    expect(error.message).toContain(dir);
    expect(error.message).toMatch(/is a directory/);
  });

  it('a state path under a regular file', async () => {
    const notDir = tmp.path('plain-file');
    fs.writeFileSync(notDir, 'x');
    const under = path.join(notDir, 'riskwatch.db');
    const error = await stateErrorOf(() => open(under));
    expect(error.message).toContain(under);
    expect(error.message).toMatch(/not a directory/);
  });
});

describe('one riskwatch process per state file', () => {
  it('refuses a second open while the first is open, naming this process, leaves the first undisturbed, and allows it once the first has closed', async () => {
    const first = open(file, { leaseMs: 1000 });
    const e1 = userEvent('evt-1', riskUser(1, 'high'), null, 'high');
    await first.commitPoll(pollCommit({ events: [e1], deliveries: [planned('secops', [e1])] }));
    const [claimed] = await first.claimDue('secops', T0, 10);

    const error = await stateErrorOf(() => open());
    expect(error.message).toContain(file);
    expect(error.message).toContain(`process ${process.pid}`);

    // The refused open neither took the file nor released the first one's lease.
    expect(await first.claimDue('secops', T0 + 999, 10)).toEqual([]);
    expect(await first.commitPoll(pollCommit({ expectedVersion: 1, polledAt: T0 + 60_000 }))).toBe(2);

    await first.close();
    const second = open();
    expect((await second.loadSnapshot(ACCOUNT.id)).version).toBe(2);
    expect((await second.claimDue('secops', T0, 10)).map((d) => d.id)).toEqual([claimed!.id]);
  });

  it("names another process's pid while it holds the file, and frees the file and its leases when that process is killed with -9", async () => {
    const setup = open();
    const e1 = userEvent('evt-1', riskUser(1, 'high'), null, 'high');
    const e2 = userEvent('evt-2', riskUser(2, 'high'), 'low', 'high');
    await setup.commitPoll(pollCommit({ events: [e1, e2], deliveries: [planned('secops', [e1, e2])] }));
    await setup.close();

    const script = tmp.path('hold-store.mjs');
    fs.writeFileSync(
      script,
      `import { SqliteStore } from ${JSON.stringify(pathToFileURL(path.join(REPO, 'src/store/sqlite.ts')).href)};
const [file, sink, now] = process.argv.slice(2);
const store = SqliteStore.open(file);
const claimed = await store.claimDue(sink, Number(now), 10);
console.log('ready ' + JSON.stringify(claimed.map((d) => d.id)));
// The timer keeps \`store\` reachable: a collected store closes its lock connection and frees the file.
setInterval(() => store, 60_000);
`,
    );
    const child = spawn(process.execPath, [script, file, 'secops', String(T0)], { stdio: ['ignore', 'pipe', 'pipe'] });
    children.push(child);
    const ready = await firstLine(child, 15_000);
    const claimedByChild = JSON.parse(ready.slice('ready '.length)) as number[];
    expect(claimedByChild).toHaveLength(1);

    const error = await stateErrorOf(() => open());
    expect(error.message).toContain(file);
    expect(error.message).toContain(`process ${child.pid}`);

    child.kill('SIGKILL');
    const [, signal] = (await once(child, 'exit')) as [number | null, string | null];
    expect(signal).toBe('SIGKILL');

    const after = open();
    const again = await after.claimDue('secops', T0, 10);
    expect(again.map((d) => d.id)).toEqual(claimedByChild);
    expect(again[0]!.events.map((e) => e.id)).toEqual(['evt-1', 'evt-2']);
  });
});

/** The child's first stdout line; rejects with its stderr if it exits or stays silent. */
function firstLine(child: ChildProcess, timeoutMs: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const stderr: string[] = [];
    createInterface({ input: child.stderr! }).on('line', (line) => stderr.push(line));
    const lines = createInterface({ input: child.stdout! });
    const timer = setTimeout(() => reject(new Error(`no line from the child within ${timeoutMs} ms; stderr:\n${stderr.join('\n')}`)), timeoutMs);
    lines.once('line', (line) => {
      clearTimeout(timer);
      resolve(line);
    });
    child.once('exit', (code, signal) => {
      clearTimeout(timer);
      reject(new Error(`the child exited (${code ?? signal}) before its first line; stderr:\n${stderr.join('\n')}`));
    });
  });
}
