import type { Answer, ReceivedRequest } from '../receiver.ts';
import { Receiver } from '../receiver.ts';
import { INVALID_JSON, isObject, json, requestId, VendorFake } from './vendor.ts';

/** An alert event PagerDuty accepted (202), in the order they arrived. */
export interface PagerDutyAlertEvent {
  readonly routingKey: string;
  readonly action: 'trigger' | 'acknowledge' | 'resolve';
  /** As sent, or the one PagerDuty made up for a trigger without one. */
  readonly dedupKey: string;
  readonly payload: Record<string, unknown> | undefined;
  readonly body: Record<string, unknown>;
}

export interface PagerDutyChangeEvent {
  readonly routingKey: string;
  readonly payload: Record<string, unknown>;
  readonly body: Record<string, unknown>;
}

/** An incident: opened by a trigger, counted up by the next triggers while open, closed by a resolve. */
export interface PagerDutyIncident {
  readonly routingKey: string;
  readonly dedupKey: string;
  /** The payload of the trigger that opened it. */
  readonly payload: Record<string, unknown>;
  triggers: number;
  acknowledged: boolean;
  open: boolean;
}

const LIMITS = { summary: 1024, dedupKey: 255, bodyBytes: 512_000, routingKey: 32 } as const;
const SEVERITIES = new Set(['critical', 'error', 'warning', 'info']);
const ACTIONS = new Set(['trigger', 'acknowledge', 'resolve']);

/**
 * PagerDuty's Events API v2 as RECEIVERS.md documents it, on loopback:
 * `POST {url}/v2/enqueue` and `{url}/v2/change/enqueue`, 400 `invalid event`
 * with `errors[]` for what PagerDuty refuses, else 202; incidents kept per
 * (routing key, dedup key). Start it, point a sink's `url` at `fake.url`.
 */
export class FakePagerDuty extends VendorFake {
  /** Accepted alert events (trigger, acknowledge, resolve), in order. */
  readonly events: PagerDutyAlertEvent[] = [];
  /** Accepted change events, in order. */
  readonly changes: PagerDutyChangeEvent[] = [];
  /** Every incident ever opened, in order; a trigger after a resolve opens a new one. */
  readonly incidents: PagerDutyIncident[] = [];
  readonly #open = new Map<string, PagerDutyIncident>();

  private constructor(receiver: Receiver, basePath: string | undefined) {
    super(receiver, basePath);
  }

  /** `basePath` (e.g. '/eu') serves the API below it, so that a test can tell which base URL a sink used. */
  static async start(options: { basePath?: string } = {}): Promise<FakePagerDuty> {
    return new FakePagerDuty(await Receiver.start(), options.basePath);
  }

  /** The incidents open now, for one routing key or all. */
  openIncidents(routingKey?: string): PagerDutyIncident[] {
    return [...this.#open.values()].filter((i) => routingKey === undefined || i.routingKey === routingKey);
  }

  isOpen(dedupKey: string, routingKey?: string): boolean {
    return this.openIncidents(routingKey).some((i) => i.dedupKey === dedupKey);
  }

  protected answer(url: URL, body: unknown, request: ReceivedRequest): Answer {
    const change = url.pathname === '/v2/change/enqueue';
    if (!change && url.pathname !== '/v2/enqueue') return json(404, { message: 'Not found' });
    if (Buffer.byteLength(request.body) > LIMITS.bodyBytes) return invalid([`Event object is larger than ${LIMITS.bodyBytes} bytes`]);
    if (body === INVALID_JSON || !isObject(body)) return invalid(['Event object is not valid JSON']);
    const errors = change ? changeErrors(body) : alertErrors(body);
    if (errors.length > 0) return invalid(errors);
    const routingKey = body.routing_key as string;
    if (change) {
      this.changes.push({ routingKey, payload: body.payload as Record<string, unknown>, body });
      return json(202, { status: 'success', message: 'Change event processed' });
    }
    const action = body.event_action as PagerDutyAlertEvent['action'];
    const dedupKey = typeof body.dedup_key === 'string' ? body.dedup_key : requestId().replaceAll('-', '');
    const payload = isObject(body.payload) ? body.payload : undefined;
    this.events.push({ routingKey, action, dedupKey, payload, body });
    this.#apply(routingKey, action, dedupKey, payload);
    return json(202, { status: 'success', message: 'Event processed', dedup_key: dedupKey });
  }

  #apply(routingKey: string, action: PagerDutyAlertEvent['action'], dedupKey: string, payload: Record<string, unknown> | undefined): void {
    const key = `${routingKey}\n${dedupKey}`;
    const open = this.#open.get(key);
    if (action === 'trigger') {
      if (open) open.triggers++;
      else {
        const incident: PagerDutyIncident = { routingKey, dedupKey, payload: payload!, triggers: 1, acknowledged: false, open: true };
        this.incidents.push(incident);
        this.#open.set(key, incident);
      }
    } else if (open && action === 'acknowledge') {
      open.acknowledged = true;
    } else if (open) {
      // A resolve of a key with no open incident is accepted and dropped.
      open.open = false;
      this.#open.delete(key);
    }
  }
}

