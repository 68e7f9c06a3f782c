import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { RiskEvent } from '../../src/detect/events.ts';
import type { FlappingRules } from '../../src/config/config.ts';
import { applyFlapping, type FlapState, flappingCount } from '../../src/detect/flapping.ts';
import type { RiskLevel } from '../../src/model.ts';
import { ACCOUNT, riskUser, userEvent } from '../support/store-fixtures.ts';

/**
 * The flapping rules (SPEC §9) as tables of level sequences: one poll a
 * second, a user's level at each, and what each poll announces. Then a
 * property: whatever the sequence, once quiet, the last announcement about the
 * user names the level they settled at.
 */

type Level = RiskLevel | null;
const RULES: FlappingRules = { changes: 4, windowMs: 6000 };
const SECOND = 1000;

/** The announcements of each poll for one user whose level at poll i is levels[i] (none before), then `quiet` polls with no change. */
function run(levels: readonly Level[], options: { rules?: FlappingRules; quiet?: number; start?: number } = {}) {
  const rules = options.rules ?? RULES;
  let states = new Map<string, FlapState>();
  let previous: Level = null;
  let id = 0;
  const polls: string[][] = [];
  const all: RiskEvent[] = [];
  const sequence = [...levels, ...Array<Level | undefined>(options.quiet ?? 0).fill(undefined)];
  for (const [i, level] of sequence.entries()) {
    const at = (options.start ?? 0) + i * SECOND;
    const events: RiskEvent[] = [];
    if (level !== undefined && level !== previous) {
      const rank = { none: 0, low: 1, medium: 2, high: 3 };
      const event = userEvent(`evt-${i}`, riskUser(1, level ?? 'low'), previous, level, at);
      events.push(rank[level ?? 'none'] > rank[previous ?? 'none'] ? event : { ...event, type: 'user.risk_level_lowered' });
      previous = level;
    }
    const outcome = applyFlapping(rules, states, events, { at, account: ACCOUNT, newId: () => `settled-${id++}` });
    const next = new Map(states);
    for (const removed of outcome.remove) next.delete(removed);
    for (const [user, state] of outcome.upsert) next.set(user, state);
    states = next;
    all.push(...outcome.events);
    polls.push(outcome.events.map(said));
  }
  return { polls, events: all, states };
}

function said(event: RiskEvent): string {
  if (event.type === 'user.flapping') return `flapping ${event.data.lowest ?? 'none'}..${event.data.highest ?? 'none'} (${event.data.changes} in ${event.data.window})`;
  if (event.type === 'user.settled') return `settled ${event.data.level ?? 'none'}`;
  if (event.type !== 'user.risk_level_raised' && event.type !== 'user.risk_level_lowered') return event.type;
  return `${event.data.previous_level ?? 'none'}→${event.data.current_level ?? 'none'}${event.flapping ? ' (muted)' : ''}`;
}

