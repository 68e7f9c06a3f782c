import { describeNetworkError, excerpt, isRetryableStatus } from '../../http.ts';
import { parseRetryAfter } from '../../retry.ts';
import { DeliveryError } from '../sink.ts';

/** No answer at all (refused, reset, timed out): always worth another attempt. Never names the URL: it is a secret. */
export function transportFailure(sink: string, error: unknown, signal: AbortSignal): DeliveryError {
  const why = signal.aborted ? 'no answer in time (timed out)' : describeNetworkError(error);
  return new DeliveryError(`sink ${sink}: ${why}`, { retryable: true, cause: error });
}

/** A non-2xx answer: 408, 429 and 5xx are retried (honouring Retry-After); any other status is permanent. */
export function httpFailure(sink: string, status: number, retryAfter: string | string[] | undefined, body: string, now: number): DeliveryError {
  const retryable = isRetryableStatus(status);
  const retryAfterMs = parseRetryAfter(retryAfter, now);
  return new DeliveryError(`sink ${sink}: HTTP ${status}${retryable ? '' : ' (permanent)'}: ${excerpt(body)}`, {
    retryable,
    status,
    ...(retryAfterMs === undefined ? {} : { retryAfterMs }),
  });
}
