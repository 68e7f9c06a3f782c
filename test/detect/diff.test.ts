import { describe, expect, it } from 'vitest';
import { type CurrentSnapshot, diff, type DiffOptions, type PreviousSnapshot, type SnapshotDelta } from '../../src/detect/diff.ts';
import { type Behavior, LEVEL_RANK, RISK_LEVELS, type RiskLevel, type RiskUser } from '../../src/model.ts';
import { behavior, committed, currentSnapshot, previousSnapshot, riskUser } from '../support/snapshots.ts';
import { mulberry32 } from '../support/random.ts';

const QUIET: DiffOptions = { firstRun: 'baseline' };
const NOTIFY: DiffOptions = { firstRun: 'notify' };

const NO_DELTA: SnapshotDelta = { upsertUsers: [], removeUserIds: [], upsertBehaviors: [], removeBehaviorIds: [] };

function delta(parts: Partial<SnapshotDelta>): SnapshotDelta {
  return { ...NO_DELTA, ...parts };
}

/** Every (before, after) pair of levels where after ranks above before. */
const RISES = RISK_LEVELS.flatMap((from) => RISK_LEVELS.filter((to) => LEVEL_RANK[to] > LEVEL_RANK[from]).map((to) => [from, to] as const));
const DROPS = RISES.map(([low, high]) => [high, low] as const);

describe('user.risk_level_raised: the level is higher than before', () => {
  it('announces low → high with both levels, and writes the user', () => {
    const now = riskUser('u1', 'high');
    const result = diff(previousSnapshot({ users: { u1: 'low' } }), currentSnapshot({ users: [now] }), QUIET);
    expect(result.transitions).toEqual([{ kind: 'user', type: 'user.risk_level_raised', userId: 'u1', user: now, previousLevel: 'low', currentLevel: 'high' }]);
    expect(result.delta).toEqual(delta({ upsertUsers: [now] }));
  });

  it.each(RISES)('announces %s → %s', (from, to) => {
    const result = diff(previousSnapshot({ users: { u1: from } }), currentSnapshot({ users: [riskUser('u1', to)] }), QUIET);
    expect(result.transitions).toMatchObject([{ type: 'user.risk_level_raised', previousLevel: from, currentLevel: to }]);
  });

  it.each(RISK_LEVELS)('a user new to the summary at %s is raised from none (previous_level null)', (level) => {
    const now = riskUser('new', level);
    const result = diff(previousSnapshot({ users: { old: 'low' } }), currentSnapshot({ users: [riskUser('old', 'low'), now] }), QUIET);
    expect(result.transitions).toEqual([{ kind: 'user', type: 'user.risk_level_raised', userId: 'new', user: now, previousLevel: null, currentLevel: level }]);
    expect(result.delta).toEqual(delta({ upsertUsers: [now] }));
  });
});

describe('user.risk_level_lowered: lower than before, always recorded (routing decides who is told)', () => {
  it.each(DROPS)('announces %s → %s', (from, to) => {
    const now = riskUser('u1', to);
    const result = diff(previousSnapshot({ users: { u1: from } }), currentSnapshot({ users: [now] }), QUIET);
    expect(result.transitions).toEqual([{ kind: 'user', type: 'user.risk_level_lowered', userId: 'u1', user: now, previousLevel: from, currentLevel: to }]);
    expect(result.delta).toEqual(delta({ upsertUsers: [now] }));
  });

  it('announces a user who left the summary as lowered to none (currentLevel null, no current user)', () => {
    const result = diff(previousSnapshot({ users: { u1: 'high', u2: 'low' } }), currentSnapshot({ users: [riskUser('u2', 'low')] }), QUIET);
    expect(result.transitions).toEqual([{ kind: 'user', type: 'user.risk_level_lowered', userId: 'u1', user: undefined, previousLevel: 'high', currentLevel: null }]);
    expect(result.delta).toEqual(delta({ removeUserIds: ['u1'] }));
  });
});

