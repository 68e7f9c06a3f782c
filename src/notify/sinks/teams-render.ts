import { type BehaviorEvent, isUserEvent, type RiskEvent, type UserEvent } from '../../detect/events.ts';
import type { RiskLevel } from '../../model.ts';
import { accountLabel, behaviorChange, levelChange, oneLine, shownEvent, summarize, userFacts, userVerb } from '../describe.ts';
import { type Cuts, clip, fitCount, jsonBytes, plural } from '../limits.ts';
import { type DigestEvent, digestText } from '../digest.ts';
import type { Shortened } from '../sink.ts';

/**
 * A Microsoft Teams Adaptive Card (1.4) for one account's events of one poll,
 * posted to a Power Automate Workflows webhook (SPEC §5, RECEIVERS.md): a
 * header, an item per user (highest level first, as the events arrive) and per
 * behavior change, and "…and N more" past what fits in the request budget.
 *
 * Every string from the API sits in a RichTextBlock's TextRun, whose text
 * Adaptive Cards do not parse as Markdown (a TextBlock's would turn
 * `[x](https://…)` into a link): names cannot link, format or mention (`<at>`
 * is a mention only when listed in `msteams.entities`, which this card never
 * has). TextBlocks hold only riskwatch's own words (when it was detected,
 * "…and N more"). RichTextBlocks always wrap; TextBlocks say `wrap: true`
 * (Teams mobile truncates otherwise).
 */

/**
 * A flow refuses a message over 28,672 bytes measured after it wraps the body,
 * and a 24 KB request has failed (RECEIVERS.md; see
 * https://github.com/MicrosoftDocs/msteams-docs/issues/11274): requests stay
 * at or under 20,000 bytes.
 */
export const TEAMS_LIMITS = {
  requestBytes: 20_000,
  /** Any one string from the API (a 10,000-character name shows its start). */
  textChars: 300,
  /** The header and the notification preview. */
  titleChars: 200,
  /** Items tried at most: a card is read, not scrolled; the byte budget usually stops far sooner. */
  items: 100,
  /** Risk events listed under one user. */
  riskEvents: 3,
} as const;

export interface TeamsMessage extends Shortened {
  /** The JSON body as posted (the URL, a secret, is added by send). */
  readonly payload: TeamsPayload;
}

export interface TeamsPayload {
  readonly type: 'message';
  /** The notification preview: without it Teams shows "Card". */
  readonly summary: string;
  readonly attachments: readonly [
    {
      readonly contentType: 'application/vnd.microsoft.card.adaptive';
      readonly contentUrl: null;
      readonly content: AdaptiveCard;
    },
  ];
}

export interface AdaptiveCard {
  readonly $schema: 'http://adaptivecards.io/schemas/adaptive-card.json';
  readonly type: 'AdaptiveCard';
  readonly version: '1.4';
  readonly body: readonly CardElement[];
}

type Color = 'Default' | 'Attention' | 'Warning' | 'Good' | 'Accent';
export interface TextRun {
  readonly type: 'TextRun';
  readonly text: string;
  readonly weight?: 'Bolder';
  readonly size?: 'Medium';
  readonly color?: Color;
  readonly isSubtle?: true;
}
export type CardElement =
  | { readonly type: 'RichTextBlock'; readonly inlines: readonly TextRun[]; readonly spacing?: 'None' }
  | { readonly type: 'TextBlock'; readonly text: string; readonly wrap: true; readonly isSubtle: true; readonly size: 'Small' }
  | { readonly type: 'Container'; readonly separator: true; readonly spacing: 'Medium'; readonly items: readonly CardElement[] };

const LEVEL_ICON: Record<RiskLevel | 'none', string> = { high: '🔴', medium: '🟠', low: '🟡', none: '⚪' };
const LEVEL_COLOR: Record<RiskLevel | 'none', Color> = { high: 'Attention', medium: 'Warning', low: 'Default', none: 'Good' };
const BEHAVIOR_ICON: Record<BehaviorEvent['type'], string> = {
  'behavior.disabled': '⛔',
  'behavior.enabled': '✅',
  'behavior.risk_level_changed': '🔄',
  'behavior.added': '🆕',
  'behavior.removed': '🗑️',
};

export function renderTeams(events: readonly RiskEvent[]): TeamsMessage {
  const cuts: Cuts = [];
  const title = clip(`riskwatch · ${oneLine(accountLabel(events))}: ${summarize(events)}`, TEAMS_LIMITS.titleChars, cuts, 'title');
  const head: CardElement[] = [rich([run(title, { weight: 'Bolder', size: 'Medium' })])];
  const detected = events[0]?.timestamp;
  if (detected) head.push(note(`Cloudflare Zero Trust risk scoring · detected ${oneLine(detected)}`));
  // Each item clipped once; only the cuts of the items shown are reported.
  const items = events.slice(0, TEAMS_LIMITS.items).map((event) => {
    const itemCuts: Cuts = [];
    const shown = shownEvent(event, TEAMS_LIMITS.textChars, itemCuts);
    return { element: item(isUserEvent(shown) ? userLines(shown) : behaviorLines(shown)), cuts: itemCuts };
  });
  const build = (n: number): TeamsPayload => {
    const rest = events.length - n;
    const more = rest > 0 ? [note(`…and ${rest} more (${summarize(events.slice(n))})`)] : [];
    return payload(title, [...head, ...items.slice(0, n).map((i) => i.element), ...more]);
  };
  const n = fitCount(items.length, (k) => jsonBytes(build(k)) <= TEAMS_LIMITS.requestBytes);
  for (const shown of items.slice(0, n)) cuts.push(...shown.cuts);
  if (n < events.length) cuts.push(`${plural(events.length - n, 'event')} of ${events.length} left out as "…and ${events.length - n} more" to fit ${TEAMS_LIMITS.requestBytes} bytes`);
  return { payload: build(n), cuts };
}

