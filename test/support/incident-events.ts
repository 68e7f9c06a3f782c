import { createHash } from 'node:crypto';
import { expect } from 'vitest';
import type { SinkConfig } from '../../src/config/config.ts';
import type { BehaviorEvent, RiskEvent, UserEvent } from '../../src/detect/events.ts';
import type { RiskLevel } from '../../src/model.ts';
import { routeEvents } from '../../src/notify/route.ts';
import type { Sink } from '../../src/notify/sink.ts';
import { ACCOUNT, behavior, behaviorEvent, flappingEvent, riskUser, settledEvent, userEvent } from './store-fixtures.ts';

/**
 * The events the incident receivers' tests (PagerDuty, Opsgenie) render, for a
 * sink with `min_level: medium`: each case of SPEC §2 and §5 by event type, a
 * storm, a 10,000-character name and hostile strings; and the steps both
 * tests take with them.
 */
export const MIN_LEVEL: RiskLevel = 'medium';

/** User cases by event type: what opens, what closes, and what says nothing. */
export const USER_CASES: Record<UserEvent['type'], Record<string, UserEvent>> = {
  'user.risk_level_raised': {
    'low → high (opens)': userEvent('evt-raised', riskUser(1), 'low', 'high'),
    'none → medium, new to the summary (opens)': userEvent('evt-new', riskUser(2), null, 'medium'),
    'none → low, below min_level (nothing)': userEvent('evt-raised-low', riskUser(3), null, 'low'),
  },
  'user.risk_level_lowered': {
    'high → low, below min_level (closes)': userEvent('evt-lowered', riskUser(1), 'high', 'low'),
    'medium → none, left the summary (closes)': userEvent('evt-left', riskUser(2), 'medium', null),
    'high → medium, still at min_level (nothing)': userEvent('evt-lowered-within', riskUser(4), 'high', 'medium'),
  },
  'user.flapping': {
    'flapping, up to high (opens)': flappingEvent('evt-flapping', riskUser(5), 'high', 'low', { lowest: 'low', highest: 'high' }),
    'flapping below min_level (nothing)': flappingEvent('evt-flapping-low', riskUser(6), null, 'low', { lowest: null, highest: 'low' }),
  },
  'user.settled': {
    'settled low after high (closes)': settledEvent('evt-settled-low', riskUser(5), 'low', { lowest: 'low', highest: 'high' }),
    'settled high (opens, or keeps it open)': settledEvent('evt-settled-high', riskUser(7), 'high', { lowest: 'low', highest: 'high' }),
  },
};

const travel = behavior('imp_travel', { name: 'Impossible travel', description: 'Logins from places too far apart', risk_level: 'high' });

export const BEHAVIOR_EVENTS: Record<BehaviorEvent['type'], BehaviorEvent> = {
  'behavior.disabled': behaviorEvent('evt-disabled', { ...travel, enabled: false }, 'behavior.disabled', { enabled: true, risk_level: 'high' }),
  'behavior.enabled': behaviorEvent('evt-enabled', travel, 'behavior.enabled', { enabled: false, risk_level: 'high' }),
  'behavior.risk_level_changed': behaviorEvent('evt-relevelled', travel, 'behavior.risk_level_changed', { enabled: true, risk_level: 'low' }),
  'behavior.added': behaviorEvent('evt-added', travel, 'behavior.added', null),
  'behavior.removed': behaviorEvent('evt-removed', travel, 'behavior.removed', { enabled: true, risk_level: 'high' }),
};

/** `count` users new to the summary at high, in one poll. */
export function storm(count = 500): UserEvent[] {
  return Array.from({ length: count }, (_, i) => userEvent(`evt-storm-${i + 1}`, riskUser(i + 1), null, 'high'));
}

export const LONG_NAME = 'Bartholomew 🚀 '.repeat(1000).slice(0, 10_000);

export function longNameEvent(): UserEvent {
  return userEvent('evt-long', riskUser(7, 'high', { name: LONG_NAME }), 'low', 'high');
}

/** Line breaks, JSON and markup look-alikes, a forged routing key, bidi overrides, an emoji. */
export const HOSTILE = 'Mallory\r\nseverity: info"},"routing_key":"00000000000000000000000000000000","x":"\u202eevil\u2066 <script>alert(1)</script> {{7*7}} ${7*7} 🚀';
/** A behavior id that is not one path segment as it stands. */
export const HOSTILE_BEHAVIOR_ID = 'a/b?c=1&d#e f%2F ü 🚀';

export function hostileEvents(): RiskEvent[] {
  const user = riskUser(66, 'high', { name: HOSTILE, email: 'mallory+"x"@example.com' });
  const bad = behavior(HOSTILE_BEHAVIOR_ID, { name: HOSTILE, description: HOSTILE, risk_level: 'high' });
  return [
    userEvent('evt-hostile-raised', user, 'low', 'high'),
    behaviorEvent('evt-hostile-disabled', { ...bad, enabled: false }, 'behavior.disabled', { enabled: true, risk_level: 'high' }),
    behaviorEvent('evt-hostile-enabled', bad, 'behavior.enabled', { enabled: false, risk_level: 'high' }),
    userEvent('evt-hostile-left', user, 'high', null),
  ];
}

/** An incident sink as its tests drive it: one request per event it takes. */
type IncidentSink<M extends { readonly requests: readonly unknown[] }> = Sink<M> & Pick<Required<Sink<M>>, 'accepts'>;

/** What `sink` does with each case: whether it takes the event, and the message it renders (the golden files hold these). */
export function renderCases<M extends { readonly requests: readonly unknown[] }>(sink: IncidentSink<M>, cases: Record<string, RiskEvent>) {
  return Object.fromEntries(Object.entries(cases).map(([label, event]) => [label, { accepts: sink.accepts(event), message: sink.render([event]) }]));
}

/** Sends each rendered case to the fake; a case the sink does not take renders no request. */
export async function sendCases<M extends { readonly requests: readonly unknown[] }>(sink: IncidentSink<M>, rendered: Record<string, { accepts: boolean; message: M }>) {
  for (const { accepts, message } of Object.values(rendered)) {
    expect(message.requests.length > 0).toBe(accepts);
    await sink.send(message, AbortSignal.timeout(10_000));
  }
}

/**
 * A 500-user storm routed for `sink` as a poll routes it, and each delivery
 * rendered; `golden` sums the messages up for a golden file (the first, the
 * last, a hash of all) and `keys` is each message's incident key.
 */
export function renderStorm<M extends { readonly requests: readonly unknown[] }>(config: SinkConfig, sink: IncidentSink<M>, keyOf: (message: M) => string) {
  const events = storm(500);
  const byId = new Map(events.map((e) => [e.id, e]));
  const deliveries = routeEvents(ACCOUNT.id, events, [{ config, sink }], { lowered: false });
  const messages = deliveries.map((d) => sink.render(d.eventIds.map((id) => byId.get(id)!)));
  const keys = new Set(messages.map(keyOf));
  const golden = {
    deliveries: deliveries.length,
    requestsPerDelivery: [...new Set(messages.map((m) => m.requests.length))],
    distinctKeys: keys.size,
    first: messages[0],
    last: messages.at(-1),
    sha256OfAll: createHash('sha256').update(JSON.stringify(messages)).digest('hex'),
  };
  return { deliveries, messages, keys, golden };
}