describe('an unchanged level is neither announced nor written (a steady poll writes nothing)', () => {
  it.each(RISK_LEVELS)('%s → %s', (level) => {
    const result = diff(previousSnapshot({ users: { u1: level } }), currentSnapshot({ users: [riskUser('u1', level)] }), QUIET);
    expect(result).toEqual({ transitions: [], delta: NO_DELTA, missing: new Set() });
  });

  it('even when the email, name, event count or last event changed', () => {
    const now = riskUser('u1', 'medium', { email: 'renamed@example.com', name: 'Renamed', event_count: 99, last_event: '2026-11-23T00:00:00Z' });
    const result = diff(previousSnapshot({ users: { u1: 'medium' } }), currentSnapshot({ users: [now] }), QUIET);
    expect(result).toEqual({ transitions: [], delta: NO_DELTA, missing: new Set() });
  });
});

describe('behavior.enabled / behavior.disabled: enabled flipped', () => {
  it('announces a behavior switched on, with its previous state', () => {
    const now = behavior('imp_travel', { enabled: true, risk_level: 'high' });
    const result = diff(previousSnapshot({ behaviors: [behavior('imp_travel', { enabled: false, risk_level: 'high' })] }), currentSnapshot({ behaviors: [now] }), QUIET);
    expect(result.transitions).toEqual([{ kind: 'behavior', type: 'behavior.enabled', behavior: now, previous: { enabled: false, risk_level: 'high' } }]);
    expect(result.delta).toEqual(delta({ upsertBehaviors: [now] }));
  });

  it('announces a behavior switched off, with its previous state', () => {
    const now = behavior('high_dlp', { enabled: false, risk_level: 'low' });
    const result = diff(previousSnapshot({ behaviors: [behavior('high_dlp', { enabled: true, risk_level: 'low' })] }), currentSnapshot({ behaviors: [now] }), QUIET);
    expect(result.transitions).toEqual([{ kind: 'behavior', type: 'behavior.disabled', behavior: now, previous: { enabled: true, risk_level: 'low' } }]);
    expect(result.delta).toEqual(delta({ upsertBehaviors: [now] }));
  });
});

describe('behavior.risk_level_changed: risk_level changed', () => {
  it('announces the new level with the old one', () => {
    const now = behavior('sentinel_one', { risk_level: 'high' });
    const result = diff(previousSnapshot({ behaviors: [behavior('sentinel_one', { risk_level: 'low' })] }), currentSnapshot({ behaviors: [now] }), QUIET);
    expect(result.transitions).toEqual([{ kind: 'behavior', type: 'behavior.risk_level_changed', behavior: now, previous: { enabled: true, risk_level: 'low' } }]);
    expect(result.delta).toEqual(delta({ upsertBehaviors: [now] }));
  });

  it('a behavior disabled and re-levelled in one poll gives two transitions, written once', () => {
    const now = behavior('imp_travel', { enabled: false, risk_level: 'high' });
    const result = diff(previousSnapshot({ behaviors: [behavior('imp_travel', { enabled: true, risk_level: 'medium' })] }), currentSnapshot({ behaviors: [now] }), QUIET);
    const previous = { enabled: true, risk_level: 'medium' };
    expect(result.transitions).toEqual([
      { kind: 'behavior', type: 'behavior.disabled', behavior: now, previous },
      { kind: 'behavior', type: 'behavior.risk_level_changed', behavior: now, previous },
    ]);
    expect(result.delta).toEqual(delta({ upsertBehaviors: [now] }));
  });
});

