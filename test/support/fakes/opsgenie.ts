import type { Answer, ReceivedRequest } from '../receiver.ts';
import { Receiver } from '../receiver.ts';
import { INVALID_JSON, isObject, json, requestId, VendorFake } from './vendor.ts';

/** A request Opsgenie accepted (202), in the order they arrived. */
export interface OpsgenieCall {
  readonly action: 'create' | 'close';
  /** The alias of a create; the decoded identifier of a close. */
  readonly alias: string | undefined;
  /** A close's `identifierType` query parameter (Opsgenie's default is `id`). */
  readonly identifierType: string | undefined;
  readonly body: Record<string, unknown>;
}

/** An alert: created, counted up by creates under its alias while open, closed by a close by alias. */
export interface OpsgenieAlert {
  readonly alias: string;
  /** The create that opened it. */
  readonly body: Record<string, unknown>;
  count: number;
  open: boolean;
  closeNote: string | undefined;
}

const LIMITS = { message: 130, alias: 512, description: 15_000, details: 8_000, entity: 512, source: 100, tags: 20, tag: 50, note: 25_000 } as const;
const PRIORITIES = new Set(['P1', 'P2', 'P3', 'P4', 'P5']);
const CLOSE_PATH = /^\/v2\/alerts\/([^/]+)\/close$/;

/**
 * Opsgenie's (and JSM's) Alert API as RECEIVERS.md documents it, on loopback:
 * `POST {url}/v2/alerts` and `{url}/v2/alerts/{alias}/close?identifierType=alias`,
 * 401 without `Authorization: GenieKey <apiKey>`, 422 for a body Opsgenie
 * refuses, else 202; alerts kept by alias.
 */
export class FakeOpsgenie extends VendorFake {
  readonly apiKey: string;
  /** Accepted creates and closes, in order. */
  readonly calls: OpsgenieCall[] = [];
  /** Every alert ever created, in order; a create after a close opens a new one. */
  readonly alerts: OpsgenieAlert[] = [];
  readonly #open = new Map<string, OpsgenieAlert>();

  private constructor(receiver: Receiver, apiKey: string, basePath: string | undefined) {
    super(receiver, basePath);
    this.apiKey = apiKey;
  }

  /** `basePath` (e.g. '/jsm/ops/integration') serves the API below it, as JSM does. */
  static async start(options: { apiKey: string; basePath?: string }): Promise<FakeOpsgenie> {
    return new FakeOpsgenie(await Receiver.start(), options.apiKey, options.basePath);
  }

  openAlerts(): OpsgenieAlert[] {
    return [...this.#open.values()];
  }

  isOpen(alias: string): boolean {
    return this.#open.has(alias);
  }

  protected answer(url: URL, body: unknown, request: ReceivedRequest): Answer {
    if (request.headers.authorization !== `GenieKey ${this.apiKey}`) return json(401, { message: 'Could not authenticate', took: 0, requestId: requestId() });
    const close = CLOSE_PATH.exec(url.pathname);
    if (!close && url.pathname !== '/v2/alerts') return json(404, { message: 'Not found', took: 0, requestId: requestId() });
    if (body === INVALID_JSON || (body !== undefined && !isObject(body))) return unprocessable({ body: 'Request body is not valid JSON.' });
    const fields = body ?? {};
    if (close) {
      let alias: string;
      try {
        alias = decodeURIComponent(close[1]!);
      } catch {
        return unprocessable({ identifier: 'Identifier is not valid.' });
      }
      const errors = tooLong(fields, { source: LIMITS.source, note: LIMITS.note });
      if (Object.keys(errors).length > 0) return unprocessable(errors);
      const identifierType = url.searchParams.get('identifierType') ?? undefined;
      this.calls.push({ action: 'close', alias, identifierType, body: fields });
      // Asynchronous: a close of an unknown alias (or by another identifier type) is accepted and does nothing.
      const alert = identifierType === 'alias' ? this.#open.get(alias) : undefined;
      if (alert) {
        alert.open = false;
        alert.closeNote = typeof fields.note === 'string' ? fields.note : undefined;
        this.#open.delete(alias);
      }
      return accepted();
    }
    const errors = createErrors(fields);
    if (Object.keys(errors).length > 0) return unprocessable(errors);
    const alias = typeof fields.alias === 'string' ? fields.alias : requestId();
    this.calls.push({ action: 'create', alias, identifierType: undefined, body: fields });
    const open = this.#open.get(alias);
    if (open) open.count++;
    else {
      const alert: OpsgenieAlert = { alias, body: fields, count: 1, open: true, closeNote: undefined };
      this.alerts.push(alert);
      this.#open.set(alias, alert);
    }
    return accepted();
  }
}

function accepted(): Answer {
  return json(202, { result: 'Request will be processed', took: 0.01, requestId: requestId() });
}

function unprocessable(errors: Record<string, string>): Answer {
  return json(422, { message: 'Request body is not processable. Please check the errors.', errors, took: 0.01, requestId: requestId() });
}

/** Strings over their limit (or not strings at all), by field. */
function tooLong(fields: Record<string, unknown>, limits: Record<string, number>): Record<string, string> {
  const errors: Record<string, string> = {};
  for (const [field, max] of Object.entries(limits)) {
    const value = fields[field];
    if (value !== undefined && (typeof value !== 'string' || value.length > max)) errors[field] = `${field} must be a string of at most ${max} characters.`;
  }
  return errors;
}

function createErrors(fields: Record<string, unknown>): Record<string, string> {
  const { message, alias, description, entity, source } = LIMITS;
  const errors = tooLong(fields, { message, alias, description, entity, source });
  if (typeof fields.message !== 'string' || fields.message.trim() === '') errors.message = 'Message can not be empty.';
  if (fields.priority !== undefined && (typeof fields.priority !== 'string' || !PRIORITIES.has(fields.priority))) errors.priority = 'Priority should be one of [P1, P2, P3, P4, P5].';
  const { details, tags } = fields;
  if (details !== undefined) {
    const entries = isObject(details) ? Object.entries(details) : [];
    const size = entries.reduce((sum, [key, value]) => sum + key.length + (typeof value === 'string' ? value.length : Infinity), 0);
    if (!isObject(details) || size > LIMITS.details) errors.details = `Details must map strings to strings, at most ${LIMITS.details} characters in all.`;
  }
  if (tags !== undefined && (!Array.isArray(tags) || tags.length > LIMITS.tags || tags.some((t) => typeof t !== 'string' || t.length > LIMITS.tag))) {
    errors.tags = `Tags must be at most ${LIMITS.tags} strings of at most ${LIMITS.tag} characters.`;
  }
  return errors;
}
