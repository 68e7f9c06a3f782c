import { describe, expect, it } from 'vitest';
import type { BehaviorEvent, UserEvent } from '../../src/detect/events.ts';
import { formatEventLine } from '../../src/notify/sinks/console.ts';
import { behavior } from '../support/snapshots.ts';
import { ONE_OF_EACH } from '../support/sink-fixtures.ts';

const TIMESTAMP = '2026-11-22T18:00:05.123Z';
const ACCOUNT = { id: '023e105f4ecef8ad9ca31a8372d0c353', name: 'production' };

function userEvent(fields: { name?: string; email?: string; account?: UserEvent['data']['account'] } = {}, data: Partial<UserEvent['data']> = {}): UserEvent {
  return {
    id: 'evt-1',
    type: 'user.risk_level_raised',
    timestamp: TIMESTAMP,
    data: {
      account: fields.account ?? ACCOUNT,
      user: { user_id: 'u1', email: fields.email ?? 'a@example.com', name: fields.name ?? 'Alice', event_count: 3, last_event: '2026-11-22T17:59:00Z' },
      previous_level: 'low',
      current_level: 'high',
      ...data,
    },
  };
}

function behaviorEvent(type: BehaviorEvent['type'], data: Partial<BehaviorEvent['data']> = {}): BehaviorEvent {
  return {
    id: 'evt-2',
    type,
    timestamp: TIMESTAMP,
    data: {
      account: ACCOUNT,
      behavior: behavior('imp_travel', { name: 'Impossible travel', enabled: false, risk_level: 'high' }),
      previous: { enabled: true, risk_level: 'high' },
      ...data,
    },
  };
}

// C0, DEL and C1 control characters.
const CONTROL = /[\u0000-\u001f\u007f-\u009f]/;

describe('formatEventLine: one readable line per event', () => {
  it('a raised user: time, account, type, who, levels, event id', () => {
    expect(formatEventLine(userEvent())).toBe('2026-11-22T18:00:05.123Z [production] user.risk_level_raised Alice <a@example.com> low -> high (event evt-1)');
  });

  it('a user new to the summary shows none as the previous level', () => {
    expect(formatEventLine(userEvent({}, { previous_level: null }))).toContain(' none -> high ');
  });

  it('a user who left the summary shows none as the current level', () => {
    const event: UserEvent = { ...userEvent({}, { previous_level: 'high', current_level: null }), type: 'user.risk_level_lowered' };
    expect(formatEventLine(event)).toBe('2026-11-22T18:00:05.123Z [production] user.risk_level_lowered Alice <a@example.com> high -> none (event evt-1)');
  });

  it('a user without a name shows the email alone', () => {
    expect(formatEventLine(userEvent({ name: '' }))).toContain(' user.risk_level_raised <a@example.com> low -> high ');
  });

  it('names the risk events behind the alert when enrichment found them', () => {
    const risk_events = [
      { id: 're-1', name: 'Impossible travel', risk_level: 'high', timestamp: TIMESTAMP },
      { id: 're-2', name: 'High DLP', risk_level: 'medium', timestamp: TIMESTAMP },
    ] as const;
    expect(formatEventLine(userEvent({}, { risk_events }))).toContain(' low -> high (Impossible travel, High DLP) (event evt-1)');
  });

  it('an account without a name is shown by its id', () => {
    expect(formatEventLine(userEvent({ account: { id: 'acc-1', name: null } }))).toContain(' [acc-1] ');
  });

  it('a behavior change: name, id, state before and after', () => {
    expect(formatEventLine(behaviorEvent('behavior.disabled'))).toBe(
      '2026-11-22T18:00:05.123Z [production] behavior.disabled Impossible travel [imp_travel] enabled, high -> disabled, high (event evt-2)',
    );
  });

  it('a behavior re-levelled', () => {
    const event = behaviorEvent('behavior.risk_level_changed', {
      behavior: behavior('imp_travel', { name: 'Impossible travel', enabled: true, risk_level: 'high' }),
      previous: { enabled: true, risk_level: 'low' },
    });
    expect(formatEventLine(event)).toContain(' behavior.risk_level_changed Impossible travel [imp_travel] enabled, low -> enabled, high (event evt-2)');
  });

  it('an added behavior has no previous state', () => {
    const event = behaviorEvent('behavior.added', { previous: null });
    expect(formatEventLine(event)).toContain(' behavior.added Impossible travel [imp_travel] disabled, high (event evt-2)');
  });
});

describe('formatEventLine: strings from the API cannot break or forge lines', () => {
  const hostile = 'Mallory\n2026-11-22T18:00:06.000Z [production] user.risk_level_lowered Boss <boss@example.com> high -> none\r\u001b[31mRED\u001b[0m\u0007\u0085';

  it.each([
    ['a user name', () => userEvent({ name: hostile })],
    ['a user email', () => userEvent({ email: hostile })],
    ['an account name', () => userEvent({ account: { id: 'acc-1', name: hostile } })],
    ['a risk event name', () => userEvent({}, { risk_events: [{ id: 're-1', name: hostile, risk_level: 'high', timestamp: TIMESTAMP }] })],
    ['a behavior name', () => behaviorEvent('behavior.disabled', { behavior: behavior('imp_travel', { name: hostile }) })],
    ['a behavior id', () => behaviorEvent('behavior.added', { behavior: behavior(hostile), previous: null })],
  ])('%s with newline, carriage return and ANSI escapes stays one line without control characters', (_label, build) => {
    const event = build();
    const line = formatEventLine(event);
    expect(line).not.toMatch(CONTROL);
    expect(line.split(/\r\n|\r|\n/)).toHaveLength(1);
    // The text itself is kept, so the operator still sees what the API sent.
    expect(line).toContain('Mallory');
    expect(line).toContain('[31mRED');
    expect(line.endsWith(`(event ${event.id})`)).toBe(true);
  });
});

describe('console lines cannot be broken or reversed by Unicode separators', () => {
  it('replaces U+2028, U+2029 and bidi overrides', () => {
    const line = formatEventLine({
      id: 'e1',
      type: 'behavior.added',
      timestamp: '2026-11-22T18:00:00.000Z',
      data: {
        account: { id: 'acc', name: null },
        behavior: { id: 'x', name: 'A\u2028B\u2029C\u202eD\u2066E', description: '', enabled: true, risk_level: 'low' },
        previous: null,
      },
    });
    expect(line).not.toMatch(/[\u2028\u2029\u202a-\u202e\u2066-\u2069]/);
    expect(line).toContain('A?B?C?D?E');
  });
});

describe('formatEventLine: a flapping user (SPEC §9)', () => {
  it('says user.flapping and user.settled on one line each', () => {
    expect(formatEventLine(ONE_OF_EACH['user.flapping'])).toBe(
      '2026-11-22T18:00:05.123Z [production] user.flapping User 0003 <u0003@example.com> is flapping between none and high, 4 level changes in 30m, low now (event evt-u0003)',
    );
    expect(formatEventLine(ONE_OF_EACH['user.settled'])).toBe(
      '2026-11-22T18:00:05.123Z [production] user.settled User 0004 <u0004@example.com> settled at high, after flapping between low and high (event evt-u0004-settled)',
    );
  });
});