describe('behavior.added / behavior.removed: a behavior id appeared or vanished', () => {
  it('announces a new behavior id as added, with previous null', () => {
    const now = behavior('new_detection');
    const result = diff(previousSnapshot({ behaviors: [behavior('imp_travel')] }), currentSnapshot({ behaviors: [behavior('imp_travel'), now] }), QUIET);
    expect(result.transitions).toEqual([{ kind: 'behavior', type: 'behavior.added', behavior: now, previous: null }]);
    expect(result.delta).toEqual(delta({ upsertBehaviors: [now] }));
  });

  it('announces a vanished behavior as removed, carrying the last one seen', () => {
    const last = behavior('high_dlp', { enabled: false, risk_level: 'high', name: 'High DLP' });
    const result = diff(previousSnapshot({ behaviors: [last, behavior('imp_travel')] }), currentSnapshot({ behaviors: [behavior('imp_travel')] }), QUIET);
    expect(result.transitions).toEqual([{ kind: 'behavior', type: 'behavior.removed', behavior: last, previous: { enabled: false, risk_level: 'high' } }]);
    expect(result.delta).toEqual(delta({ removeBehaviorIds: ['high_dlp'] }));
  });
});

describe('a behavior whose name or description alone changed is written, not announced', () => {
  it.each([
    ['name', { name: 'Impossible travel (v2)' }],
    ['description', { description: 'Now with more travel' }],
  ] as const)('%s', (_field, change) => {
    const now = behavior('imp_travel', change);
    const result = diff(previousSnapshot({ behaviors: [behavior('imp_travel')] }), currentSnapshot({ behaviors: [now] }), QUIET);
    expect(result.transitions).toEqual([]);
    expect(result.delta).toEqual(delta({ upsertBehaviors: [now] }));
  });

  it('an identical behavior is neither announced nor written', () => {
    const result = diff(previousSnapshot({ behaviors: [behavior('imp_travel')] }), currentSnapshot({ behaviors: [behavior('imp_travel')] }), QUIET);
    expect(result).toEqual({ transitions: [], delta: NO_DELTA, missing: new Set() });
  });
});

describe('first run of an account (no stored snapshot)', () => {
  const users = [riskUser('u1', 'low'), riskUser('u2', 'high')];
  const behaviors = [behavior('imp_travel'), behavior('high_dlp', { enabled: false })];
  const current = currentSnapshot({ users, behaviors });

  it('baseline: announces nothing and writes everything', () => {
    const result = diff(undefined, current, QUIET);
    expect(result.transitions).toEqual([]);
    expect(result.delta).toEqual(delta({ upsertUsers: users, upsertBehaviors: behaviors }));
  });

  it('notify: every user is raised from none and every behavior added, and everything is written', () => {
    const result = diff(undefined, current, NOTIFY);
    expect(result.transitions).toEqual([
      { kind: 'user', type: 'user.risk_level_raised', userId: 'u2', user: users[1], previousLevel: null, currentLevel: 'high' },
      { kind: 'user', type: 'user.risk_level_raised', userId: 'u1', user: users[0], previousLevel: null, currentLevel: 'low' },
      { kind: 'behavior', type: 'behavior.added', behavior: behaviors[1], previous: null },
      { kind: 'behavior', type: 'behavior.added', behavior: behaviors[0], previous: null },
    ]);
    expect(result.delta).toEqual(delta({ upsertUsers: users, upsertBehaviors: behaviors }));
  });

  it('first_run only matters on the first run: with a previous snapshot, baseline announces changes', () => {
    const result = diff(previousSnapshot({ users: { u1: 'low' } }), currentSnapshot({ users: [riskUser('u1', 'high')] }), { firstRun: 'baseline' });
    expect(result.transitions).toHaveLength(1);
  });

  it('an empty previous snapshot is not a first run: notify does not re-announce a steady user', () => {
    const result = diff(previousSnapshot({ users: { u1: 'low' } }), currentSnapshot({ users: [riskUser('u1', 'low')] }), NOTIFY);
    expect(result).toEqual({ transitions: [], delta: NO_DELTA, missing: new Set() });
  });
});

