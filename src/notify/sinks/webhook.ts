import type { Clock } from '../../clock.ts';
import type { WebhookSinkConfig } from '../../config/config.ts';
import type { RiskEvent } from '../../detect/events.ts';
import type { Http } from '../../http.ts';
import type { DigestEvent } from '../digest.ts';
import type { Sink } from '../sink.ts';
import { urlSecrets } from './http-errors.ts';
import { postJson } from './post.ts';

const { createHmac } = process.getBuiltinModule('node:crypto');

/** One Standard Webhooks message: its id and body are fixed; timestamp and signature are per attempt. */
export interface WebhookMessage {
  readonly id: string;
  readonly body: string;
}

/**
 * The generic webhook (SPEC §5): one JSON POST per event, shaped and signed
 * after the Standard Webhooks spec, so that its reference libraries verify it.
 */
export class WebhookSink implements Sink<readonly WebhookMessage[]> {
  readonly name: string;
  readonly grouping = 'event';
  readonly #config: WebhookSinkConfig;
  readonly #key: Buffer | undefined;
  readonly #http: Http | undefined;
  readonly #clock: Clock;

  constructor(config: WebhookSinkConfig, deps: { clock: Clock; http?: Http }) {
    this.name = config.name;
    this.#config = config;
    const secret = config.secret?.reveal();
    this.#key = secret === undefined ? undefined : Buffer.from(secret.startsWith('whsec_') ? secret.slice('whsec_'.length) : secret, 'base64');
    this.#http = deps.http;
    this.#clock = deps.clock;
  }

  /** One message per event. A delivery holds one event, except one planned for a grouping sink that a reload turned into a webhook. */
  render(events: readonly RiskEvent[]): readonly WebhookMessage[] {
    return events.map((event) => ({ id: event.id, body: JSON.stringify({ type: event.type, timestamp: event.timestamp, data: event.data }) }));
  }

  /** A digest (SPEC §9) as the webhook's event of type `digest`, under the digest's id. */
  renderDigest(digest: DigestEvent): readonly WebhookMessage[] {
    return [{ id: digest.id, body: JSON.stringify({ type: digest.type, timestamp: digest.timestamp, data: digest.data }) }];
  }

  renderTest(): readonly WebhookMessage[] {
    const now = new Date(this.#clock.now()).toISOString();
    return [
      {
        id: `test_${this.#clock.now().toString(36)}`,
        body: JSON.stringify({ type: 'riskwatch.test', timestamp: now, data: { message: `riskwatch test notification for sink ${this.name}: this sink works` } }),
      },
    ];
  }

  /** Posts each message in turn; a failure stops there, and a retry re-sends them all, under the same ids. */
  async send(messages: readonly WebhookMessage[], signal: AbortSignal): Promise<void> {
    for (const message of messages) await this.#post(message, signal);
  }

  async #post(message: WebhookMessage, signal: AbortSignal): Promise<void> {
    const timestamp = Math.floor(this.#clock.now() / 1000).toString();
    const headers: Record<string, string> = {};
    for (const [name, value] of Object.entries(this.#config.headers)) headers[name.toLowerCase()] = value.reveal();
    Object.assign(headers, {
      'webhook-id': message.id,
      'webhook-timestamp': timestamp,
    });
    if (this.#key) headers['webhook-signature'] = sign(this.#key, message.id, timestamp, message.body);
    const url = this.#config.url.reveal();
    const secrets = [...urlSecrets(url), ...Object.values(this.#config.headers).map((value) => value.reveal())];
    await postJson({ sink: this.name, url, body: message.body, headers, signal, clock: this.#clock, http: this.#http, redact: secrets });
  }
}

/** `v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">`, as Standard Webhooks defines it. */
export function sign(key: Buffer, id: string, timestamp: string, body: string): string {
  return `v1,${createHmac('sha256', key).update(`${id}.${timestamp}.${body}`).digest('base64')}`;
}
