/** HTTP and network facts shared by the config, the Cloudflare client and the sinks, and the one way they send a request. */

import type { Agent, IncomingMessage } from 'node:http';
import type { Readable } from 'node:stream';

/** A response body: Node's stream of the answer (an IncomingMessage), read (or not) by whoever asked. */
export type ResponseBody = Readable | null | undefined;

export interface HttpRequest {
  readonly method: 'GET' | 'POST';
  readonly headers?: Readonly<Record<string, string>>;
  readonly body?: string;
  /** Aborts the request, and the body's reading when it has an answer: every caller's deadline. */
  readonly signal: AbortSignal;
}

export interface HttpResponse {
  readonly statusCode: number;
  /** Every value of each header, as sent (Node would join a repeated header into one string). */
  readonly headers: Readonly<Record<string, string[] | undefined>>;
  /** Must be read to its end or discarded (discardBody), so that the connection goes back to the pool or is closed. */
  readonly body: IncomingMessage;
}

/** What sends a request: the pool below, or a test's wrapper around it. */
export interface Http {
  request(url: string, init: HttpRequest): Promise<HttpResponse>;
}

/**
 * Keep-alive connections for the Cloudflare client and the sinks, at most 16
 * per origin, an idle one closed after 30 s (or when the server's Keep-Alive
 * hint says so): Node's own HTTP client, whose parser is native. It replaced
 * undici, whose WebAssembly parser held 24 MB of a daemon that idles in less
 * than 100 (issue 17). Redirects are never followed: a receiver's URL that
 * redirects is wrong, and its 3xx says so.
 */
export class HttpPool implements Http {
  /** One agent per scheme, made at its first request: node:https (TLS) is loaded only by what sends over it. */
  readonly #agents = new Map<string, Agent>();

  request(url: string, init: HttpRequest): Promise<HttpResponse> {
    return new Promise((resolve, reject) => {
      // Inside the promise: a URL or header value Node refuses (it throws) rejects, as a refused connection does.
      const target = new URL(url);
      const client = process.getBuiltinModule(target.protocol === 'https:' ? 'node:https' : 'node:http');
      let agent = this.#agents.get(target.protocol);
      if (!agent) {
        agent = new client.Agent({ keepAlive: true, maxSockets: 16, timeout: 30_000 });
        this.#agents.set(target.protocol, agent);
      }
      // Node reports an abort only once the request has a connection: one queued behind the pool's
      // 16 would wait for a free one. The caller's deadline is now.
      const aborted = () => reject(init.signal.reason);
      init.signal.addEventListener('abort', aborted, { once: true });
      const request = client.request(target, { method: init.method, headers: init.headers, agent, signal: init.signal }, (response) => {
        init.signal.removeEventListener('abort', aborted);
        resolve({ statusCode: response.statusCode ?? 0, headers: response.headersDistinct, body: response });
      });
      request.on('error', (error) => {
        init.signal.removeEventListener('abort', aborted);
        reject(error);
      });
      request.end(init.body);
    });
  }

  /** Closes every connection, idle or not: for after the last request. */
  close(): void {
    for (const agent of this.#agents.values()) agent.destroy();
  }
}

/** The pool of whatever is given none (a test, a one-off command): one per process, as a browser has. */
export const sharedHttp: Http = new HttpPool();

/** Loopback hosts, where plain HTTP or SMTP crosses no network: a local relay may skip TLS, a test's fake may serve http. */
export function isLoopbackHost(hostname: string): boolean {
  const host = hostname.replace(/^\[|\]$/g, '').toLowerCase();
  if (host === 'localhost' || host.endsWith('.localhost')) return true;
  // node:net, loaded only here: a command whose config names no URL need not pay its 5 ms.
  const { isIP } = process.getBuiltinModule('node:net');
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
 * Transport failures that another attempt cannot fix: a request Node refuses
 * to send (a header value with a line break, a URL it cannot parse).
 */
export function isPermanentTransportError(error: unknown): boolean {
  const code = rootCause(error).code ?? '';
  return code.startsWith('ERR_INVALID_') || code === 'ERR_HTTP_INVALID_HEADER_VALUE' || code === 'ERR_UNESCAPED_CHARACTERS';
}

function ignore(): void {}

/**
 * Lets go of a response body without reading (the rest of) it. A body that has
 * fully arrived (a short answer that came with its headers) is let run to its
 * end, which hands the connection back to the pool; one still arriving is
 * destroyed, which closes the connection rather than drain whatever the peer
 * still sends.
 */
export function discardBody(body: ResponseBody): void {
  if (!body || body.destroyed) return;
  // A destroyed body may still report the abort; nobody needs it.
  body.on('error', ignore);
  if ((body as Partial<IncomingMessage>).complete === true) body.resume();
  else body.destroy();
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
