import { describe, expect, it } from 'vitest';
import type { BehaviorTransition, Transition, UserTransition } from '../../src/detect/diff.ts';
import { buildEvents, type EventContext, type RiskEvent } from '../../src/detect/events.ts';
import type { RiskEventDetail, RiskUser } from '../../src/model.ts';
import { behavior, riskUser, sequentialIds } from '../support/snapshots.ts';

const AT = Date.UTC(2026, 10, 22, 18, 0, 5, 123);
const TIMESTAMP = '2026-11-22T18:00:05.123Z';
const ACCOUNT = { id: '023e105f4ecef8ad9ca31a8372d0c353', name: 'production' };

function context(parts: Partial<EventContext> = {}): EventContext {
  return { account: ACCOUNT, at: AT, newId: sequentialIds(), departedUsers: new Map(), ...parts };
}

function raised(user: RiskUser, previousLevel: UserTransition['previousLevel']): UserTransition {
  return { kind: 'user', type: 'user.risk_level_raised', userId: user.user_id, user, previousLevel, currentLevel: user.max_risk_level };
}

function departed(userId: string, previousLevel: UserTransition['previousLevel']): UserTransition {
  return { kind: 'user', type: 'user.risk_level_lowered', userId, user: undefined, previousLevel, currentLevel: null };
}

/** SPEC §5's `data.user`: the summary row without its level. */
function userFields(user: RiskUser) {
  return { user_id: user.user_id, email: user.email, name: user.name, event_count: user.event_count, last_event: user.last_event };
}

const alice = riskUser('182bd5e5-6e1a-4fe4-a799-aa6d9a6ab26e', 'high', { email: 'a@example.com', name: 'A', event_count: 3, last_event: '2026-11-22T17:59:00Z' });
const travel: RiskEventDetail = { id: 're-1', name: 'Impossible travel', risk_level: 'high', timestamp: '2026-11-22T17:58:00Z' };

describe('user.risk_level_raised carries SPEC §5 data', () => {
  it('account, user fields, both levels; no risk_events when enrichment gave none', () => {
    const [event] = buildEvents([raised(alice, 'low')], context());
    expect(event).toStrictEqual({
      id: 'evt-1',
      type: 'user.risk_level_raised',
      timestamp: TIMESTAMP,
      data: {
        account: ACCOUNT,
        user: { user_id: alice.user_id, email: 'a@example.com', name: 'A', event_count: 3, last_event: '2026-11-22T17:59:00Z' },
        previous_level: 'low',
        current_level: 'high',
      },
    });
    expect(event!.data).not.toHaveProperty('risk_events');
  });

  it('previous_level is null for a user new to the summary', () => {
    const [event] = buildEvents([raised(alice, null)], context());
    expect(event!.data).toStrictEqual({ account: ACCOUNT, user: userFields(alice), previous_level: null, current_level: 'high' });
  });

  it('risk_events are included when enrichment reached the user', () => {
    const withDetails: RiskEventDetail = { ...travel, id: 're-2', event_details: { from: 'Lisbon', to: 'Tokyo' } };
    const [event] = buildEvents([raised(alice, 'medium')], context({ riskEvents: new Map([[alice.user_id, [travel, withDetails]]]) }));
    expect(event!.data).toStrictEqual({
      account: ACCOUNT,
      user: userFields(alice),
      previous_level: 'medium',
      current_level: 'high',
      risk_events: [travel, withDetails],
    });
  });

  it('risk_events are omitted for a user enrichment did not reach', () => {
    const bob = riskUser('bob', 'medium');
    const [event] = buildEvents([raised(bob, 'low')], context({ riskEvents: new Map([[alice.user_id, [travel]]]) }));
    expect(event!.data).toStrictEqual({ account: ACCOUNT, user: userFields(bob), previous_level: 'low', current_level: 'medium' });
  });

  it('an account without a name carries name null', () => {
    const account = { id: 'acc-1', name: null };
    const [event] = buildEvents([raised(alice, 'low')], context({ account }));
    expect(event!.data.account).toStrictEqual({ id: 'acc-1', name: null });
  });

  it('the payload is plain JSON: it survives serialisation unchanged', () => {
    const events = buildEvents([raised(alice, 'low')], context({ riskEvents: new Map([[alice.user_id, [travel]]]) }));
    expect(JSON.parse(JSON.stringify(events))).toStrictEqual(events);
  });
});

