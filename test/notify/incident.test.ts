import { describe, expect, it } from 'vitest';
import type { BehaviorEvent, RiskEvent, UserEvent } from '../../src/detect/events.ts';
import type { RiskLevel } from '../../src/model.ts';
import { incidentKey, incidentStep, MAX_INCIDENT_KEY } from '../../src/notify/incident.ts';
import { behavior } from '../support/snapshots.ts';

const ACCOUNT = { id: '023e105f4ecef8ad9ca31a8372d0c353', name: 'production' };
const USER_ID = '182bd5e5-6e1a-4fe4-a799-aa6d9a6ab26e';
const RANK = { none: 0, low: 1, medium: 2, high: 3 } as const;

function userEvent(previous: RiskLevel | null, current: RiskLevel | null): UserEvent {
  return {
    id: 'e',
    type: RANK[current ?? 'none'] > RANK[previous ?? 'none'] ? 'user.risk_level_raised' : 'user.risk_level_lowered',
    timestamp: '2026-11-22T18:00:05.123Z',
    data: { account: ACCOUNT, user: { user_id: USER_ID, email: 'a@example.com', name: 'A', event_count: 1, last_event: null }, previous_level: previous, current_level: current },
  };
}

function behaviorEvent(type: BehaviorEvent['type'], id = 'imp_travel'): BehaviorEvent {
  return { id: 'b', type, timestamp: '2026-11-22T18:00:05.123Z', data: { account: ACCOUNT, behavior: behavior(id), previous: { enabled: true, risk_level: 'high' } } };
}

const USER_KEY = `riskwatch/${ACCOUNT.id}/user/${USER_ID}`;

describe('incidentStep: open on a rise to min_level or above, close on the drop below it', () => {
  it.each([
    [null, 'high', 'high', 'open'],
    ['low', 'high', 'high', 'open'],
    ['medium', 'high', 'medium', 'open'],
    [null, 'medium', 'high', undefined],
    ['high', 'medium', 'high', 'close'],
    ['high', null, 'high', 'close'],
    ['high', 'medium', 'medium', undefined],
    ['medium', 'low', 'high', undefined],
    ['medium', null, 'medium', 'close'],
  ] as const)('%s → %s with min_level %s: %s', (from, to, min, action) => {
    const step = incidentStep(userEvent(from, to), min);
    expect(step?.action).toBe(action);
    if (step) expect(step.key).toBe(USER_KEY);
  });

  it('a disabled behavior opens, enabled again closes, under one key; other behavior events neither', () => {
    expect(incidentStep(behaviorEvent('behavior.disabled'), 'high')).toEqual({ action: 'open', key: `riskwatch/${ACCOUNT.id}/behavior/imp_travel` });
    expect(incidentStep(behaviorEvent('behavior.enabled'), 'high')).toEqual({ action: 'close', key: `riskwatch/${ACCOUNT.id}/behavior/imp_travel` });
    for (const type of ['behavior.added', 'behavior.removed', 'behavior.risk_level_changed'] as const) expect(incidentStep(behaviorEvent(type), 'low')).toBeUndefined();
  });

  it('a behavior removed while disabled closes its incident: nothing will enable it again', () => {
    const removed = behaviorEvent('behavior.removed');
    const gone: BehaviorEvent = { ...removed, data: { ...removed.data, behavior: { ...removed.data.behavior, enabled: false } } };
    expect(incidentStep(gone, 'high')).toEqual({ action: 'close', key: `riskwatch/${ACCOUNT.id}/behavior/imp_travel` });
  });
});

describe('incidentKey: one key per subject, within 255 characters', () => {
  it('two long behavior ids that share their start get two keys, each at most 255', () => {
    const long = (tail: string): RiskEvent => behaviorEvent('behavior.disabled', `${'x'.repeat(400)}${tail}`);
    const [a, b] = [incidentKey(long('a')), incidentKey(long('b'))];
    expect(a).not.toBe(b);
    expect(a.length).toBeLessThanOrEqual(MAX_INCIDENT_KEY);
    expect(a.startsWith(`riskwatch/${ACCOUNT.id}/behavior/xxx`)).toBe(true);
    expect(incidentKey(long('a'))).toBe(a);
  });

  it('never ends in half a surrogate pair', () => {
    for (let pad = 0; pad < 4; pad++) {
      const key = incidentKey(behaviorEvent('behavior.disabled', `${'y'.repeat(pad)}${'😀'.repeat(200)}`));
      expect(key.isWellFormed()).toBe(true);
    }
  });
});
