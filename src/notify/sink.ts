import type { RetryableError } from '../retry.ts';
import type { Delivery } from '../store/store.ts';

/**
 * A place alerts go. A sink only renders and sends; the worker around it owns
 * retries, backoff, dead-lettering and recording, the same for every sink.
 */
export interface Sink {
  readonly name: string;
  /** `event`: one delivery per event. `poll`: one delivery per account per poll, holding all its events. */
  readonly grouping: 'event' | 'poll';
  /** Sends one delivery; resolves once the receiver accepted it, else throws (a DeliveryError says whether to retry). */
  send(delivery: Delivery, signal: AbortSignal): Promise<void>;
}

/** A receiver's refusal or a failed attempt, said in one line without secrets. */
export class DeliveryError extends Error implements RetryableError {
  readonly retryable: boolean;
  readonly retryAfterMs: number | undefined;
  readonly status: number | undefined;
  constructor(message: string, details: { retryable: boolean; status?: number; retryAfterMs?: number; cause?: unknown }) {
    super(message, { cause: details.cause });
    this.name = 'DeliveryError';
    this.retryable = details.retryable;
    this.status = details.status;
    this.retryAfterMs = details.retryAfterMs;
  }
}