describe('a malformed user record keeps that user’s previous state', () => {
  it('a skipped user is neither announced nor removed', () => {
    const result = diff(previousSnapshot({ users: { skipped: 'high', steady: 'low' } }), currentSnapshot({ users: [riskUser('steady', 'low')], skippedUserIds: ['skipped'] }), QUIET);
    expect(result).toEqual({ transitions: [], delta: NO_DELTA, missing: new Set() });
  });

  it('others in the same poll are still detected, including one who really left', () => {
    const raised = riskUser('riser', 'high');
    const result = diff(previousSnapshot({ users: { skipped: 'high', riser: 'low', gone: 'medium' } }), currentSnapshot({ users: [raised], skippedUserIds: ['skipped'] }), QUIET);
    expect(result.transitions).toEqual([
      { kind: 'user', type: 'user.risk_level_raised', userId: 'riser', user: raised, previousLevel: 'low', currentLevel: 'high' },
      { kind: 'user', type: 'user.risk_level_lowered', userId: 'gone', user: undefined, previousLevel: 'medium', currentLevel: null },
    ]);
    expect(result.delta).toEqual(delta({ upsertUsers: [raised], removeUserIds: ['gone'] }));
  });

  it('a skipped id unknown before is not announced as new', () => {
    const result = diff(previousSnapshot(), currentSnapshot({ skippedUserIds: ['stranger'] }), QUIET);
    expect(result).toEqual({ transitions: [], delta: NO_DELTA, missing: new Set() });
  });
});

describe('a malformed record without a usable id: nobody is taken as gone this poll', () => {
  it('missing users are neither announced nor removed while unidentifiedSkips > 0', () => {
    const result = diff(previousSnapshot({ users: { a: 'high', b: 'low' } }), currentSnapshot({ users: [riskUser('a', 'high')], unidentifiedSkips: 1 }), QUIET);
    expect(result).toEqual({ transitions: [], delta: NO_DELTA, missing: new Set() });
  });

  it('users who are present are still compared', () => {
    const now = riskUser('a', 'high');
    const result = diff(previousSnapshot({ users: { a: 'low', b: 'low' } }), currentSnapshot({ users: [now], unidentifiedSkips: 2 }), QUIET);
    expect(result.transitions).toEqual([{ kind: 'user', type: 'user.risk_level_raised', userId: 'a', user: now, previousLevel: 'low', currentLevel: 'high' }]);
    expect(result.delta).toEqual(delta({ upsertUsers: [now] }));
  });

  it('behaviors are not held back by a malformed user record', () => {
    const result = diff(previousSnapshot({ users: { a: 'low' }, behaviors: [behavior('gone')] }), currentSnapshot({ unidentifiedSkips: 1 }), QUIET);
    expect(result.transitions).toMatchObject([{ type: 'behavior.removed', behavior: { id: 'gone' } }]);
    expect(result.delta).toEqual(delta({ removeBehaviorIds: ['gone'] }));
  });
});

describe('a summary read over several pages: a user is gone only when two reads in a row miss them', () => {
  it('keeps a user missing for the first time, and reports them missing', () => {
    const result = diff(previousSnapshot({ users: { a: 'high', b: 'low' } }), { ...currentSnapshot({ users: [riskUser('a', 'high')] }), missingLastTime: new Set() }, QUIET);
    expect(result).toEqual({ transitions: [], delta: NO_DELTA, missing: new Set(['b']) });
  });

  it('announces and removes a user the last read missed too', () => {
    const result = diff(previousSnapshot({ users: { a: 'high', b: 'low' } }), { ...currentSnapshot({ users: [riskUser('a', 'high')] }), missingLastTime: new Set(['b']) }, QUIET);
    expect(result.transitions).toMatchObject([{ type: 'user.risk_level_lowered', userId: 'b', previousLevel: 'low', currentLevel: null }]);
    expect(result.delta).toEqual(delta({ removeUserIds: ['b'] }));
  });

  it('takes a one-page read as it is', () => {
    const result = diff(previousSnapshot({ users: { a: 'high', b: 'low' } }), currentSnapshot({ users: [riskUser('a', 'high')] }), QUIET);
    expect(result.delta).toEqual(delta({ removeUserIds: ['b'] }));
    expect(result.missing).toEqual(new Set(['b']));
  });
});

