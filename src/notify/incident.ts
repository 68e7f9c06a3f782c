import { type Config, isIncidentSink } from '../config/config.ts';
import { isUserEvent, type RiskEvent, subjectOf } from '../detect/events.ts';
import { LEVEL_RANK, type RiskLevel } from '../model.ts';
import { type OpenIncident, subjectParts } from '../store/store.ts';

const { createHash } = process.getBuiltinModule('node:crypto');

/**
 * What an incident receiver (PagerDuty, Opsgenie) does with an event, decided
 * here once for both (SPEC §5): a user's rise to `min_level` or above opens
 * an incident, their drop below it (or out of the summary) closes the same
 * one; a disabled behavior opens one, enabled again (or removed while
 * disabled) closes it. The key comes
 * from the event alone, so trigger and resolve meet without any memory
 * between deliveries, across restarts and replicas.
 */
export interface IncidentStep {
  readonly action: 'open' | 'close';
  /** PagerDuty's `dedup_key`, Opsgenie's `alias`: `riskwatch/<account_id>/user/<user_id>`. */
  readonly key: string;
}

/** PagerDuty's dedup_key is at most 255 characters; Opsgenie's alias 512. One key serves both. */
export const MAX_INCIDENT_KEY = 255;

/** The step for `event`, or undefined when it neither opens nor closes anything (a drop that stays at or above `minLevel`). */
export function incidentStep(event: RiskEvent, minLevel: RiskLevel): IncidentStep | undefined {
  const action = incidentAction(event, minLevel);
  return action && { action, key: incidentKey(event) };
}

function incidentAction(event: RiskEvent, minLevel: RiskLevel): IncidentStep['action'] | undefined {
  if (!isUserEvent(event)) {
    if (event.type === 'behavior.disabled') return 'open';
    if (event.type === 'behavior.enabled') return 'close';
    // Gone while disabled: nothing will enable it again, so its incident is closed now.
    if (event.type === 'behavior.removed' && !event.data.behavior.enabled) return 'close';
    return undefined;
  }
  const min = LEVEL_RANK[minLevel];
  // A flapping user (SPEC §9): user.flapping opens (or keeps open) the incident when they reached min_level;
  // user.settled leaves it as they settled: open at or above min_level (a trigger again changes nothing
  // where it is open, and opens it where the rise that reached min_level was muted), closed below.
  if (event.type === 'user.flapping') return LEVEL_RANK[event.data.highest ?? 'none'] >= min ? 'open' : undefined;
  if (event.type === 'user.settled') {
    if (LEVEL_RANK[event.data.level ?? 'none'] >= min) return 'open';
    return LEVEL_RANK[event.data.highest ?? 'none'] >= min ? 'close' : undefined;
  }
  const before = LEVEL_RANK[event.data.previous_level ?? 'none'];
  const after = LEVEL_RANK[event.data.current_level ?? 'none'];
  if (after > before) return after >= min ? 'open' : undefined;
  return before >= min && after < min ? 'close' : undefined;
}

/**
 * `riskwatch/<subject>`; a subject too long for the receiver (a behavior id of
 * hundreds of bytes) keeps its start and ends in a hash of the whole, so that
 * two long ids never share a key.
 */
export function incidentKey(event: RiskEvent): string {
  const key = `riskwatch/${subjectOf(event)}`;
  if (key.length <= MAX_INCIDENT_KEY) return key;
  const hash = createHash('sha256').update(key).digest('hex').slice(0, 32);
  let head = key.slice(0, MAX_INCIDENT_KEY - hash.length - 1);
  if (/[\ud800-\udbff]$/.test(head)) head = head.slice(0, -1);
  return `${head}~${hash}`;
}

/**
 * Why `config` no longer covers an incident its sink opened (a config load closes
 * such incidents), or undefined while it does: the sink or the account is gone or
 * no longer routed there, the user is below the sink's `min_level` now (or left the
 * summary), or the sink opens no incidents for behaviors any more. The credential
 * is not asked here: a new key moves an incident, it does not end it.
 */
export function uncoveredBecause(incident: Pick<OpenIncident, 'sink' | 'accountId' | 'subject'>, config: Pick<Config, 'accounts' | 'sinks'>, userLevel: RiskLevel | undefined): string | undefined {
  const sink = config.sinks.find((s) => s.name === incident.sink);
  if (!sink || !isIncidentSink(sink)) return `sink ${incident.sink} is no longer configured`;
  const account = config.accounts.find((a) => a.id === incident.accountId);
  if (!account) return `account ${incident.accountId} is no longer configured`;
  if (sink.accounts && !sink.accounts.has(account.id)) return `sink ${sink.name} no longer takes account ${account.label}`;
  if (subjectParts(incident.subject).kind === 'behavior') return sink.type === 'pagerduty' && sink.behaviors !== 'alert' ? `sink ${sink.name} no longer opens incidents for behaviors` : undefined;
  if (userLevel === undefined) return 'the user is no longer listed';
  return LEVEL_RANK[userLevel] < LEVEL_RANK[sink.minLevel] ? `the user is at ${userLevel} now, below sink ${sink.name}'s min_level ${sink.minLevel}` : undefined;
}
