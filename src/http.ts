/** HTTP and network facts shared by the config, the Cloudflare client and the sinks. */

import { isIP } from 'node:net';
import type { Readable } from 'node:stream';
import type { ReadableStream } from 'node:stream/web';

/** A response body as undici hands it over: a Node stream from `request`, a web stream from `fetch`. */
export type ResponseBody = Readable | ReadableStream<Uint8Array> | null | undefined;

/** Loopback hosts, where plain HTTP or SMTP crosses no network: a local relay may skip TLS, a test's fake may serve http. */
export function isLoopbackHost(hostname: string): boolean {
  const host = hostname.replace(/^\[|\]$/g, '').toLowerCase();
  if (host === 'localhost' || host.endsWith('.localhost')) return true;
  if (isIP(host) === 4) return host.startsWith('127.');
  if (isIP(host) === 6) return host === '::1' || /^::ffff:127\./.test(host) || /^::ffff:7f[0-9a-f]{2}:/.test(host);
  return false;
}

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

function isWebStream(body: Readable | ReadableStream<Uint8Array>): body is ReadableStream<Uint8Array> {
  return typeof (body as ReadableStream<Uint8Array>).getReader === 'function';
}

function ignore(): void {}

/**
 * Lets go of a response body without reading (the rest of) it. Destroying a
 * body that has not fully arrived makes undici close the connection rather than
 * drain whatever the peer still sends; a body already complete (a short answer
 * that came with its headers) leaves the connection in the pool for reuse.
 */
export function discardBody(body: ResponseBody): void {
  if (!body) return;
  // Both calls are safe on a body already ended, errored or destroyed; a destroyed undici body emits an abort error that nobody needs.
  if (isWebStream(body)) body.cancel().catch(ignore);
  else body.on('error', ignore).destroy();
}

/**
 * The first `maxBytes` of a response body as text, then the body is discarded
 * (see discardBody): the memory spent on it is bounded by `maxBytes` and one
 * chunk in flight, whatever the peer sends (the time, by the request's signal). A multi-byte character
 * cut at the limit is dropped, not mangled. A body that fails midway (reset,
 * aborted) yields what came.
 */
export async function readBoundedText(body: ResponseBody, maxBytes: number): Promise<string> {
  if (!body) return '';
  const decoder = new TextDecoder();
  let text = '';
  let room = maxBytes;
  let ended = false;
  try {
    if (room > 0) {
      for await (const chunk of body as AsyncIterable<Uint8Array>) {
        const part = chunk.length > room ? chunk.subarray(0, room) : chunk;
        room -= part.length;
        // `stream: true` keeps a character split across chunks (or by the limit) inside the decoder instead of emitting U+FFFD.
        text += decoder.decode(part, { stream: true });
        if (room <= 0) break;
      }
      ended = room > 0;
    }
  } catch {
    // What arrived before the failure is still the answer's start; the failure itself is not the receiver's message.
  } finally {
    discardBody(body);
  }
  return ended ? text + decoder.decode() : text;
}
