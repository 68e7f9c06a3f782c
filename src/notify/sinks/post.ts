import type { Clock } from '../../clock.ts';
import { type Http, type HttpResponse, sharedHttp } from '../../http.ts';
import { USER_AGENT } from '../../version.ts';
import { httpFailure, readAnswer, redact, transportFailure } from './http-errors.ts';

export interface PostOptions {
  /** The sink's name, for the error line (never the URL: it may be a secret). */
  readonly sink: string;
  readonly url: string;
  readonly body: string;
  /** Extra headers (credentials are added here, at the last moment, never in a rendered message). */
  readonly headers?: Readonly<Record<string, string>>;
  readonly signal: AbortSignal;
  readonly clock: Clock;
  /** The connection pool; the process's shared one when left out. */
  readonly http?: Http | undefined;
  /** Credentials to blank out of an answer before it becomes an error message, in case a receiver echoes one. */
  readonly redact?: readonly string[];
  /** The part of an error answer worth showing (PagerDuty's `errors[]`), when the vendor has one; else its start. */
  readonly detail?: (answer: string) => string | undefined;
}

/**
 * The one HTTP POST of every JSON receiver (webhook, Teams, PagerDuty,
 * Opsgenie): resolves on a 2xx, else throws a DeliveryError that says whether
 * to retry (http-errors.ts), with at most 4 KiB of the answer read.
 */
export async function postJson(options: PostOptions): Promise<void> {
  let response: HttpResponse;
  try {
    response = await (options.http ?? sharedHttp).request(options.url, {
      method: 'POST',
      headers: { ...options.headers, 'content-type': 'application/json', 'user-agent': USER_AGENT },
      body: options.body,
      signal: options.signal,
    });
  } catch (error) {
    throw transportFailure(options.sink, error, options.signal);
  }
  let text = await readAnswer(response.statusCode, response.body);
  if (response.statusCode >= 200 && response.statusCode < 300) return;
  text = redact(text, options.redact ?? []);
  throw httpFailure(options.sink, response.statusCode, response.headers['retry-after'], options.detail?.(text) ?? text, options.clock.now());
}