describe('a malformed behavior record keeps that behavior’s previous state', () => {
  it('a skipped behavior is neither announced as removed nor deleted', () => {
    const result = diff(
      previousSnapshot({ behaviors: [behavior('imp_travel'), behavior('high_dlp')] }),
      currentSnapshot({ behaviors: [behavior('imp_travel')], skippedBehaviorIds: ['high_dlp'] }),
      QUIET,
    );
    expect(result).toEqual({ transitions: [], delta: NO_DELTA, missing: new Set() });
  });

  it('a skipped behavior unknown before is not announced as added', () => {
    const result = diff(previousSnapshot(), currentSnapshot({ skippedBehaviorIds: ['mystery'] }), QUIET);
    expect(result).toEqual({ transitions: [], delta: NO_DELTA, missing: new Set() });
  });
});

describe('announcement order is deterministic', () => {
  // Each pair of neighbours below is ordered by exactly one rule; emails and ids sort in opposite orders.
  const previous = previousSnapshot({
    users: { risen_from_medium: 'medium', low_1: 'low', low_2: 'low', same_2: 'low', same_1: 'low', dropped: 'high', left_high: 'high', left_low: 'low' },
    behaviors: [behavior('m_changed', { enabled: true, risk_level: 'low' }), behavior('z_removed'), behavior('b_removed')],
  });
  const users = [
    riskUser('newcomer', 'high', { email: 'a0@example.com' }),
    riskUser('same_2', 'high', { email: 'same@example.com' }),
    riskUser('low_1', 'high', { email: 'b@example.com' }),
    riskUser('dropped', 'medium', { email: 'a@example.com' }),
    riskUser('same_1', 'high', { email: 'same@example.com' }),
    riskUser('low_2', 'high', { email: 'a@example.com' }),
    riskUser('risen_from_medium', 'high', { email: 'z@example.com' }),
  ];
  const behaviors = [behavior('m_changed', { enabled: false, risk_level: 'high' }), behavior('a_added')];
  const expectedOrder = [
    // current high: previous medium, then previous low (by email, then id), then previous none
    'user.risk_level_raised risen_from_medium',
    'user.risk_level_raised low_2',
    'user.risk_level_raised low_1',
    'user.risk_level_raised same_1',
    'user.risk_level_raised same_2',
    'user.risk_level_raised newcomer',
    // current medium
    'user.risk_level_lowered dropped',
    // current none: previous high before previous low
    'user.risk_level_lowered left_high',
    'user.risk_level_lowered left_low',
    // behaviors after users, by id
    'behavior.added a_added',
    'behavior.removed b_removed',
    'behavior.disabled m_changed',
    'behavior.risk_level_changed m_changed',
    'behavior.removed z_removed',
  ];
  const describeTransitions = (result: ReturnType<typeof diff>) => result.transitions.map((t) => `${t.type} ${t.kind === 'user' ? t.userId : t.behavior.id}`);

  it('users by current level, then previous level, then email, then id; behaviors after them by id', () => {
    expect(describeTransitions(diff(previous, currentSnapshot({ users, behaviors }), QUIET))).toEqual(expectedOrder);
  });

  it('whatever order the API listed them in', () => {
    const reversed = currentSnapshot({ users: [...users].reverse(), behaviors: [...behaviors].reverse() });
    const reversedPrevious: PreviousSnapshot = {
      userLevels: new Map([...previous.userLevels].reverse()),
      behaviors: new Map([...previous.behaviors].reverse()),
    };
    expect(describeTransitions(diff(reversedPrevious, reversed, QUIET))).toEqual(expectedOrder);
  });
});

// ---------------------------------------------------------------------------
// Properties over random snapshot pairs.

interface RandomPair {
  readonly seed: number;
  readonly previous: PreviousSnapshot | undefined;
  readonly current: CurrentSnapshot;
}

