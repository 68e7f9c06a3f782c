import pRetry from 'p-retry';
import type { Clock } from './clock.ts';

/**
 * The one retry policy of riskwatch, used around Cloudflare requests and sink
 * deliveries alike. An error says itself whether it is worth retrying
 * (`retryable`) and how long the other side asked us to wait (`retryAfterMs`);
 * this module only decides when.
 */
export interface RetryableError extends Error {
  readonly retryable: boolean;
  /** The server's Retry-After, in milliseconds, when it sent one. */
  readonly retryAfterMs?: number | undefined;
}

export function isRetryable(error: unknown): boolean {
  return error instanceof Error && (error as Partial<RetryableError>).retryable === true;
}

export interface RetryPolicy {
  /** Attempts in all, the first included. */
  readonly attempts: number;
  /** The first backoff; each next one doubles, up to maxDelayMs. */
  readonly baseDelayMs: number;
  readonly maxDelayMs: number;
  /** A Retry-After longer than this is not waited for: the error surfaces at once. */
  readonly maxWaitMs: number;
}

/** Exponential backoff with "equal jitter": half fixed, half random, so retries from many callers spread out. */
export function backoffDelay(attempt: number, policy: Pick<RetryPolicy, 'baseDelayMs' | 'maxDelayMs'>, random: () => number): number {
  const ceiling = Math.min(policy.maxDelayMs, policy.baseDelayMs * 2 ** Math.max(0, attempt - 1));
  return Math.round(ceiling / 2 + random() * (ceiling / 2));
}

/** The wait before retry number `attempt`: the backoff, or the server's Retry-After when longer. */
export function retryDelay(error: unknown, attempt: number, policy: RetryPolicy, random: () => number): number {
  const asked = (error as Partial<RetryableError>).retryAfterMs ?? 0;
  return Math.max(asked, backoffDelay(attempt, policy, random));
}

export interface RetryContext {
  readonly clock: Clock;
  readonly random?: () => number;
  readonly signal?: AbortSignal | undefined;
  readonly onRetry?: (error: Error, attempt: number, delayMs: number) => void;
}

/** Runs `operation`, retrying retryable errors under `policy`; the clock does the waiting. */
export function withRetry<T>(operation: (attempt: number) => Promise<T>, policy: RetryPolicy, context: RetryContext): Promise<T> {
  const random = context.random ?? Math.random;
  return pRetry(operation, {
    retries: policy.attempts - 1,
    // p-retry decides whether to go on; the injected clock does the sleeping, so tests need no timers.
    minTimeout: 0,
    signal: context.signal,
    shouldRetry: async ({ error, attemptNumber }) => {
      if (!isRetryable(error)) return false;
      const delayMs = retryDelay(error, attemptNumber, policy, random);
      if (delayMs > policy.maxWaitMs) return false;
      context.onRetry?.(error, attemptNumber, delayMs);
      await context.clock.sleep(delayMs, context.signal);
      return true;
    },
  });
}

/** No server gets to park riskwatch for longer than this, whatever its Retry-After says. */
export const MAX_RETRY_AFTER_MS = 3_600_000;

/**
 * Retry-After as seconds or an HTTP date, in milliseconds from `now` (at most an hour); undefined when absent or unreadable.
 * `now` is the wall clock: an HTTP date is the server's wall time. The result is a duration, and the waits
 * built from it (the clock's sleep, the budget's block) run on monotonic time.
 */
export function parseRetryAfter(value: string | string[] | undefined, now: number): number | undefined {
  const text = Array.isArray(value) ? value[0] : value;
  if (text === undefined || text.trim() === '') return undefined;
  let ms: number;
  if (/^\d+(\.\d+)?$/.test(text.trim())) ms = Math.round(Number(text) * 1000);
  else {
    const date = Date.parse(text);
    if (Number.isNaN(date)) return undefined;
    ms = Math.max(0, date - now);
  }
  return Math.min(ms, MAX_RETRY_AFTER_MS);
}
