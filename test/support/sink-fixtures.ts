import { expect } from 'vitest';
import type { BehaviorEvent, FlappingEvent, LevelChangeEvent, RiskEvent, SettledEvent } from '../../src/detect/events.ts';
import type { Behavior, RiskEventDetail, RiskLevel } from '../../src/model.ts';
import { DeliveryError } from '../../src/notify/sink.ts';
import { behavior as behaviorFixture, riskUser } from './snapshots.ts';

/**
 * What the sinks' tests share: events to render (one of each type, a storm
 * of users highest level first as detect hands them over, hostile strings
 * from the API), and the DeliveryError a send rejected with.
 */

/** The DeliveryError `send` rejected with; fails the test if it resolved or threw anything else. */
export async function deliveryFailure(send: Promise<unknown>): Promise<DeliveryError> {
  const error = await send.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(DeliveryError);
  return error as DeliveryError;
}

export const ACCOUNT = { id: '023e105f4ecef8ad9ca31a8372d0c353', name: 'production' };
export const TIMESTAMP = '2026-11-22T18:00:05.123Z';

export function userEvent(
  n: number,
  level: RiskLevel | null,
  fields: { previous?: RiskLevel | null; type?: LevelChangeEvent['type']; name?: string; email?: string; riskEvents?: readonly RiskEventDetail[] } = {},
): LevelChangeEvent {
  const id = `u${String(n).padStart(4, '0')}`;
  const { max_risk_level: _level, ...user } = riskUser(id, level ?? 'low', {
    name: fields.name ?? `User ${String(n).padStart(4, '0')}`,
    ...(fields.email === undefined ? {} : { email: fields.email }),
  });
  return {
    id: `evt-${id}`,
    type: fields.type ?? 'user.risk_level_raised',
    timestamp: TIMESTAMP,
    data: {
      account: ACCOUNT,
      user,
      previous_level: fields.previous === undefined ? null : fields.previous,
      current_level: level,
      ...(fields.riskEvents ? { risk_events: fields.riskEvents } : {}),
    },
  };
}

export function behaviorEvent(type: BehaviorEvent['type'], behavior: Behavior, previous: BehaviorEvent['data']['previous']): BehaviorEvent {
  return { id: `evt-${type}-${behavior.id}`, type, timestamp: TIMESTAMP, data: { account: ACCOUNT, behavior, previous } };
}

/** `count` users, highest level first, then two behavior changes. */
export function storm(count: number): RiskEvent[] {
  const levels: RiskLevel[] = ['high', 'medium', 'low'];
  const users = Array.from({ length: count }, (_, i) => userEvent(i + 1, levels[Math.floor((i * 3) / count)]!));
  const behaviors = [
    behaviorEvent('behavior.disabled', behaviorFixture('imp_travel', { enabled: false }), { enabled: true, risk_level: 'medium' }),
    behaviorEvent('behavior.added', behaviorFixture('new_geo'), null),
  ];
  return [...users, ...behaviors];
}

const travel = behaviorFixture('imp_travel', { name: 'Impossible travel', description: 'A user signed in from two distant places', risk_level: 'high' });
const riskEvents: RiskEventDetail[] = [
  { id: 're1', name: 'Impossible travel', risk_level: 'high', timestamp: '2026-11-22T17:58:00Z' },
  { id: 're2', name: 'Sign-in from a new country', risk_level: 'medium', timestamp: '2026-11-22T17:40:00Z' },
];

/** The change that made a user flapping: four changes in 30m, between none and high, at low now. */
function flapping(change: LevelChangeEvent): FlappingEvent {
  return { ...change, type: 'user.flapping', data: { ...change.data, level: change.data.current_level, changes: 4, window: '30m', lowest: null, highest: 'high' } };
}

/** A flapping user settled at the level of `at` (its previous and current level), having been between low and high. */
function settled(at: LevelChangeEvent): SettledEvent {
  return { ...at, id: `${at.id}-settled`, type: 'user.settled', data: { ...at.data, level: at.data.current_level, window: '30m', lowest: 'low', highest: 'high' } };
}

/** One event of each type, named after it: the golden payloads. */
export const ONE_OF_EACH: Readonly<Record<RiskEvent['type'], RiskEvent>> = {
  'user.risk_level_raised': userEvent(1, 'high', { previous: 'low', riskEvents }),
  'user.risk_level_lowered': userEvent(2, null, { previous: 'high', type: 'user.risk_level_lowered' }),
  'user.flapping': flapping(userEvent(3, 'low', { previous: 'high', type: 'user.risk_level_lowered' })),
  'user.settled': settled(userEvent(4, 'high', { previous: 'high' })),
  'behavior.enabled': behaviorEvent('behavior.enabled', travel, { enabled: false, risk_level: 'high' }),
  'behavior.disabled': behaviorEvent('behavior.disabled', { ...travel, enabled: false }, { enabled: true, risk_level: 'high' }),
  'behavior.risk_level_changed': behaviorEvent('behavior.risk_level_changed', travel, { enabled: true, risk_level: 'low' }),
  'behavior.added': behaviorEvent('behavior.added', travel, null),
  'behavior.removed': behaviorEvent('behavior.removed', travel, null),
};

/** Strings that would link, format, mention or break markup if a receiver parsed them. */
export const HOSTILE = [
  '[click](https://evil.example)',
  '**bold**',
  '<at>Boss</at>',
  'https://evil.example',
  '<script>alert("x")</script>',
  'Tom & Jerry\'s "quote"',
  '<!channel>',
  '_under_ `code` # head',
] as const;

/** A 10,000-character name of hostile pieces. */
export const LONG = '<at>Boss</at>[x](https://evil.example)**b**&'.repeat(300).slice(0, 10_000);

/** Every field that comes from the API set to a hostile string: names, emails, behavior names and ids, last_event, risk events. */
export function hostileEvents(): RiskEvent[] {
  const details: RiskEventDetail[] = HOSTILE.map((name, i) => ({ id: `re${i}`, name, risk_level: 'high', timestamp: `${name} at noon` }));
  const users = HOSTILE.map((name, i) => {
    const event = userEvent(i + 1, 'high', { previous: 'low', name, email: `${name}@example.com`, riskEvents: details });
    return { ...event, data: { ...event.data, user: { ...event.data.user, last_event: name } } };
  });
  const behaviors = HOSTILE.map((name, i) =>
    behaviorEvent('behavior.disabled', { id: `${name}#${i}`, name, description: name, enabled: false, risk_level: 'high' }, { enabled: true, risk_level: 'high' }),
  );
  return [...users, ...behaviors];
}
