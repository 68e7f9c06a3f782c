import { type BehaviorEvent, isUserEvent, type RiskEvent, type UserEvent } from '../../detect/events.ts';
import { accountLabel, behaviorChange, behaviorName, levelChange, oneLine, shownEvent, summarize, userFacts, userName, userVerb } from '../describe.ts';
import { type Cuts, clip, fitCount, plural } from '../limits.ts';
import { type DigestEvent, type DigestRow, digestText } from '../digest.ts';
import type { Shortened } from '../sink.ts';

const { createHash } = process.getBuiltinModule('node:crypto');

/**
 * One email for one account's events of one poll (SPEC §5): a subject that
 * says what happened, a plain-text part and an HTML part listing each user
 * (highest level first, as the events arrive) and behavior change, and a
 * Message-ID that is the same every time the same delivery is rendered.
 *
 * Strings from the API go into the body only: escaped in the HTML, on one
 * line in both parts, and never into a header (the subject holds counts and
 * the configured account label and prefix, on one line and clipped).
 */

export const EMAIL_LIMITS = {
  /** RFC 5322 asks for lines under 998 characters; a subject is read in a list, so far less. */
  subjectChars: 250,
  /** Any one string from the API (a 10,000-character name shows its start). */
  textChars: 500,
  /** Risk events listed under one user. */
  riskEvents: 5,
  /** Items tried at most, then the byte budget decides. */
  items: 1000,
  /** Both parts together, before transfer encoding: far under any server's size limit. */
  bodyBytes: 1_000_000,
} as const;

export interface EmailMessage extends Shortened {
  readonly subject: string;
  readonly text: string;
  readonly html: string;
  /** `<…>`, derived from the delivery; left out of the test message, which nodemailer then gives a fresh one. */
  readonly messageId?: string;
}

export interface EmailOptions {
  /** The sink's name: two sinks mailing the same events send two different messages. */
  readonly sink: string;
  readonly subjectPrefix: string;
  /** The configured sender, whose domain ends the Message-ID. */
  readonly from: string;
}

export function renderEmail(events: readonly RiskEvent[], options: EmailOptions): EmailMessage {
  const cuts: Cuts = [];
  const title = `riskwatch · ${oneLine(accountLabel(events))}: ${summarize(events)}`;
  const detected = events[0] ? `Cloudflare Zero Trust risk scoring · detected ${oneLine(events[0].timestamp)}` : '';
  const items = events.slice(0, EMAIL_LIMITS.items).map((event) => {
    const itemCuts: Cuts = [];
    const shown = shownEvent(event, EMAIL_LIMITS.textChars, itemCuts);
    return { ...(isUserEvent(shown) ? userItem(shown) : behaviorItem(shown)), cuts: itemCuts };
  });
  const build = (n: number) => {
    const rest = events.length - n;
    const more = rest > 0 ? `…and ${rest} more (${summarize(events.slice(n))})` : undefined;
    const shown = items.slice(0, n);
    const text = [title, detected, '', ...shown.map((i) => `${i.text}\n`), ...(more ? [more, ''] : []), FOOTER, ''].join('\n');
    const html = [
      '<!DOCTYPE html>',
      '<html><head><meta charset="utf-8"></head>',
      `<body style="${STYLE.body}">`,
      `<h2 style="${STYLE.title}">${escapeHtml(title)}</h2>`,
      `<p style="${STYLE.subtle}">${escapeHtml(detected)}</p>`,
      ...shown.map((i) => i.html),
      ...(more ? [`<p style="${STYLE.subtle}">${escapeHtml(more)}</p>`] : []),
      `<p style="${STYLE.footer}">${escapeHtml(FOOTER)}</p>`,
      '</body></html>',
      '',
    ].join('\n');
    return { text, html };
  };
  const fits = (n: number) => {
    const { text, html } = build(n);
    return Buffer.byteLength(text) + Buffer.byteLength(html) <= EMAIL_LIMITS.bodyBytes;
  };
  const n = fitCount(items.length, fits);
  for (const item of items.slice(0, n)) cuts.push(...item.cuts);
  if (n < events.length) cuts.push(`${plural(events.length - n, 'event')} of ${events.length} left out as "…and ${events.length - n} more" to fit ${EMAIL_LIMITS.bodyBytes} bytes`);
  const subject = clip(oneLine(`${options.subjectPrefix} ${accountLabel(events)}: ${summarize(events)}`), EMAIL_LIMITS.subjectChars, cuts, 'subject');
  return { subject, ...build(n), messageId: messageId(options, events), cuts };
}

export function renderEmailTest(options: EmailOptions): EmailMessage {
  const text = `riskwatch test notification for sink ${oneLine(options.sink)}: this sink works.`;
  return {
    subject: clip(oneLine(`${options.subjectPrefix} test notification for sink ${options.sink}`), EMAIL_LIMITS.subjectChars),
    text: `${text}\n\n${FOOTER}\n`,
    html: `<!DOCTYPE html>\n<html><head><meta charset="utf-8"></head>\n<body style="${STYLE.body}">\n<p>${escapeHtml(text)}</p>\n<p style="${STYLE.footer}">${escapeHtml(FOOTER)}</p>\n</body></html>\n`,
    cuts: [],
  };
}

/**
 * `<riskwatch.` + the first 32 hex digits of SHA-256 over the sink name and
 * the event ids + `@` + the sender's domain `>`: a delivery always holds the
 * same events, so a resend after a crash or a lost reply carries the same
 * Message-ID, and mail clients and archives can tell it is the same message.
 */
