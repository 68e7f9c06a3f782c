import type { RetryableError } from '../retry.ts';

export interface ApiMessage {
  readonly code: number | string | undefined;
  readonly message: string;
}

/**
 * A Cloudflare API call that did not give a usable answer: transport failure,
 * HTTP error, `success: false`, or a body that is not the v4 envelope.
 * The message is one line naming the call; secrets never appear in it.
 */
export class CloudflareError extends Error implements RetryableError {
  readonly retryable: boolean;
  readonly retryAfterMs: number | undefined;
  /** HTTP status, when a response arrived. */
  readonly status: number | undefined;
  /** The envelope's `errors`, when there was one. */
  readonly errors: readonly ApiMessage[];

  constructor(message: string, details: { retryable: boolean; status?: number; retryAfterMs?: number; errors?: readonly ApiMessage[]; cause?: unknown }) {
    super(message, { cause: details.cause });
    this.name = 'CloudflareError';
    this.retryable = details.retryable;
    this.status = details.status;
    this.retryAfterMs = details.retryAfterMs;
    this.errors = details.errors ?? [];
  }
}
