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

/** What went wrong below HTTP, in a few words: `ECONNREFUSED: connect ECONNREFUSED 127.0.0.1:9`. */
export function describeNetworkError(error: unknown): string {
  const e = error as { code?: string; message?: string; cause?: { code?: string; message?: string } };
  const inner = e.cause && (e.cause.code || e.cause.message) ? e.cause : e;
  return [inner.code, inner.message].filter(Boolean).join(': ') || String(error);
}
