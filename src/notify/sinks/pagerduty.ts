import type { Clock } from '../../clock.ts';
import type { PagerDutySeverity, PagerDutySinkConfig } from '../../config/config.ts';
import { isUserEvent, type RiskEvent } from '../../detect/events.ts';
import type { Http } from '../../http.ts';
import { accountLabel, alertLevel, headline, oneLine } from '../describe.ts';
import { type IncidentStep, incidentStep } from '../incident.ts';
import { clip, type Cuts, jsonBytes } from '../limits.ts';
import { type DigestEvent, digestText } from '../digest.ts';
import type { Shortened, Sink } from '../sink.ts';
import { postJson } from './post.ts';

/**
 * PagerDuty Events API v2 limits: https://developer.pagerduty.com/docs/events-api-v2-overview
 * (alerts: https://developer.pagerduty.com/docs/send-alert-event, changes: https://developer.pagerduty.com/docs/send-change-event).
 */
export const PAGERDUTY_LIMITS = {
  /** `payload.summary`, in characters, of an alert and of a change event. */
  summary: 1024,
  /** The whole request body, routing key included. */
  bodyBytes: 512_000,
  /** An integration key; a key of another length is refused with a 400. */
  routingKey: 32,
} as const;

const COMPONENT = 'zero-trust-risk-scoring';

/** The PD-CEF payload of a trigger; `custom_details` is the webhook payload's `data` (SPEC §5). */
interface AlertPayload {
  readonly summary: string;
  readonly source: string;
  readonly severity: PagerDutySeverity;
  readonly timestamp: string;
  readonly component: string;
  readonly group: string;
  readonly class: string;
  readonly custom_details: unknown;
}

interface ChangePayload {
  readonly summary: string;
  readonly source: string;
  readonly timestamp: string;
  readonly custom_details: unknown;
}

/** One Events API request, without its `routing_key` (added by `send`, so that no rendered message holds it). */
export type PagerDutyRequest =
  | { readonly path: '/v2/enqueue'; readonly body: { readonly event_action: 'trigger'; readonly dedup_key: string; readonly client: string; readonly payload: AlertPayload } }
  | { readonly path: '/v2/enqueue'; readonly body: { readonly event_action: 'resolve'; readonly dedup_key: string } }
  | { readonly path: '/v2/change/enqueue'; readonly body: { readonly payload: ChangePayload } };

export interface PagerDutyMessage extends Shortened {
  readonly requests: readonly PagerDutyRequest[];
}

/**
 * PagerDuty (SPEC §5): a user's rise to `min_level` triggers an incident and
 * their drop below it resolves the same one (incident.ts keys both); behavior
 * events are change events, incidents opened by a disable, or nothing, as
 * `behaviors` says. One request per event, in order.
 */
export class PagerDutySink implements Sink<PagerDutyMessage> {
  readonly name: string;
  readonly grouping = 'event';
  readonly #config: PagerDutySinkConfig;
  readonly #clock: Clock;
  readonly #http: Http | undefined;

  constructor(config: PagerDutySinkConfig, deps: { clock: Clock; http?: Http }) {
    this.name = config.name;
    this.#config = config;
    this.#clock = deps.clock;
    this.#http = deps.http;
  }

  accepts(event: RiskEvent): boolean {
    return this.#plan(event) !== undefined;
  }

  incident(event: RiskEvent): IncidentStep | undefined {
    const plan = this.#plan(event);
    return plan === 'change' ? undefined : plan;
  }

  /** A resolve: PagerDuty keeps no note with it. */
  renderClose(key: string): PagerDutyMessage {
    return { requests: [{ path: '/v2/enqueue', body: { event_action: 'resolve', dedup_key: key } }], cuts: [] };
  }