export function renderTeamsTest(sinkName: string): TeamsMessage {
  const text = clip(`riskwatch test notification for sink ${oneLine(sinkName)}: this sink works`, TEAMS_LIMITS.titleChars);
  return { payload: payload(text, [rich([run(`✅ ${text}`, { weight: 'Bolder' })])]), cuts: [] };
}

function payload(summary: string, body: CardElement[]): TeamsPayload {
  return {
    type: 'message',
    summary,
    attachments: [
      {
        contentType: 'application/vnd.microsoft.card.adaptive',
        contentUrl: null,
        content: { $schema: 'http://adaptivecards.io/schemas/adaptive-card.json', type: 'AdaptiveCard', version: '1.4', body },
      },
    ],
  };
}

function run(text: string, style: Omit<TextRun, 'type' | 'text'> = {}): TextRun {
  return { type: 'TextRun', text, ...style };
}

function rich(inlines: TextRun[], spacing?: 'None'): CardElement {
  return spacing ? { type: 'RichTextBlock', inlines, spacing } : { type: 'RichTextBlock', inlines };
}

/** riskwatch's own words only (counts, levels, times): a TextBlock, whose text is Markdown, never holds API text. */
function note(text: string): CardElement {
  return { type: 'TextBlock', text, wrap: true, isSubtle: true, size: 'Small' };
}

function item(lines: CardElement[]): CardElement {
  return { type: 'Container', separator: true, spacing: 'Medium', items: lines };
}

function userLines(event: UserEvent): CardElement[] {
  const { user, current_level: after, risk_events: riskEvents = [] } = event.data;
  const level = after ?? 'none';
  const who = user.name ? [run(user.name, { weight: 'Bolder' }), run(` · ${user.email}`)] : [run(user.email, { weight: 'Bolder' })];
  const lines = [
    rich([run(`${LEVEL_ICON[level]} `), ...who]),
    rich([run(`${userVerb(event)} `), run(levelChange(event), { weight: 'Bolder', color: LEVEL_COLOR[level] }), run(` · ${userFacts(event)}`, { isSubtle: true })], 'None'),
  ];
  for (const riskEvent of riskEvents.slice(0, TEAMS_LIMITS.riskEvents)) {
    lines.push(rich([run(`• ${riskEvent.name} (${riskEvent.risk_level}) at ${riskEvent.timestamp}`, { isSubtle: true })], 'None'));
  }
  if (riskEvents.length > TEAMS_LIMITS.riskEvents) lines.push(rich([run(`• and ${plural(riskEvents.length - TEAMS_LIMITS.riskEvents, 'more risk event')}`, { isSubtle: true })], 'None'));
  return lines;
}

function behaviorLines(event: BehaviorEvent): CardElement[] {
  const { behavior } = event.data;
  return [rich([run(`${BEHAVIOR_ICON[event.type]} `), run(behavior.name, { weight: 'Bolder' }), run(` (${behavior.id}) ${behaviorChange(event)}`)])];
}

/**
 * A digest (SPEC §9) as one card: its title, then a line per account (bold)
 * and per user; as many as fit the 20,000-byte request, then "…and N more
 * users" saying how many were left out.
 */
export function renderTeamsDigest(digest: DigestEvent): TeamsMessage {
  const cuts: Cuts = [];
  const { title: full, rows } = digestText(digest);
  const title = clip(full, TEAMS_LIMITS.titleChars, cuts, 'title');
  const head: CardElement[] = [rich([run(title, { weight: 'Bolder', size: 'Medium' })]), note(`Cloudflare Zero Trust risk scoring · digest of ${digest.timestamp}`)];
  const lines = rows.map((row) => {
    const text = clip(row.text, TEAMS_LIMITS.textChars, cuts, 'a line');
    if (row.kind === 'account') return item([rich([run(text, { weight: 'Bolder' })])]);
    if (row.kind === 'more') return rich([run(text, { isSubtle: true })], 'None');
    return rich([run(`${LEVEL_ICON[row.level!]} `), run(text, { color: LEVEL_COLOR[row.level!] })], 'None');
  });
  const usersAfter = (n: number) => rows.slice(n).filter((row) => row.kind === 'user').length;
  const build = (n: number): TeamsPayload => {
    const left = usersAfter(n);
    return payload(title, [...head, ...lines.slice(0, n), ...(n < rows.length ? [note(`…and ${plural(left, 'more user')} (riskwatch users lists them all)`)] : [])]);
  };
  const n = fitCount(lines.length, (k) => jsonBytes(build(k)) <= TEAMS_LIMITS.requestBytes);
  if (n < rows.length) cuts.push(`${plural(usersAfter(n), 'user')} left out as "…and N more" to fit ${TEAMS_LIMITS.requestBytes} bytes`);
  return { payload: build(n), cuts };
}
