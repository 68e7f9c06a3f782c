import { describeNetworkError, excerpt, isPermanentTransportError, isRetryableStatus } from '../../http.ts';
import { parseRetryAfter } from '../../retry.ts';
import { DeliveryError } from '../sink.ts';

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
