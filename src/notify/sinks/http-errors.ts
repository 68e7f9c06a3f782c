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
 * discarded so that the connection is closed instead of drained.
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

/**
 * `text` (a receiver's answer) with every credential blanked out: an error page
 * may echo the request ("Cannot POST /services/T0/B0/secret"), and the answer
 * becomes an error message that is logged and stored.
 */
export function redact(text: string, secrets: readonly string[]): string {
  let out = text;
  for (const secret of [...secrets].sort((a, b) => b.length - a.length)) if (secret.length >= 4) out = out.replaceAll(secret, '****');
  return out;
}

/** What of a URL is secret: all of it, its path and query (a webhook's token), each query value (a Workflows `sig`). */
export function urlSecrets(url: string): string[] {
  const parsed = URL.parse(url);
  if (!parsed) return [url];
  const tail = `${parsed.pathname}${parsed.search}`;
  return [url, ...(tail.length > 1 ? [tail, parsed.pathname] : []), ...[...parsed.searchParams.values()]].filter((s) => s.length > 1);
}

/**
 * How every sink's failures are classed, HTTP and SMTP alike: retryable or
 * permanent, and whether the receiver itself is struggling (DeliveryError.receiver).
 * No answer at all is the receiver's: retried, the sink held, unless the request
 * itself was wrong.
 */

/** HTTP statuses about the receiver rather than the payload: a timeout, a rate limit, a failing gateway, a service unavailable. */
const RECEIVER_STATUSES: ReadonlySet<number> = new Set([408, 429, 502, 503, 504]);
/** SMTP 421: the service is not available and closes the channel. */
const SMTP_SERVICE_UNAVAILABLE = 421;

/** No answer (refused, reset, timed out): worth another attempt, unless the request itself was wrong. Never names the URL: it is a secret. */
export function transportFailure(sink: string, error: unknown, signal: AbortSignal): DeliveryError {
  if (signal.aborted) return new DeliveryError(`sink ${sink}: no answer in time (timed out)`, { retryable: true, receiver: true, cause: error });
  const permanent = isPermanentTransportError(error);
  return new DeliveryError(`sink ${sink}: ${describeNetworkError(error)}${permanent ? ' (permanent)' : ''}`, { retryable: !permanent, receiver: !permanent, cause: error });
}

/** A non-2xx answer: 408, 429 and 5xx are retried (honouring Retry-After); any other status (3xx and 4xx) is permanent. */
export function httpFailure(sink: string, status: number, retryAfter: string | string[] | undefined, body: string, now: number): DeliveryError {
  const retryable = isRetryableStatus(status);
  const retryAfterMs = parseRetryAfter(retryAfter, now);
  return new DeliveryError(`sink ${sink}: HTTP ${status}${retryable ? '' : ' (permanent)'}: ${excerpt(body)}`, {
    retryable,
    receiver: RECEIVER_STATUSES.has(status),
    status,
    ...(retryAfterMs === undefined ? {} : { retryAfterMs }),
  });
}

/** What nodemailer attaches to its errors (its NodemailerError), read defensively. */
interface SmtpErrorFields {
  readonly code?: unknown;
  readonly originalCode?: unknown;
  readonly responseCode?: unknown;
  readonly response?: unknown;
  readonly command?: unknown;
  readonly message?: unknown;
}

/**
 * nodemailer's codes for failures with no SMTP reply that another attempt
 * cannot fix: no or refused credentials, an address or message the client
 * will not send, a configuration it rejects. Every other failure without a
 * reply (ECONNECTION, ETIMEDOUT, ESOCKET with ECONNREFUSED or ECONNRESET
 * inside, EDNS, ETLS, a greeting that never came) is the connection's, and
 * retried.
 */
const PERMANENT_SMTP_CODES: ReadonlySet<string> = new Set(['EAUTH', 'ENOAUTH', 'EOAUTH2', 'EENVELOPE', 'EMESSAGE', 'ECONFIG', 'EREQUIRETLS', 'EMAXRECIPIENTS', 'EFILEACCESS', 'EURLACCESS']);

/**
 * A failed SMTP send, from nodemailer's error: a 4xx reply is transient and
 * retried, a 5xx reply (a refused recipient, message or login, 535) is
 * permanent (SPEC §5); without a reply, the connection failed and it is
 * retried, unless nodemailer's code says the attempt itself was wrong
 * (PERMANENT_SMTP_CODES). `status` is the reply code. The line names the SMTP
 * command and quotes the reply, never the server URL or its password: the
 * sink hands nodemailer the host and the credentials apart, and no command
 * text that carries them is quoted.
 */
export function smtpFailure(sink: string, error: unknown, signal: AbortSignal): DeliveryError {
  if (signal.aborted) return new DeliveryError(`sink ${sink}: no answer in time (timed out)`, { retryable: true, receiver: true, cause: error });
  const fields = (typeof error === 'object' && error !== null ? error : {}) as SmtpErrorFields;
  const code = typeof fields.code === 'string' ? fields.code : undefined;
  const reply = typeof fields.responseCode === 'number' && fields.responseCode >= 200 && fields.responseCode < 600 ? fields.responseCode : undefined;
  if (reply !== undefined) {
    const retryable = reply < 500;
    const during = typeof fields.command === 'string' && /^[A-Z][A-Z ]{0,20}$/.test(fields.command) ? ` in reply to ${fields.command.split(' ')[0]}` : '';
    const text = typeof fields.response === 'string' ? fields.response : '';
    return new DeliveryError(`sink ${sink}: SMTP ${reply}${retryable ? '' : ' (permanent)'}${during}: ${excerpt(text)}`, {
      retryable,
      receiver: reply === SMTP_SERVICE_UNAVAILABLE,
      status: reply,
      cause: error,
    });
  }
  const permanent = code !== undefined && PERMANENT_SMTP_CODES.has(code);
  const detail = describeNetworkError(error).replace(/\s+/g, ' ').trim();
  const inner = typeof fields.originalCode === 'string' && !detail.includes(fields.originalCode) ? ` (${fields.originalCode})` : '';
  return new DeliveryError(`sink ${sink}: ${detail}${inner}${permanent ? ' (permanent)' : ''}`, { retryable: !permanent, receiver: !permanent, cause: error });
}
