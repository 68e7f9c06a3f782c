import type { Clock } from '../../clock.ts';
import type { OpsgeniePriority, OpsgenieSinkConfig } from '../../config/config.ts';
import { type BehaviorEvent, isUserEvent, type RiskEvent, type UserEvent } from '../../detect/events.ts';
import type { Http } from '../../http.ts';
import { accountLabel, alertLevel, behaviorName, headline, levelChange, oneLine, shownEvent, userFacts, userName } from '../describe.ts';
import { type IncidentStep, incidentStep } from '../incident.ts';
import { clip, type Cuts } from '../limits.ts';
import type { Shortened, Sink } from '../sink.ts';
import { postJson } from './post.ts';

/** Opsgenie (and JSM's integration API) Alert API limits, in characters: https://docs.opsgenie.com/docs/alert-api#create-alert */
export const OPSGENIE_LIMITS = {
  /** JSM drops a longer message. */
  message: 130,
  alias: 512,
  description: 15_000,
  /** Every key and value of `details`, together. */
  details: 8_000,
  entity: 512,
  /** A close's note: https://docs.opsgenie.com/docs/alert-api#close-alert */
  note: 25_000,
} as const;

const SOURCE = 'riskwatch';
/** Each string from the API in a description, so that one long name leaves room for the rest. */
const DESCRIBED_FIELD_MAX = 1024;
/** A disabled detection is worth a look, not a wake-up (SPEC §5). */
const BEHAVIOR_PRIORITY: OpsgeniePriority = 'P3';

interface CreateAlert {
  readonly message: string;
  readonly alias: string;
  readonly description: string;
  readonly details: Readonly<Record<string, string>>;
  readonly entity: string;
  readonly source: string;
  readonly priority: OpsgeniePriority;
  readonly tags: readonly string[];
}

/** One Alert API request, relative to the configured `url`, without the API key (added by `send`). */
export type OpsgenieRequest =
  | { readonly path: '/v2/alerts'; readonly body: CreateAlert }
  | { readonly path: `/v2/alerts/${string}/close?identifierType=alias`; readonly body: { readonly source: string; readonly note: string } };

export interface OpsgenieMessage extends Shortened {
  readonly requests: readonly OpsgenieRequest[];
}

/**
 * Opsgenie and Jira Service Management (SPEC §5): a user's rise to
 * `min_level` creates an alert and their drop below it closes it by alias
 * (incident.ts keys both); a disabled behavior creates one, enabled again
 * closes it. The API is asynchronous: 202 means queued.
 */
export class OpsgenieSink implements Sink<OpsgenieMessage> {
  readonly name: string;
  readonly grouping = 'event';
  readonly #config: OpsgenieSinkConfig;
  readonly #clock: Clock;
  readonly #http: Http | undefined;

  constructor(config: OpsgenieSinkConfig, deps: { clock: Clock; http?: Http }) {
    this.name = config.name;
    this.#config = config;
    this.#clock = deps.clock;
    this.#http = deps.http;
  }

