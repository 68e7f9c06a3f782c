import type { RiskEvent } from '../detect/events.ts';
import type { RetryableError } from '../retry.ts';
import type { DigestEvent } from './digest.ts';
import type { IncidentStep } from './incident.ts';

/**
 * A place alerts go, as two small steps: `render` turns events into the
 * sink's message, `send` delivers one message. The worker around every sink
 * owns retries, backoff, dead-lettering and recording, the same for all.
 */
export interface Sink<Message = unknown> {
  readonly name: string;
  /** `event`: one delivery per event. `poll`: one delivery per account per poll, holding all its events. */
  readonly grouping: 'event' | 'poll';
  /**
   * Whether this sink has anything to say about `event`, beyond the routing
   * every sink shares (`min_level`, `events`, `accounts`): an incident sink
   * takes no drop that stays at or above its `min_level`. Left out: all.
   */
  accepts?(event: RiskEvent): boolean;
  /**
   * Incident sinks (PagerDuty, Opsgenie): whether sending `event` here opens or
   * closes an incident, and its key (incident.ts). A close is never held back by
   * a silence (it pages nobody, and an incident opened before the silence would
   * otherwise stay open for ever), and goes whatever the sink's `events` say.
   * Left out: the sink opens nothing.
   */
  incident?(event: RiskEvent): IncidentStep | undefined;
  /**
   * Incident sinks: the message that closes incident `key` when no event does
   * (the config no longer covers it: a raised `min_level`, a new key, a sink or
   * account removed); `note` says why, where the receiver keeps one.
   */
  renderClose?(key: string, note: string): Message;
  /** The sink's one message for a digest (SPEC §9), within its receiver's limits. Left out: the sink takes no digest. */
  renderDigest?(digest: DigestEvent): Message;
  /** The message for one delivery's events (pure: no I/O). */
  render(events: readonly RiskEvent[]): Message;
  /** A clearly marked test message, for `test-sinks`. */
  renderTest(): Message;
  /** Resolves once the receiver accepted the message; else throws (a DeliveryError says whether to retry). */
  send(message: Message, signal: AbortSignal): Promise<void>;
}

/**
 * A receiver's refusal or a failed attempt, said in one line without secrets.
 * How each is classed (retryable; about the `receiver` rather than this one
 * message) is decided in one place, sinks/http-errors.ts, for every protocol.
 */
export class DeliveryError extends Error implements RetryableError {
  readonly retryable: boolean;
  /**
   * The failure is the receiver's, not this message's: no answer, a timeout, a
   * rate limit, an overloaded server or gateway (SMTP 421). The whole sink then
   * waits, so that once it recovers its deliveries go out in commit order.
   */
  readonly receiver: boolean;
  readonly retryAfterMs: number | undefined;
  readonly status: number | undefined;
  constructor(message: string, details: { retryable: boolean; receiver?: boolean; status?: number; retryAfterMs?: number; cause?: unknown }) {
    super(message, { cause: details.cause });
    this.name = 'DeliveryError';
    this.retryable = details.retryable;
    this.receiver = details.receiver ?? false;
    this.status = details.status;
    this.retryAfterMs = details.retryAfterMs;
  }
}

/** A message that says what its render shortened to fit the receiver's limits (limits.ts); the worker logs it. */
export interface Shortened {
  readonly cuts: readonly string[];
}

/** What a rendered message had to leave out, if it says. */
export function cutsOf(message: unknown): readonly string[] {
  const cuts = (message as Partial<Shortened> | null)?.cuts;
  return Array.isArray(cuts) ? cuts : [];
}