  /** Events this sink does not take (a reload may hand it some) are left out. */
  render(events: readonly RiskEvent[]): PagerDutyMessage {
    const cuts: Cuts = [];
    const requests: PagerDutyRequest[] = [];
    for (const event of events) {
      const plan = this.#plan(event);
      if (plan !== undefined) requests.push(this.#request(event, plan, cuts));
    }
    return { requests, cuts };
  }

  /** A digest (SPEC §9) as a change event: it pages nobody; its details are the digest's data, within the body limit. */
  renderDigest(digest: DigestEvent): PagerDutyMessage {
    const cuts: Cuts = [];
    const summary = clip(digestText(digest).title, PAGERDUTY_LIMITS.summary, cuts, 'summary');
    const payload = withinBodyLimit({ summary, source: 'riskwatch', timestamp: digest.timestamp, custom_details: digest.data }, {}, cuts);
    return { requests: [{ path: '/v2/change/enqueue', body: { payload } }], cuts };
  }

  /** A change event: it proves the routing key and pages nobody. */
  renderTest(): PagerDutyMessage {
    const payload: ChangePayload = {
      summary: clip(`riskwatch test notification for sink ${this.name}: this sink works`, PAGERDUTY_LIMITS.summary),
      source: 'riskwatch',
      timestamp: new Date(this.#clock.now()).toISOString(),
      custom_details: { sink: this.name, sent_by: 'riskwatch test-sinks' },
    };
    return { requests: [{ path: '/v2/change/enqueue', body: { payload } }], cuts: [] };
  }

  /** Posts each request in turn; a failure stops there, and a retry re-sends them all (a repeated trigger or resolve changes nothing). */
  async send(message: PagerDutyMessage, signal: AbortSignal): Promise<void> {
    for (const request of message.requests) {
      const key = this.#config.routingKey.reveal();
      const body = JSON.stringify({ routing_key: key, ...request.body });
      await postJson({ sink: this.name, url: `${this.#config.url}${request.path}`, body, signal, clock: this.#clock, http: this.#http, redact: [key], detail: pagerDutyErrors });
    }
  }

  /** What `event` becomes here: an incident opened or closed, a change event, or nothing. */
  #plan(event: RiskEvent): IncidentStep | 'change' | undefined {
    if (!isUserEvent(event) && this.#config.behaviors !== 'alert') return this.#config.behaviors === 'change' ? 'change' : undefined;
    return incidentStep(event, this.#config.minLevel);
  }

  #request(event: RiskEvent, plan: IncidentStep | 'change', cuts: Cuts): PagerDutyRequest {
    if (plan !== 'change' && plan.action === 'close') return { path: '/v2/enqueue', body: { event_action: 'resolve', dedup_key: plan.key } };
    const summary = clip(oneLine(headline(event)), PAGERDUTY_LIMITS.summary, cuts, 'summary');
    const source = event.data.account.id;
    const { timestamp, data } = event;
    if (plan === 'change') return { path: '/v2/change/enqueue', body: { payload: withinBodyLimit({ summary, source, timestamp, custom_details: data }, {}, cuts) } };
    const level = isUserEvent(event) ? (alertLevel(event) ?? 'high') : event.data.behavior.risk_level;
    const severity = this.#config.severity[level];
    const alert: AlertPayload = { summary, source, severity, timestamp, component: COMPONENT, group: accountLabel([event]), class: event.type, custom_details: data };
    const envelope = { event_action: 'trigger', dedup_key: plan.key, client: 'riskwatch' } as const;
    return { path: '/v2/enqueue', body: { ...envelope, payload: withinBodyLimit(alert, envelope, cuts) } };
  }
}

/** A stand-in key of the right length: the body is measured as it will be sent. */
const KEY_STAND_IN = 'k'.repeat(PAGERDUTY_LIMITS.routingKey);

/**
 * The payload as is when the whole body fits PagerDuty's 512,000 bytes, else
 * without its `custom_details` (the one unbounded part: the event's data, with
 * its risk events), which a short note replaces: a page with less detail beats
 * a 400 and no page at all. The event stays whole in riskwatch's history.
 */
function withinBodyLimit<P extends { readonly custom_details: unknown }>(payload: P, envelope: object, cuts: Cuts): P {
  const size = jsonBytes({ routing_key: KEY_STAND_IN, ...envelope, payload });
  if (size <= PAGERDUTY_LIMITS.bodyBytes) return payload;
  cuts.push(`custom_details left out: the body was ${size} bytes, over ${PAGERDUTY_LIMITS.bodyBytes}`);
  return { ...payload, custom_details: { note: `left out: over PagerDuty's ${PAGERDUTY_LIMITS.bodyBytes}-byte limit; see riskwatch history` } };
}

/** A 400's `errors[]`, which says what PagerDuty refused ("Length of 'routing_key' is incorrect"), ahead of its generic message. */
function pagerDutyErrors(answer: string): string | undefined {
  try {
    const errors = (JSON.parse(answer) as { errors?: unknown }).errors;
    return Array.isArray(errors) && errors.length > 0 ? errors.map(String).join('; ') : undefined;
  } catch {
    return undefined;
  }
}