  accepts(event: RiskEvent): boolean {
    return incidentStep(event, this.#config.minLevel) !== undefined;
  }

  incident(event: RiskEvent): IncidentStep | undefined {
    return incidentStep(event, this.#config.minLevel);
  }

  renderClose(key: string, note: string): OpsgenieMessage {
    const cuts: Cuts = [];
    return { requests: [close(key, `Closed by riskwatch: ${oneLine(note)}`, cuts)], cuts };
  }

  /** Events this sink does not take (a reload may hand it some) are left out. */
  render(events: readonly RiskEvent[]): OpsgenieMessage {
    const cuts: Cuts = [];
    const requests: OpsgenieRequest[] = [];
    for (const event of events) {
      const step = incidentStep(event, this.#config.minLevel);
      if (step) requests.push(step.action === 'open' ? this.#create(event, step, cuts) : close(step.key, `Closed by riskwatch: ${oneLine(headline(event))}`, cuts));
    }
    return { requests, cuts };
  }

  /**
   * Opsgenie has nothing like PagerDuty's change event that proves a key
   * without alerting: the test creates a P5 alert under its own alias and
   * closes it in the next request, so that `test-sinks` leaves nothing open.
   */
  renderTest(): OpsgenieMessage {
    const alias = clip(`riskwatch/test/${this.name}`, OPSGENIE_LIMITS.alias);
    const create: CreateAlert = {
      message: clip(`riskwatch test notification for sink ${this.name}: this sink works`, OPSGENIE_LIMITS.message),
      alias,
      description: `Sent by riskwatch test-sinks at ${new Date(this.#clock.now()).toISOString()} to prove the API key; riskwatch closes it at once.`,
      details: { sink: this.name },
      entity: 'riskwatch',
      source: SOURCE,
      priority: 'P5',
      tags: this.#config.tags,
    };
    return { requests: [{ path: '/v2/alerts', body: create }, close(alias, 'riskwatch test notification: closed at once')], cuts: [] };
  }

  /** Posts each request in turn; a failure stops there, and a retry re-sends them all (a create on an open alias only counts up). */
  async send(message: OpsgenieMessage, signal: AbortSignal): Promise<void> {
    const key = this.#config.apiKey.reveal();
    const headers = { authorization: `GenieKey ${key}` };
    for (const request of message.requests) {
      const url = `${this.#config.url}${request.path}`;
      await postJson({ sink: this.name, url, body: JSON.stringify(request.body), headers, signal, clock: this.#clock, http: this.#http, redact: [key] });
    }
  }

  #create(event: RiskEvent, step: IncidentStep, cuts: Cuts): OpsgenieRequest {
    const user = isUserEvent(event);
    const body: CreateAlert = {
      message: clip(oneLine(headline(event)), OPSGENIE_LIMITS.message, cuts, 'message'),
      alias: step.key,
      description: clip(description(shownEvent(event, DESCRIBED_FIELD_MAX, cuts)), OPSGENIE_LIMITS.description, cuts, 'description'),
      details: fitDetails(user ? userDetails(event) : behaviorDetails(event), cuts),
      entity: clip(oneLine(user ? event.data.user.email : event.data.behavior.id), OPSGENIE_LIMITS.entity, cuts, 'entity'),
      source: SOURCE,
      priority: user ? this.#config.priority[alertLevel(event) ?? 'high'] : BEHAVIOR_PRIORITY,
      tags: this.#config.tags,
    };
    return { path: '/v2/alerts', body };
  }
}

/** A close by alias: the alias is one path segment, whatever it holds (`/`, `?`, `#`, spaces). */
function close(alias: string, note: string, cuts?: Cuts): OpsgenieRequest {
  const path = `/v2/alerts/${encodeURIComponent(alias)}/close?identifierType=alias` as const;
  return { path, body: { source: SOURCE, note: clip(note, OPSGENIE_LIMITS.note, cuts, 'note') } };
}

/** Plain text: every string from the API in it is on one line (shownEvent), so that none can forge a line. */
function description(event: RiskEvent): string {
  return isUserEvent(event) ? userDescription(event) : behaviorDescription(event);
}

function userDescription(event: UserEvent): string {
  const { account, user, risk_events: riskEvents } = event.data;
  const lines = [headline(event), '', `User: ${userName(event)} (id ${user.user_id})`, `Risk level: ${levelChange(event)}`, userFacts(event), `Account: ${accountLabel([event])} (${account.id})`];
  if (riskEvents?.length) lines.push('', 'Risk events:', ...riskEvents.map((e) => `- ${e.name} (${e.risk_level}) at ${e.timestamp}`));
  lines.push('', "riskwatch closes this alert when the user's risk level drops below the sink's min_level.");
  return lines.join('\n');
}

function behaviorDescription(event: BehaviorEvent): string {
  const { account, behavior } = event.data;
  const lines = [headline(event), '', `Behavior: ${behaviorName(event)}`, `Description: ${behavior.description}`, `Account: ${accountLabel([event])} (${account.id})`];
  lines.push('', 'riskwatch closes this alert when the behavior is enabled again.');
  return lines.join('\n');
}

function userDetails(event: UserEvent): Record<string, string> {
  const { user, previous_level: before, current_level: after } = event.data;
  return {
    ...eventDetails(event),
    user_id: user.user_id,
    email: user.email,
    name: user.name,
    previous_level: before ?? 'none',
    current_level: after ?? 'none',
    event_count: String(user.event_count),
    last_event: user.last_event ?? '',
  };
}

function behaviorDetails(event: BehaviorEvent): Record<string, string> {
  const { behavior, previous } = event.data;
  return {
    ...eventDetails(event),
    behavior_id: behavior.id,
    behavior_name: behavior.name,
    enabled: String(behavior.enabled),
    risk_level: behavior.risk_level,
    previous_enabled: previous ? String(previous.enabled) : '',
  };
}

function eventDetails(event: RiskEvent): Record<string, string> {
  return { event_type: event.type, event_id: event.id, account: accountLabel([event]), account_id: event.data.account.id };
}

/** Every value cut to an equal share of what the keys leave of the 8,000 characters: short values stay whole, and the total always fits. */
function fitDetails(details: Record<string, string>, cuts: Cuts): Record<string, string> {
  const entries = Object.entries(details);
  const keys = entries.reduce((sum, [key]) => sum + key.length, 0);
  const share = Math.floor((OPSGENIE_LIMITS.details - keys) / entries.length);
  return Object.fromEntries(entries.map(([key, value]) => [key, clip(value, share, cuts, `details.${key}`)]));
}
