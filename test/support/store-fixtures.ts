import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import type { SnapshotDelta } from '../../src/detect/diff.ts';
import type { BehaviorEvent, FlappingEvent, LevelChangeEvent, RiskEvent, SettledEvent } from '../../src/detect/events.ts';
import type { Behavior, RiskLevel, RiskUser } from '../../src/model.ts';
import { plannedDelivery } from '../../src/notify/route.ts';
import type { PlannedDelivery, PollCommit } from '../../src/store/store.ts';

/** Small, readable data for the store's tests: users, behaviors, events and commits built from a number or an id. */

export const ACCOUNT = { id: '023e105f4ecef8ad9ca31a8372d0c353', name: 'production' } as const;
export const OTHER_ACCOUNT = { id: '9a7806061c88ada191ed06f989cc3dac', name: 'staging' } as const;

/** The time of the first poll in these tests (epoch ms); later polls add to it. */
export const T0 = Date.UTC(2026, 10, 22, 18, 0, 0);

/** User number `n`: a stable uuid, email and name, at `level`. */
export function riskUser(n: number, level: RiskLevel = 'low', overrides: Partial<RiskUser> = {}): RiskUser {
  return {
    user_id: `00000000-0000-4000-8000-${String(n).padStart(12, '0')}`,
    email: `user${n}@example.com`,
    name: `User ${n}`,
    event_count: (n % 7) + 1,
    last_event: '2026-11-22T17:59:00Z',
    max_risk_level: level,
    ...overrides,
  };
}

export function behavior(id: string, overrides: Partial<Behavior> = {}): Behavior {
  return { id, name: `Behavior ${id}`, description: `Detects ${id}`, enabled: true, risk_level: 'medium', ...overrides };
}

/** A `user.risk_level_raised` (or lowered, when the level falls) event for `user`, as buildEvents makes it. */
export function userEvent(id: string, user: RiskUser, previous: RiskLevel | null, current: RiskLevel | null, at = T0): LevelChangeEvent {
  const { max_risk_level: _level, ...fields } = user;
  const rank = { none: 0, low: 1, medium: 2, high: 3 } as const;
  return {
    id,
    type: rank[current ?? 'none'] > rank[previous ?? 'none'] ? 'user.risk_level_raised' : 'user.risk_level_lowered',
    timestamp: new Date(at).toISOString(),
    data: {
      account: { ...ACCOUNT },
      user: fields,
      previous_level: previous,
      current_level: current,
      risk_events: [{ id: `re-${id}`, name: 'Impossible travel', risk_level: 'high', timestamp: '2026-11-22T17:58:00Z', event_details: { from: 'Lisbon', to: 'Sydney' } }],
    },
  };
}

/** A change of `user` that made them flapping (SPEC §9): between `lowest` and `highest`, at `current` now. */
export function flappingEvent(
  id: string,
  user: RiskUser,
  previous: RiskLevel | null,
  current: RiskLevel | null,
  range: { lowest: RiskLevel | null; highest: RiskLevel | null },
  at = T0,
): FlappingEvent {
  const change = userEvent(id, user, previous, current, at);
  return { ...change, type: 'user.flapping', data: { ...change.data, level: current, changes: 4, window: '30m', ...range } };
}

/** A flapping `user` settled at `level`, having been between `lowest` and `highest`. */
export function settledEvent(id: string, user: RiskUser, level: RiskLevel | null, range: { lowest: RiskLevel | null; highest: RiskLevel | null }, at = T0): SettledEvent {
  const { max_risk_level: _level, ...fields } = user;
  return {
    id,
    type: 'user.settled',
    timestamp: new Date(at).toISOString(),
    data: { account: { ...ACCOUNT }, user: fields, previous_level: level, current_level: level, level, window: '30m', ...range },
  };
}

export function behaviorEvent(id: string, b: Behavior, type: BehaviorEvent['type'], previous: BehaviorEvent['data']['previous'], at = T0): BehaviorEvent {
  return { id, type, timestamp: new Date(at).toISOString(), data: { account: { ...ACCOUNT }, behavior: b, previous } };
}

export function delta(changes: Partial<SnapshotDelta> = {}): SnapshotDelta {
  return { upsertUsers: [], removeUserIds: [], upsertBehaviors: [], removeBehaviorIds: [], ...changes };
}

/** One delivery of `events` to `sink` for the default account. */
export function planned(sink: string, events: readonly RiskEvent[], accountId: string = ACCOUNT.id): PlannedDelivery {
  return plannedDelivery(sink, accountId, events);
}

/** A commit of the default account at T0 with nothing in it; fill in what the test needs. */
export function pollCommit(fields: Partial<PollCommit> = {}): PollCommit {
  return { accountId: ACCOUNT.id, expectedVersion: 0, polledAt: T0, delta: delta(), events: [], deliveries: [], ...fields };
}

/** A temp dir for state files (`rw-store-…`), removed with everything in it. */
export interface StateDir {
  readonly dir: string;
  /** A path inside the dir. */
  path(name: string): string;
  remove(): void;
}

export function makeStateDir(): StateDir {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'rw-store-'));
  return {
    dir,
    path: (name) => path.join(dir, name),
    remove() {
      // A test may have left a sub-directory read-only; removal must not depend on it.
      for (const entry of fs.readdirSync(dir, { recursive: true, withFileTypes: true })) {
        if (entry.isDirectory()) fs.chmodSync(path.join(entry.parentPath, entry.name), 0o755);
      }
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** The tables that hold state, in the SQLite file and the PostgreSQL schema alike (not the bookkeeping: holder, sink_holds, leases, replicas). */
export const STATE_TABLES = ['accounts', 'users', 'behaviors', 'events', 'deliveries'] as const;
export type RowCounts = Record<(typeof STATE_TABLES)[number], number>;

/**
 * How many rows of each state table of the SQLite file the transactions committed while `during`
 * ran inserted, updated or deleted (an upsert counts once: SQLite fires its UPDATE triggers only).
 * Counted by AFTER triggers added through a connection of our own, which SQLite runs whichever
 * connection writes the table; a transaction rolled back takes its counts with it. The triggers
 * and their table are gone again afterwards, whatever `during` did.
 */
export async function sqliteWrites(file: string, during: () => Promise<unknown>): Promise<RowCounts> {
  const db = new DatabaseSync(file, { timeout: 5000 });
  try {
    db.exec('CREATE TABLE test_writes (tbl TEXT PRIMARY KEY, n INTEGER NOT NULL) STRICT');
    for (const table of STATE_TABLES) {
      db.prepare('INSERT INTO test_writes VALUES (?, 0)').run(table);
      for (const op of ['INSERT', 'UPDATE', 'DELETE']) {
        db.exec(`CREATE TRIGGER test_${table}_${op.toLowerCase()} AFTER ${op} ON ${table} BEGIN UPDATE test_writes SET n = n + 1 WHERE tbl = '${table}'; END`);
      }
    }
    try {
      await during();
      const counts = {} as RowCounts;
      for (const { tbl, n } of db.prepare('SELECT tbl, n FROM test_writes').all() as { tbl: (typeof STATE_TABLES)[number]; n: number }[]) counts[tbl] = n;
      return counts;
    } finally {
      for (const table of STATE_TABLES) for (const op of ['insert', 'update', 'delete']) db.exec(`DROP TRIGGER test_${table}_${op}`);
      db.exec('DROP TABLE test_writes');
    }
  } finally {
    db.close();
  }
}