describe('user.risk_level_lowered for a user who left the summary', () => {
  it('carries the user fields last stored for them, and current_level null', () => {
    const stored = riskUser('gone', 'high', { email: 'gone@example.com', name: 'Gone', event_count: 7, last_event: '2026-11-21T09:00:00Z' });
    const [event] = buildEvents([departed('gone', 'high')], context({ departedUsers: new Map([['gone', stored]]) }));
    expect(event).toStrictEqual({
      id: 'evt-1',
      type: 'user.risk_level_lowered',
      timestamp: TIMESTAMP,
      data: {
        account: ACCOUNT,
        user: { user_id: 'gone', email: 'gone@example.com', name: 'Gone', event_count: 7, last_event: '2026-11-21T09:00:00Z' },
        previous_level: 'high',
        current_level: null,
      },
    });
  });

  it('is still announced under the user id when nothing was stored for them', () => {
    const [event] = buildEvents([departed('unknown', 'low')], context());
    expect(event).toMatchObject({ type: 'user.risk_level_lowered', data: { user: { user_id: 'unknown' }, previous_level: 'low', current_level: null } });
  });

  it('a user still in the summary who dropped uses their current fields, not stored ones', () => {
    const now = riskUser('u1', 'low', { email: 'now@example.com' });
    const transition: UserTransition = { kind: 'user', type: 'user.risk_level_lowered', userId: 'u1', user: now, previousLevel: 'high', currentLevel: 'low' };
    const stale = riskUser('u1', 'high', { email: 'stale@example.com' });
    const [event] = buildEvents([transition], context({ departedUsers: new Map([['u1', stale]]) }));
    expect(event!.data).toStrictEqual({ account: ACCOUNT, user: userFields(now), previous_level: 'high', current_level: 'low' });
  });
});

describe('behavior events carry SPEC §5 data: account, behavior, previous', () => {
  const before = { enabled: true, risk_level: 'medium' } as const;
  it.each([
    ['behavior.enabled', behavior('imp_travel', { enabled: true }), { enabled: false, risk_level: 'medium' }],
    ['behavior.disabled', behavior('imp_travel', { enabled: false }), before],
    ['behavior.risk_level_changed', behavior('imp_travel', { risk_level: 'high' }), before],
    ['behavior.added', behavior('new_one'), null],
    // removed: the transition carries the last behavior seen
    ['behavior.removed', behavior('high_dlp', { enabled: false, risk_level: 'low' }), { enabled: false, risk_level: 'low' }],
  ] as const)('%s', (type, subject, previous) => {
    const transition: BehaviorTransition = { kind: 'behavior', type, behavior: subject, previous };
    const [event] = buildEvents([transition], context());
    expect(event).toStrictEqual({
      id: 'evt-1',
      type,
      timestamp: TIMESTAMP,
      data: {
        account: ACCOUNT,
        behavior: { id: subject.id, name: subject.name, description: subject.description, enabled: subject.enabled, risk_level: subject.risk_level },
        previous,
      },
    });
  });
});

describe('ids, timestamp and order', () => {
  const transitions: Transition[] = [
    raised(alice, 'low'),
    departed('gone', 'medium'),
    { kind: 'behavior', type: 'behavior.added', behavior: behavior('b1'), previous: null },
    raised(riskUser('bob', 'low'), null),
  ];

  it('keeps the transitions’ order, takes each id from newId in turn, and stamps every event with the poll time', () => {
    const events = buildEvents(transitions, context());
    expect(events.map((e: RiskEvent) => [e.id, e.type, e.timestamp])).toEqual([
      ['evt-1', 'user.risk_level_raised', TIMESTAMP],
      ['evt-2', 'user.risk_level_lowered', TIMESTAMP],
      ['evt-3', 'behavior.added', TIMESTAMP],
      ['evt-4', 'user.risk_level_raised', TIMESTAMP],
    ]);
    expect(events.map((e) => ('user' in e.data ? e.data.user.user_id : e.data.behavior.id))).toEqual([alice.user_id, 'gone', 'b1', 'bob']);
  });

  it('asks newId once per event', () => {
    let calls = 0;
    buildEvents(transitions, context({ newId: () => `id-${++calls}` }));
    expect(calls).toBe(transitions.length);
  });

  it('no transitions, no events', () => {
    expect(buildEvents([], context())).toEqual([]);
  });
});