function invalid(errors: string[]): Answer {
  return json(400, { status: 'invalid event', message: 'Event object is invalid', errors });
}

function routingKeyErrors(body: Record<string, unknown>): string[] {
  return typeof body.routing_key === 'string' && body.routing_key.length === LIMITS.routingKey ? [] : ["Length of 'routing_key' is incorrect"];
}

function summaryErrors(payload: Record<string, unknown>): string[] {
  if (typeof payload.summary !== 'string' || payload.summary === '') return ["'payload.summary' is missing or blank"];
  return payload.summary.length > LIMITS.summary ? [`'payload.summary' is too long (${payload.summary.length} > ${LIMITS.summary})`] : [];
}

function optionalErrors(payload: Record<string, unknown>): string[] {
  const errors: string[] = [];
  if (payload.timestamp !== undefined && (typeof payload.timestamp !== 'string' || Number.isNaN(Date.parse(payload.timestamp)))) errors.push("'payload.timestamp' is invalid");
  if (payload.custom_details !== undefined && !isObject(payload.custom_details)) errors.push("'payload.custom_details' must be an object");
  if (payload.source !== undefined && (typeof payload.source !== 'string' || payload.source === '')) errors.push("'payload.source' is missing or blank");
  return errors;
}

function alertErrors(body: Record<string, unknown>): string[] {
  const errors = routingKeyErrors(body);
  if (typeof body.event_action !== 'string' || !ACTIONS.has(body.event_action)) errors.push("'event_action' is invalid");
  if (body.dedup_key !== undefined && (typeof body.dedup_key !== 'string' || body.dedup_key.length > LIMITS.dedupKey)) errors.push("'dedup_key' is invalid or longer than 255");
  if (body.event_action !== 'trigger') {
    if (typeof body.dedup_key !== 'string' || body.dedup_key === '') errors.push("'dedup_key' is missing or blank");
    return errors;
  }
  if (!isObject(body.payload)) return [...errors, "'payload' is missing or blank"];
  const { payload } = body;
  errors.push(...summaryErrors(payload), ...optionalErrors(payload));
  if (payload.source === undefined) errors.push("'payload.source' is missing or blank");
  if (typeof payload.severity !== 'string' || !SEVERITIES.has(payload.severity)) errors.push("'payload.severity' is invalid");
  return errors;
}

/** A change event: a summary, no severity, no dedup key, no action. */
function changeErrors(body: Record<string, unknown>): string[] {
  const errors = routingKeyErrors(body);
  for (const field of ['event_action', 'dedup_key']) if (body[field] !== undefined) errors.push(`'${field}' is not a field of a change event`);
  if (!isObject(body.payload)) return [...errors, "'payload' is missing or blank"];
  const { payload } = body;
  if (payload.severity !== undefined) errors.push("'payload.severity' is not a field of a change event");
  return [...errors, ...summaryErrors(payload), ...optionalErrors(payload)];
}
