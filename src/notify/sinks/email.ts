import { createTransport, type SMTPTransportOptions, type Transporter } from 'nodemailer';
import type { Clock } from '../../clock.ts';
import type { EmailSinkConfig } from '../../config/config.ts';
import type { RiskEvent } from '../../detect/events.ts';
import { isLoopbackHost } from '../../http.ts';
import type { DigestEvent } from '../digest.ts';
import type { Sink } from '../sink.ts';
import { type EmailMessage, type EmailOptions, renderEmail, renderEmailDigest, renderEmailTest } from './email-render.ts';
import { smtpFailure } from './http-errors.ts';

/**
 * How long each step of an SMTP session may take. The worker's send timeout
 * (the signal) bounds the whole send; these end a stuck connection sooner and
 * say which step hung (nodemailer's defaults are 2 and 10 minutes).
 */
const TIMEOUTS = { connectionTimeout: 30_000, greetingTimeout: 30_000, socketTimeout: 30_000, dnsTimeout: 30_000 } as const;

/**
 * nodemailer's options for an `smtp` URL (SPEC §5): `smtps://` is TLS from
 * the first byte (port 465 by default); `smtp://` must upgrade with STARTTLS
 * before anything else is said, credentials included (`requireTLS`; port 587
 * by default), except on a loopback host, where STARTTLS is used when offered
 * and plain is allowed. Certificates are verified except on a loopback host:
 * no network is crossed there, and a local relay's certificate is commonly
 * self-signed (Debian's Postfix offers STARTTLS with its snakeoil one), which
 * would fail every mail. User and password
 * come from the URL, percent-decoded; the URL itself is never handed on, so
 * that no error or log line of nodemailer can hold it.
 */
export function smtpTransportOptions(smtpUrl: string): SMTPTransportOptions {
  // URL's own error carries the input: password and all.
  const url = URL.parse(smtpUrl);
  if (!url || (url.protocol !== 'smtp:' && url.protocol !== 'smtps:') || url.hostname === '') throw new Error('smtp must be an smtp:// or smtps:// URL');
  const secure = url.protocol === 'smtps:';
  const host = url.hostname.replace(/^\[|\]$/g, '');
  const user = decodeURIComponent(url.username);
  const loopback = isLoopbackHost(host);
  return {
    host,
    port: url.port ? Number(url.port) : secure ? 465 : 587,
    secure,
    requireTLS: !secure && !loopback,
    ...(loopback ? { tls: { rejectUnauthorized: false } } : {}),
    ...(user ? { auth: { user, pass: decodeURIComponent(url.password) } } : {}),
    ...TIMEOUTS,
    // Riskwatch writes every part itself: nothing may make nodemailer read a file or fetch a URL.
    disableFileAccess: true,
    disableUrlAccess: true,
    logger: false,
  };
}

/**
 * Email through nodemailer (SPEC §5): one message per account per poll. One
 * transport per sink, not pooled: each send opens its own connection, which
 * its signal closes when the worker's send timeout fires or the daemon stops
 * (nodemailer ends the connection of an aborted send), so a server that hangs
 * cannot hold a delivery. 4xx replies and connection failures are retried,
 * 5xx replies are permanent (http-errors.ts, smtpFailure).
 */
export class EmailSink implements Sink<EmailMessage> {
  readonly name: string;
  readonly grouping = 'poll';
  readonly #config: EmailSinkConfig;
  readonly #options: EmailOptions;
  readonly #transport: Transporter;

  constructor(config: EmailSinkConfig, _deps: { clock: Clock }) {
    this.name = config.name;
    this.#config = config;
    this.#options = { sink: config.name, subjectPrefix: config.subjectPrefix, from: config.from };
    this.#transport = createTransport(smtpTransportOptions(config.smtp.reveal()));
  }

  render(events: readonly RiskEvent[]): EmailMessage {
    return renderEmail(events, this.#options);
  }

  renderDigest(digest: DigestEvent): EmailMessage {
    return renderEmailDigest(digest, this.#options);
  }

  renderTest(): EmailMessage {
    return renderEmailTest(this.#options);
  }

  async send(message: EmailMessage, signal: AbortSignal): Promise<void> {
    try {
      // A recipient refused while others took the message still counts as delivered: a retry would send it again to them all.
      await this.#transport.sendMail({
        from: this.#config.from,
        to: [...this.#config.to],
        subject: message.subject,
        text: message.text,
        html: message.html,
        ...(message.messageId ? { messageId: message.messageId } : {}),
        // RFC 3834: no out-of-office reply to an alert (Exchange reads its own header).
        headers: { 'Auto-Submitted': 'auto-generated', 'X-Auto-Response-Suppress': 'All' },
        signal,
      });
    } catch (error) {
      throw smtpFailure(this.name, error, signal);
    }
  }
}