describe('flapping: the change that reaches `changes` within `window` is user.flapping; later ones are muted; one user.settled once quiet', () => {
  it.each([
    {
      what: 'a steady rise: announced once, never flapping',
      levels: ['low', 'low', 'high', 'high', 'high'],
      quiet: 8,
      expected: [['none→low'], [], ['low→high'], [], [], [], [], [], [], [], [], [], []],
    },
    {
      what: 'three changes within the window: each announced, no flapping',
      levels: ['low', 'high', 'low'],
      quiet: 8,
      expected: [['none→low'], ['low→high'], ['high→low'], [], [], [], [], [], [], [], []],
    },
    {
      what: 'toggled eight times: three plain changes, user.flapping at the fourth, the rest muted, one settled at the level it ends on',
      levels: ['low', 'high', 'low', 'high', 'low', 'high', 'low', 'high'],
      quiet: 7,
      expected: [
        ['none→low'],
        ['low→high'],
        ['high→low'],
        ['flapping none..high (4 in 6s)'],
        ['high→low (muted)'],
        ['low→high (muted)'],
        ['high→low (muted)'],
        ['low→high (muted)'],
        [],
        [],
        [],
        [],
        [],
        ['settled high'],
        [],
      ],
    },
    {
      what: 'settles low: the settled names low, and the range seen while flapping',
      levels: [null, 'low', 'high', 'low', 'high', 'low'],
      quiet: 7,
      expected: [[], ['none→low'], ['low→high'], ['high→low'], ['flapping none..high (4 in 6s)'], ['high→low (muted)'], [], [], [], [], [], ['settled low'], []],
    },
    {
      what: 'four changes spread wider than the window: never flapping',
      levels: ['low', 'low', 'low', 'high', 'high', 'high', 'low', 'low', 'low', 'high'],
      quiet: 0,
      expected: [['none→low'], [], [], ['low→high'], [], [], ['high→low'], [], [], ['low→high']],
    },
    {
      what: 'a change while flapping keeps it flapping: settled only a whole window after the last change',
      levels: ['low', 'high', 'low', 'high', 'high', 'high', 'high', 'high', 'low'],
      quiet: 7,
      expected: [['none→low'], ['low→high'], ['high→low'], ['flapping none..high (4 in 6s)'], [], [], [], [], ['high→low (muted)'], [], [], [], [], [], ['settled low'], []],
    },
  ] as { what: string; levels: Level[]; quiet: number; expected: string[][] }[])('$what', ({ levels, quiet, expected }) => {
    expect(run(levels, { quiet }).polls).toEqual(expected);
  });

  it('flapping again after settling is a new story: a second user.flapping, a second user.settled', () => {
    const toggles: Level[] = ['low', 'high', 'low', 'high'];
    const { polls } = run([...toggles, ...Array<Level>(7).fill('high'), 'low', 'high', 'low', 'high'], { quiet: 7 });
    const all = polls.flat();
    expect(all.filter((s) => s.startsWith('flapping'))).toHaveLength(2);
    expect(all.filter((s) => s.startsWith('settled'))).toEqual(['settled high', 'settled high']);
  });

  it('changes: 2 is the least: the second change within the window is already flapping', () => {
    expect(run(['low', 'high'], { rules: { changes: 2, windowMs: 6000 }, quiet: 7 }).polls.flat()).toEqual(['none→low', 'flapping none..high (2 in 6s)', 'settled high']);
  });

  it('a settled user and a non-flapping user whose changes aged out are forgotten; flapping ones are counted', () => {
    const flapping = run(['low', 'high', 'low', 'high']);
    expect(flappingCount(flapping.states.values())).toBe(1);
    expect(run(['low', 'high', 'low', 'high'], { quiet: 7 }).states.size).toBe(0);
    expect(run(['low'], { quiet: 7 }).states.size).toBe(0);
  });

  it('a settled announcement has an id of its own and names the user as last seen', () => {
    const { events } = run(['low', 'high', 'low', 'high'], { quiet: 7 });
    const settled = events.find((e) => e.type === 'user.settled')!;
    expect(settled).toMatchObject({ id: 'settled-0', data: { account: ACCOUNT, user: { email: 'user1@example.com' }, level: 'high', previous_level: 'high', current_level: 'high' } });
  });
});

describe('other events', () => {
  it('pass untouched, and a behavior change counts toward no one', () => {
    const behavior = {
      id: 'b',
      type: 'behavior.disabled',
      timestamp: 't',
      data: { account: ACCOUNT, behavior: { id: 'x', name: 'x', description: '', enabled: false, risk_level: 'high' }, previous: null },
    } as const;
    const outcome = applyFlapping(RULES, new Map(), [behavior], { at: 0, account: ACCOUNT, newId: () => 'n' });
    expect(outcome).toEqual({ events: [behavior], upsert: new Map(), remove: [], suppressed: 0 });
  });
});

describe('property: once quiet, the last announcement about a user matches the level they settled at', () => {
  const level = fc.constantFrom<Level>(null, 'low', 'medium', 'high');
  it('for any sequence of levels and any rules', () => {
    fc.assert(
      fc.property(fc.array(level, { minLength: 1, maxLength: 40 }), fc.integer({ min: 2, max: 6 }), fc.integer({ min: 2, max: 8 }), (levels, changes, windowSeconds) => {
        const rules = { changes, windowMs: windowSeconds * SECOND };
        const { events } = run(levels, { rules, quiet: windowSeconds + 2 });
        const announced = events.filter((e) => !e.flapping);
        const final = levels.at(-1) ?? null;
        const last = announced.at(-1);
        if (last === undefined) {
          // Nothing was ever announced: the user never left `none`.
          expect(levels.every((l) => l === null)).toBe(true);
          return;
        }
        const lastLevel = last.type === 'user.settled' || last.type === 'user.flapping' ? last.data.level : (last.data as { current_level: Level }).current_level;
        if (last.type === 'user.flapping') throw new Error(`ended flapping, never settled: ${JSON.stringify(levels)}`);
        expect(lastLevel).toBe(final);
      }),
      { numRuns: 500 },
    );
  });
});
