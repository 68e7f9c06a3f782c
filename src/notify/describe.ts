import { type BehaviorEvent, isUserEvent, type RiskEvent, type UserEvent } from '../detect/events.ts';
import type { RiskLevel } from '../model.ts';
import { type Cuts, clip, plural } from './limits.ts';

/**
 * The words every sink says about events, as plain text: each sink escapes
 * them for its own format (Slack mrkdwn, Adaptive Card text runs, HTML).
 * Events arrive highest level first (detect/diff.ts orders them).
 */

/** What the notifications of an account call it: its name, else its id. */
export function accountLabel(events: readonly RiskEvent[]): string {
  const account = events[0]?.data.account;
  return account ? (account.name ?? account.id) : 'riskwatch';
}

/** "3 users raised (1 to high), 1 behavior disabled" */
export function summarize(events: readonly RiskEvent[]): string {
  const counts = new Map<string, number>();
  let toHigh = 0;
  for (const event of events) {
    counts.set(event.type, (counts.get(event.type) ?? 0) + 1);
    if (event.type === 'user.risk_level_raised' && event.data.current_level === 'high') toHigh++;
  }
  const parts: string[] = [];
  for (const [type, n] of counts) {
    const [kind, verb] = type.split('.') as [string, string];
    const what = verb === 'risk_level_raised' ? 'raised' : verb === 'risk_level_lowered' ? 'lowered' : verb === 'risk_level_changed' ? 'level changed' : verb;
    parts.push(`${plural(n, kind)} ${what}${verb === 'risk_level_raised' && toHigh > 0 ? ` (${toHigh} to high)` : ''}`);
  }
  return parts.join(', ') || 'no changes';
}

/** "Alice Example <alice@example.com>" or just the address. */
export function userName(event: UserEvent): string {
  const { user } = event.data;
  return user.name ? `${user.name} <${user.email}>` : user.email;
}

/**
 * "low → high", "high → none (left the summary)"; for a flapping user (SPEC §9)
 * "between none and high, 4 level changes in 30m, low now", and once settled
 * "at high, after flapping between low and high".
 */
export function levelChange(event: UserEvent): string {
  if (event.type === 'user.flapping') {
    const { lowest, highest, changes, window, level } = event.data;
    return `between ${lowest ?? 'none'} and ${highest ?? 'none'}, ${changes} level changes in ${window}, ${level ?? 'none'} now`;
  }
  if (event.type === 'user.settled') return `at ${event.data.level ?? 'none'}, after flapping between ${event.data.lowest ?? 'none'} and ${event.data.highest ?? 'none'}`;
  const { previous_level: before, current_level: after } = event.data;
  return `${before ?? 'none'} → ${after ?? 'none (left the summary)'}`;
}

/** What the user did: "raised", "lowered", "is flapping", "settled". */
export function userVerb(event: UserEvent): string {
  switch (event.type) {
    case 'user.risk_level_raised':
      return 'raised';
    case 'user.risk_level_lowered':
      return 'lowered';
    case 'user.flapping':
      return 'is flapping';
    case 'user.settled':
      return 'settled';
  }
}

/** The level an alert about the user is as serious as: the highest they reached while flapping, else the level now. */
export function alertLevel(event: UserEvent): RiskLevel | null {
  return event.type === 'user.flapping' ? event.data.highest : event.data.current_level;
}

/** "Alice Example <alice@example.com> raised low → high in production" */
export function userHeadline(event: UserEvent): string {
  return `${userName(event)} ${userVerb(event)} ${levelChange(event)} in ${accountLabel([event])}`;
}

/** "Impossible travel (imp_travel) disabled in production" */
export function behaviorHeadline(event: BehaviorEvent): string {
  return `${behaviorName(event)} ${behaviorChange(event)} in ${accountLabel([event])}`;
}

/** One line for any event, as an incident title or a list item. */
export function headline(event: RiskEvent): string {
  return isUserEvent(event) ? userHeadline(event) : behaviorHeadline(event);
}

/** "Impossible travel (imp_travel)" */
export function behaviorName(event: BehaviorEvent): string {
  const { behavior } = event.data;
  return `${behavior.name} (${behavior.id})`;
}

/** "disabled (risk level high)", "risk level low → high", "added (enabled, risk level medium)" */
export function behaviorChange(event: BehaviorEvent): string {
  const { behavior, previous } = event.data;
  switch (event.type) {
    case 'behavior.disabled':
      return `disabled (risk level ${behavior.risk_level})`;
    case 'behavior.enabled':
      return `enabled (risk level ${behavior.risk_level})`;
    case 'behavior.risk_level_changed':
      return `risk level ${previous?.risk_level ?? '?'} → ${behavior.risk_level}`;
    case 'behavior.added':
      return `added (${behavior.enabled ? 'enabled' : 'disabled'}, risk level ${behavior.risk_level})`;
    case 'behavior.removed':
      return `removed (was ${behavior.enabled ? 'enabled' : 'disabled'}, risk level ${behavior.risk_level})`;
  }
}

/** "4 risk events · last 2026-11-30T10:00:00Z" */
export function userFacts(event: UserEvent): string {
  const { user } = event.data;
  const facts = [plural(user.event_count, 'risk event')];
  if (user.last_event) facts.push(`last ${user.last_event}`);
  return facts.join(' · ');
}

/**
 * API text on one line: control characters, line or paragraph separators and
 * bidi embeddings, overrides and isolates become a space, so that a name can
 * neither start a line of its own in a message (nor a header in a mail), nor
 * show the words after it reversed, nor cost six bytes a character in JSON.
 */
export function oneLine(text: string): string {
  return text.replace(/[\u0000-\u001f\u007f-\u009f\u2028\u2029\u202a-\u202e\u2066-\u2069]+/g, ' ');
}

/**
 * The event as a message shows it: every string from the API (names, emails,
 * ids, last_event, risk events) on one line and at most `max` characters, each
 * cut written down in `cuts`. The words above then stay within a receiver's
 * limits whatever the API sends.
 */
export function shownEvent<E extends RiskEvent>(event: E, max: number, cuts?: Cuts): E {
  const shown = (text: string, what: string) => clip(oneLine(text), max, cuts, what);
  if (isUserEvent(event)) {
    const { user, risk_events: riskEvents } = event.data;
    const data: UserEvent['data'] = {
      ...event.data,
      user: { ...user, name: shown(user.name, 'user name'), email: shown(user.email, 'user email'), last_event: user.last_event === null ? null : shown(user.last_event, 'last_event') },
      ...(riskEvents ? { risk_events: riskEvents.map((r) => ({ ...r, name: shown(r.name, 'risk event name'), timestamp: shown(r.timestamp, 'risk event timestamp') })) } : {}),
    };
    return { ...event, data } as E;
  }
  const { behavior } = (event as BehaviorEvent).data;
  const data: BehaviorEvent['data'] = {
    ...(event as BehaviorEvent).data,
    behavior: { ...behavior, id: shown(behavior.id, 'behavior id'), name: shown(behavior.name, 'behavior name'), description: shown(behavior.description, 'behavior description') },
  };
  return { ...event, data } as E;
}
