import { IncomingWebhook, IncomingWebhookHTTPError } from '@slack/webhook';
import type { Clock } from '../../clock.ts';
import type { SlackSinkConfig } from '../../config/config.ts';
import type { RiskEvent } from '../../detect/events.ts';
import { type Http, sharedHttp } from '../../http.ts';
import { USER_AGENT } from '../../version.ts';
import type { Sink } from '../sink.ts';
import type { DigestEvent } from '../digest.ts';
import { httpFailure, readAnswer, redact, transportFailure, urlSecrets } from './http-errors.ts';
import { renderSlack, renderSlackDigest, renderSlackTest, type SlackMessage } from './slack-render.ts';

/** Slack allows about one message per second per incoming webhook. */
const MIN_SPACING_MS = 1000;

/**
 * Slack through `@slack/webhook`: one Block Kit message per account per poll.
 * The library neither retries a 429 nor reads Retry-After, so this sink paces
 * itself to one message a second and, after a 429, holds every message of this
 * webhook back for as long as Slack asked; the worker schedules the retry.
 */
export class SlackSink implements Sink<SlackMessage> {
  readonly name: string;
  readonly grouping = 'poll';
  readonly #config: SlackSinkConfig;
  readonly #clock: Clock;
  readonly #webhook: IncomingWebhook;
  /** What the last response said, captured by our fetch: the library drops the headers. */
  #retryAfter: string | undefined;
  #current: AbortSignal | undefined;
  /** Monotonic time before which the next message waits: pacing is an in-process interval, not a wall-clock time. */
  #nextSendAt = -Infinity;
  #queue: Promise<void> = Promise.resolve();

  constructor(config: SlackSinkConfig, deps: { clock: Clock; http?: Http }) {
    this.name = config.name;
    this.#config = config;
    this.#clock = deps.clock;
    const http = deps.http ?? sharedHttp;
    // The library's only way out: a fetch, of which it uses ok, status, statusText and text(). It is given one over the
    // pool that sends as every other sink does, and that answers with the bounded answer (readAnswer) only.
    const fetch = async (url: string | URL | Request, init?: RequestInit): Promise<Response> => {
      const signals = [init?.signal, this.#current].filter((s): s is AbortSignal => s instanceof AbortSignal);
      const response = await http.request(String(url), {
        method: 'POST',
        headers: { ...(init?.headers as Record<string, string>), 'user-agent': USER_AGENT },
        body: String(init?.body ?? ''),
        signal: AbortSignal.any(signals),
      });
      this.#retryAfter = response.headers['retry-after']?.[0];
      const answer = await readAnswer(response.statusCode, response.body);
      const ok = response.statusCode >= 200 && response.statusCode < 300;
      return { ok, status: response.statusCode, statusText: response.body.statusMessage ?? '', text: async () => answer } as Response;
    };
    this.#webhook = new IncomingWebhook(config.url.reveal(), { fetch, retryConfig: { retries: 0 } });
  }

  render(events: readonly RiskEvent[]): SlackMessage {
    return renderSlack(events, this.#config.mention);
  }

  renderDigest(digest: DigestEvent): SlackMessage {
    return renderSlackDigest(digest, this.#config.mention);
  }

  renderTest(): SlackMessage {
    return renderSlackTest(this.name);
  }

  /** Sends in turn: one message at a time per webhook, at most one a second. */
  send(message: SlackMessage, signal: AbortSignal): Promise<void> {
    const turn = this.#queue.then(() => this.#send(message, signal));
    this.#queue = turn.catch(() => {});
    return turn;
  }

  async #send(message: SlackMessage, signal: AbortSignal): Promise<void> {
    const wait = this.#nextSendAt - this.#clock.monotonic();
    if (wait > 0)
      await this.#clock.sleep(wait, signal).catch((error: unknown) => {
        throw transportFailure(this.name, error, signal);
      });
    this.#current = signal;
    this.#retryAfter = undefined;
    try {
      await this.#webhook.send({ text: message.text, blocks: message.blocks as never });
    } catch (error) {
      if (error instanceof IncomingWebhookHTTPError) {
        const answer = redact(String(error.body ?? ''), urlSecrets(this.#config.url.reveal()));
        const failure = httpFailure(this.name, error.statusCode, this.#retryAfter, answer, this.#clock.now());
        if (failure.retryAfterMs !== undefined) this.#nextSendAt = this.#clock.monotonic() + failure.retryAfterMs;
        throw failure;
      }
      throw transportFailure(this.name, error, signal);
    } finally {
      this.#current = undefined;
      this.#nextSendAt = Math.max(this.#nextSendAt, this.#clock.monotonic() + MIN_SPACING_MS);
    }
  }
}