function randomPair(seed: number): RandomPair {
  const random = mulberry32(seed);
  const chance = (p: number) => random() < p;
  const pick = <T>(items: readonly T[]): T => items[Math.floor(random() * items.length)]!;
  const emails = ['a@example.com', 'b@example.com', 'c@example.com'];

  const previousLevels: Record<string, RiskLevel> = {};
  const users = [];
  const skippedUserIds = [];
  const userCount = Math.floor(random() * 25);
  for (let i = 0; i < userCount; i++) {
    const id = `u${i}`;
    if (chance(0.6)) previousLevels[id] = pick(RISK_LEVELS);
    if (chance(0.65)) users.push(riskUser(id, pick(RISK_LEVELS), { email: pick(emails) }));
    else if (chance(0.15)) skippedUserIds.push(id);
  }

  const previousBehaviors: Behavior[] = [];
  const behaviors: Behavior[] = [];
  const skippedBehaviorIds = [];
  const behaviorCount = Math.floor(random() * 8);
  for (let i = 0; i < behaviorCount; i++) {
    const id = `b${i}`;
    const was = behavior(id, { enabled: chance(0.5), risk_level: pick(RISK_LEVELS) });
    if (chance(0.7)) previousBehaviors.push(was);
    if (chance(0.7)) {
      behaviors.push({
        ...was,
        enabled: chance(0.3) ? !was.enabled : was.enabled,
        risk_level: chance(0.3) ? pick(RISK_LEVELS) : was.risk_level,
        name: chance(0.2) ? `${was.name} (renamed)` : was.name,
        description: chance(0.2) ? `${was.description}, differently` : was.description,
      });
    } else if (chance(0.2)) skippedBehaviorIds.push(id);
  }

  return {
    seed,
    previous: chance(0.1) ? undefined : previousSnapshot({ users: previousLevels, behaviors: previousBehaviors }),
    current: currentSnapshot({
      users,
      behaviors,
      skippedUserIds,
      unidentifiedSkips: chance(0.15) ? 1 + Math.floor(random() * 3) : 0,
      skippedBehaviorIds,
    }),
  };
}

/** What the store should hold after the poll: what was seen, plus the previous state of whatever could not be judged. */
function expectedState({ previous, current }: RandomPair): { levels: Map<string, RiskLevel>; behaviors: Map<string, Behavior> } {
  const levels = new Map(([...current.users.values()] as RiskUser[]).map((u) => [u.user_id, u.max_risk_level]));
  for (const [id, level] of previous?.userLevels ?? []) {
    if (!current.users.has(id) && (current.skippedUserIds.has(id) || current.unidentifiedSkips > 0)) levels.set(id, level);
  }
  const behaviors = new Map(current.behaviors);
  for (const [id, was] of previous?.behaviors ?? []) {
    if (!current.behaviors.has(id) && current.skippedBehaviorIds.has(id)) behaviors.set(id, was);
  }
  return { levels, behaviors };
}

const sorted = <K, V>(map: Map<K, V>) => [...map].sort(([a], [b]) => (String(a) < String(b) ? -1 : 1));

const PAIRS = Array.from({ length: 500 }, (_, i) => randomPair(0x5eed + i));