export function messageId(options: Pick<EmailOptions, 'sink' | 'from'>, events: readonly RiskEvent[]): string {
  const hash = createHash('sha256')
    .update([options.sink, ...events.map((e) => e.id)].join('\n'))
    .digest('hex')
    .slice(0, 32);
  return `<riskwatch.${hash}@${senderDomain(options.from)}>`;
}

/** The domain of `a@example.com` or `Name <a@example.com>`, if it is a plain one (config validates the address; this keeps the header clean anyway). */
function senderDomain(from: string): string {
  const domain = /@([A-Za-z0-9.-]+)>?\s*$/.exec(from)?.[1];
  return domain && /^[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?$/.test(domain) ? domain.toLowerCase() : 'riskwatch.invalid';
}

/** Every character HTML gives a meaning to, in text and in attribute values alike. */
export function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => HTML_ENTITY[c]!);
}
const HTML_ENTITY: Record<string, string> = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' };

const FOOTER = 'Sent by riskwatch, which watches Cloudflare Zero Trust user risk scores.';

/** Inline styles: mail clients drop <style> blocks. */
const STYLE = {
  body: 'font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;font-size:14px;color:#1f2328',
  title: 'font-size:18px;margin:0 0 4px',
  subtle: 'color:#59636e;margin:0 0 16px',
  item: 'border-top:1px solid #d1d9e0;padding:8px 0',
  footer: 'color:#59636e;font-size:12px;margin-top:24px',
} as const;
const LEVEL_COLOR = { high: '#cf222e', medium: '#bc4c00', low: '#9a6700', none: '#1a7f37' } as const;

interface Item {
  readonly text: string;
  readonly html: string;
}

function userItem(event: UserEvent): Item {
  const { current_level: after, risk_events: riskEvents = [] } = event.data;
  const level = after ?? 'none';
  const verb = userVerb(event);
  const listed = riskEvents.slice(0, EMAIL_LIMITS.riskEvents).map((r) => `${r.name} (${r.risk_level}) at ${r.timestamp}`);
  if (riskEvents.length > listed.length) listed.push(`and ${plural(riskEvents.length - listed.length, 'more risk event')}`);
  const text = [`[${level.toUpperCase()}] ${userName(event)}`, `  ${verb} ${levelChange(event)} · ${userFacts(event)}`, ...listed.map((line) => `  - ${line}`)].join('\n');
  const html = [
    `<div style="${STYLE.item}">`,
    `<div><strong>${escapeHtml(userName(event))}</strong></div>`,
    `<div>${verb} <strong style="color:${LEVEL_COLOR[level]}">${escapeHtml(levelChange(event))}</strong> · ${escapeHtml(userFacts(event))}</div>`,
    ...(listed.length > 0 ? [`<ul style="margin:4px 0">${listed.map((line) => `<li>${escapeHtml(line)}</li>`).join('')}</ul>`] : []),
    '</div>',
  ].join('');
  return { text, html };
}

function behaviorItem(event: BehaviorEvent): Item {
  const text = `[BEHAVIOR] ${behaviorName(event)} ${behaviorChange(event)}`;
  const html = `<div style="${STYLE.item}"><strong>${escapeHtml(behaviorName(event))}</strong> ${escapeHtml(behaviorChange(event))}</div>`;
  return { text, html };
}

/** A digest (SPEC §9) as one email: its title as the subject, a line per account and per user; well within the body budget (at most 100 users an account). */
export function renderEmailDigest(digest: DigestEvent, options: EmailOptions): EmailMessage {
  const cuts: Cuts = [];
  const { title, rows } = digestText(digest);
  const shown = rows.map((row) => ({ ...row, text: clip(row.text, EMAIL_LIMITS.textChars, cuts, 'a line') }));
  const line = (row: DigestRow) => (row.kind === 'account' ? `\n${row.text}` : `  ${row.kind === 'user' ? `[${row.level!.toUpperCase()}] ` : ''}${row.text}`);
  const htmlRow = (row: DigestRow) =>
    row.kind === 'account' ? `<h3 style="${STYLE.title}">${escapeHtml(row.text)}</h3>` : `<div style="${row.kind === 'user' ? STYLE.item : STYLE.subtle}">${escapeHtml(row.text)}</div>`;
  const slot = `Cloudflare Zero Trust risk scoring · digest of ${digest.timestamp}`;
  return {
    subject: clip(oneLine(`${options.subjectPrefix} ${title}`), EMAIL_LIMITS.subjectChars, cuts, 'subject'),
    text: [title, slot, ...shown.map(line), '', FOOTER, ''].join('\n'),
    html: [
      '<!DOCTYPE html>',
      '<html><head><meta charset="utf-8"></head>',
      `<body style="${STYLE.body}">`,
      `<h2 style="${STYLE.title}">${escapeHtml(title)}</h2>`,
      `<p style="${STYLE.subtle}">${escapeHtml(slot)}</p>`,
      ...shown.map(htmlRow),
      `<p style="${STYLE.footer}">${escapeHtml(FOOTER)}</p>`,
      '</body></html>',
      '',
    ].join('\n'),
    messageId: `<riskwatch.${createHash('sha256').update(digest.id).digest('hex').slice(0, 32)}@${senderDomain(options.from)}>`,
    cuts,
  };
}
