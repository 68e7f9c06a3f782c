import { describeNetworkError, discardBody, excerpt, isPermanentTransportError, isRetryableStatus, readBoundedText, type ResponseBody } from '../../http.ts';
import { parseRetryAfter } from '../../retry.ts';
import { DeliveryError } from '../sink.ts';

/**
 * How much of a receiver's answer is ever read (SPEC §6, Bounded): room for
 * any vendor's error message (Slack's `invalid_blocks`, a JSON `errors[]`, the
 * start of an HTML error page), which is all riskwatch uses of an answer, and
 * small enough that a receiver streaming without end costs nothing. Reading a
 * whole answer let such a receiver grow riskwatch by 1.7 GB in 10 s.
 */
export const MAX_ANSWER_BYTES = 4 * 1024;

/**
 * The one way a sink reads a receiver's answer: the text for an error
 * message, never more than MAX_ANSWER_BYTES, and the rest of the body is
 * discarded so that undici closes the connection instead of draining it.
 *
 * A 2xx answer is not read at all and resolves at once with '': the status
 * line is the receiver's word that it accepted the message, and nothing in the
 * body of a 2xx changes that (Slack's "ok", PagerDuty's 202 JSON), so a 200
 * whose body trickles or never ends counts as delivered as soon as its headers
 * arrive rather than when the send times out. A short body that came with the
 * headers is already complete, and discarding it keeps the connection for the
 * next message; a longer one costs that connection, which is cheap.
 */
export async function readAnswer(status: number, body: ResponseBody): Promise<string> {
  if (status >= 200 && status < 300) {
    discardBody(body);
    return '';
  }
  return readBoundedText(body, MAX_ANSWER_BYTES);
}

/** No answer (refused, reset, timed out): worth another attempt, unless the request itself was wrong. Never names the URL: it is a secret. */
export function transportFailure(sink: string, error: unknown, signal: AbortSignal): DeliveryError {
  if (signal.aborted) return new DeliveryError(`sink ${sink}: no answer in time (timed out)`, { retryable: true, cause: error });
  const permanent = isPermanentTransportError(error);
  return new DeliveryError(`sink ${sink}: ${describeNetworkError(error)}${permanent ? ' (permanent)' : ''}`, { retryable: !permanent, cause: error });
}

/** A non-2xx answer: 408, 429 and 5xx are retried (honouring Retry-After); any other status (3xx and 4xx) is permanent. */
export function httpFailure(sink: string, status: number, retryAfter: string | string[] | undefined, body: string, now: number): DeliveryError {
  const retryable = isRetryableStatus(status);
  const retryAfterMs = parseRetryAfter(retryAfter, now);
  return new DeliveryError(`sink ${sink}: HTTP ${status}${retryable ? '' : ' (permanent)'}: ${excerpt(body)}`, {
    retryable,
    status,
    ...(retryAfterMs === undefined ? {} : { retryAfterMs }),
  });
}
