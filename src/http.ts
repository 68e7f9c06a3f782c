/** HTTP facts shared by the Cloudflare client and the sinks. */

/** Statuses worth another attempt: timeouts, rate limits, server errors. */
export function isRetryableStatus(status: number): boolean {
  return status === 408 || status === 429 || status >= 500;
}

/** A short, single-line, quoted excerpt of a response body for an error message. */
export function excerpt(text: string, max = 120): string {
  const flat = text.replace(/\s+/g, ' ').trim();
  if (flat === '') return '(empty body)';
  return JSON.stringify(flat.length > max ? `${flat.slice(0, max)}…` : flat);
}

/** The innermost cause that says what went wrong: `fetch failed` wraps `ECONNREFUSED`, which is what an operator needs. */
function rootCause(error: unknown): { code?: string; message?: string } {
  let current = error as { code?: string; message?: string; cause?: unknown } | undefined;
  let best = current ?? {};
  for (let depth = 0; current && depth < 5; depth++) {
    if (current.code || current.message) best = current;
    current = current.cause as typeof current;
  }
  return best;
}

/** What went wrong below HTTP, in a few words: `ECONNREFUSED: connect ECONNREFUSED 127.0.0.1:9`. */
export function describeNetworkError(error: unknown): string {
  const cause = rootCause(error);
  return [cause.code, cause.message].filter(Boolean).join(': ') || String(error);
}

/**
 * Transport failures that another attempt cannot fix: a request the client
 * refuses to send (an invalid header value) or a redirect (webhooks are not
 * followed: the configured URL is wrong).
 */
export function isPermanentTransportError(error: unknown): boolean {
  const cause = rootCause(error);
  return cause.code === 'UND_ERR_INVALID_ARG' || /redirect/i.test(cause.message ?? '');
}