describe('properties over 500 random snapshot pairs', () => {
  it('the generator covers every kind of case', () => {
    const all = PAIRS.map((p) => diff(p.previous, p.current, QUIET));
    const types = new Set(all.flatMap((r) => r.transitions.map((t) => t.type)));
    expect([...types].sort()).toEqual([
      'behavior.added',
      'behavior.disabled',
      'behavior.enabled',
      'behavior.removed',
      'behavior.risk_level_changed',
      'user.risk_level_lowered',
      'user.risk_level_raised',
    ]);
    expect(PAIRS.filter((p) => p.current.unidentifiedSkips > 0).length).toBeGreaterThan(20);
    expect(PAIRS.filter((p) => p.current.skippedUserIds.size > 0 && p.previous).length).toBeGreaterThan(20);
    expect(PAIRS.filter((p) => p.previous === undefined).length).toBeGreaterThan(20);
  });

  it('(a) applying the delta to the previous state yields the current state, writing only what changed', () => {
    for (const pair of PAIRS) {
      for (const options of [QUIET, QUIET, NOTIFY]) {
        const { delta: d } = diff(pair.previous, pair.current, options);
        const levels = new Map(pair.previous?.userLevels);
        const behaviors = new Map(pair.previous?.behaviors);
        for (const user of d.upsertUsers) {
          expect(levels.get(user.user_id), `seed ${pair.seed}: ${user.user_id} rewritten at an unchanged level`).not.toBe(user.max_risk_level);
          levels.set(user.user_id, user.max_risk_level);
        }
        for (const id of d.removeUserIds) {
          expect(levels.has(id), `seed ${pair.seed}: removes unknown user ${id}`).toBe(true);
          levels.delete(id);
        }
        for (const b of d.upsertBehaviors) {
          expect(behaviors.get(b.id), `seed ${pair.seed}: ${b.id} rewritten unchanged`).not.toEqual(b);
          behaviors.set(b.id, b);
        }
        for (const id of d.removeBehaviorIds) {
          expect(behaviors.has(id), `seed ${pair.seed}: removes unknown behavior ${id}`).toBe(true);
          behaviors.delete(id);
        }
        const expected = expectedState(pair);
        expect(sorted(levels), `seed ${pair.seed}`).toEqual(sorted(expected.levels));
        expect(sorted(behaviors), `seed ${pair.seed}`).toEqual(sorted(expected.behaviors));
      }
    }
  });

  it('(b) replaying the user transitions on the previous levels yields the current levels', () => {
    for (const pair of PAIRS.filter((p) => p.previous !== undefined)) {
      const { transitions } = diff(pair.previous, pair.current, QUIET);
      const levels = new Map(pair.previous!.userLevels);
      for (const t of transitions) {
        if (t.kind !== 'user') continue;
        expect(pair.previous!.userLevels.get(t.userId) ?? null, `seed ${pair.seed}: previousLevel of ${t.userId}`).toBe(t.previousLevel);
        expect(t.user?.max_risk_level ?? null, `seed ${pair.seed}: currentLevel of ${t.userId}`).toBe(t.currentLevel);
        const direction = LEVEL_RANK[t.currentLevel ?? 'none'] > LEVEL_RANK[t.previousLevel ?? 'none'] ? 'user.risk_level_raised' : 'user.risk_level_lowered';
        expect(t.type, `seed ${pair.seed}: type of ${t.userId}`).toBe(direction);
        if (t.currentLevel === null) levels.delete(t.userId);
        else levels.set(t.userId, t.currentLevel);
      }
      expect(sorted(levels), `seed ${pair.seed}`).toEqual(sorted(expectedState(pair).levels));
    }
  });

  it('(c) no user appears in two transitions', () => {
    for (const pair of PAIRS) {
      for (const options of [QUIET, NOTIFY]) {
        const ids = diff(pair.previous, pair.current, options).transitions.flatMap((t) => (t.kind === 'user' ? [t.userId] : []));
        expect(new Set(ids).size, `seed ${pair.seed}: ${ids.join(',')}`).toBe(ids.length);
      }
    }
  });

  it('(d) diff(x, x) is empty: no transitions and nothing to write', () => {
    for (const pair of PAIRS) {
      for (const options of [QUIET, QUIET, NOTIFY]) {
        expect(diff(committed(pair.current), pair.current, options), `seed ${pair.seed}`).toEqual({ transitions: [], delta: NO_DELTA, missing: new Set() });
      }
    }
  });

  it('(e) users the reader only marked as unchanged (same level as before) change nothing in the result', () => {
    for (const pair of PAIRS) {
      if (!pair.previous) continue;
      const levels = pair.previous.userLevels;
      const same = new Set([...pair.current.users].filter(([id, u]) => levels.get(id) === u.max_risk_level).map(([id]) => id));
      const users = new Map([...pair.current.users].filter(([id]) => !same.has(id)));
      const unchanged = { count: same.size, has: (id: string) => same.has(id) };
      for (const options of [QUIET, QUIET]) {
        expect(diff(pair.previous, { ...pair.current, users, unchanged }, options), `seed ${pair.seed}`).toEqual(diff(pair.previous, pair.current, options));
      }
    }
  });
});
