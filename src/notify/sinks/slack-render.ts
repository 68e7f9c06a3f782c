import { type BehaviorEvent, isUserEvent, type RiskEvent, type UserEvent } from '../../detect/events.ts';
import type { RiskLevel } from '../../model.ts';

/**
 * Slack Block Kit for one account's events of one poll (SPEC §5): a header, a
 * section per user (highest level first) and per behavior change, "and N
 * more" past what fits, and a plain-text fallback. Inside Slack's limits, and
 * every string from the API escaped so that it cannot mention or link.
 */

export interface SlackMessage {
  readonly text: string;
  readonly blocks: readonly Block[];
}

/**
 * `verbatim: true` on a mrkdwn object that may hold API text: escaping `&`, `<`
 * and `>` stops `<!channel>` and `<url|label>`, but without `verbatim` Slack
 * still turns a bare URL (a user named https://evil.example) into a link and
 * parses some mentions. Only the configured mention goes without it.
 */
type Mrkdwn = { type: 'mrkdwn'; text: string; verbatim?: true };
type Block =
  | { type: 'header'; text: { type: 'plain_text'; text: string; emoji: true } }
  | { type: 'section'; text: Mrkdwn }
  | { type: 'context'; elements: Mrkdwn[] };

export const SLACK_LIMITS = { blocks: 50, sectionText: 3000, headerText: 150 } as const;
/** Item sections per message: the rest of the 50 blocks is header, mention and "and N more". */
const MAX_ITEMS = SLACK_LIMITS.blocks - 3;
/** Risk events listed under one user. */
const MAX_RISK_EVENTS = 5;

const LEVEL_ICON: Record<RiskLevel | 'none', string> = {
  high: ':red_circle:',
  medium: ':large_orange_circle:',
  low: ':large_yellow_circle:',
  none: ':white_circle:',
};

/** `&`, `<` and `>` are all Slack parses: escaped, a name can carry no `<!channel>`, mention or link. */
export function escapeSlack(text: string): string {
  return text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}

export function renderSlack(events: readonly RiskEvent[], mention: string | undefined): SlackMessage {
  const account = events[0]?.data.account;
  const label = account ? (account.name ?? account.id) : 'riskwatch';
  const summary = summarize(events);
  const blocks: Block[] = [{ type: 'header', text: { type: 'plain_text', text: clip(`riskwatch · ${label}: ${summary}`, SLACK_LIMITS.headerText), emoji: true } }];
  if (mention) blocks.push(mentionSection(mention));
  for (const event of events.slice(0, MAX_ITEMS)) blocks.push(section(isUserEvent(event) ? userText(event) : behaviorText(event)));
  const more = events.length - MAX_ITEMS;
  if (more > 0) blocks.push({ type: 'context', elements: [verbatim(`…and ${more} more (${summarize(events.slice(MAX_ITEMS))})`)] });
  const text = `${mention ? `${mention} ` : ''}riskwatch: ${escapeSlack(label)}: ${summary}`;
  return { text, blocks };
}

export function renderSlackTest(sinkName: string): SlackMessage {
  const text = `riskwatch test notification for sink ${escapeSlack(sinkName)}: this sink works.`;
  return { text, blocks: [section(`:white_check_mark: ${text}`)] };
}

/** A section of text that may carry API text: verbatim, so that nothing in it becomes a link or a mention. */
function section(text: string): Block {
  return { type: 'section', text: verbatim(clip(text, SLACK_LIMITS.sectionText)) };
}

/** The configured mention, alone in its section and not verbatim: the one text Slack must parse, so that `<!here>` notifies. */
function mentionSection(mention: string): Block {
  return { type: 'section', text: { type: 'mrkdwn', text: clip(mention, SLACK_LIMITS.sectionText) } };
}

function verbatim(text: string): Mrkdwn {
  return { type: 'mrkdwn', text, verbatim: true };
}

function userText(event: UserEvent): string {
  const { user, previous_level: before, current_level: after, risk_events: riskEvents } = event.data;
  const who = user.name ? `*${escapeSlack(user.name)}* · ${escapeSlack(user.email)}` : `*${escapeSlack(user.email)}*`;
  const change = `${before ?? 'none'} → *${after ?? 'none (left the summary)'}*`;
  const facts = [`${user.event_count} risk event${user.event_count === 1 ? '' : 's'}`];
  if (user.last_event) facts.push(`last ${escapeSlack(user.last_event)}`);
  const lines = [`${LEVEL_ICON[after ?? 'none']} ${who}`, `${change} · ${facts.join(' · ')}`];
  for (const riskEvent of (riskEvents ?? []).slice(0, MAX_RISK_EVENTS)) {
    lines.push(`• ${escapeSlack(riskEvent.name)} (${riskEvent.risk_level}) at ${escapeSlack(riskEvent.timestamp)}`);
  }
  return lines.join('\n');
}

function behaviorText(event: BehaviorEvent): string {
  const { behavior, previous } = event.data;
  const name = `*${escapeSlack(behavior.name)}* (\`${escapeSlack(behavior.id).replace(/`/g, "'")}\`)`;
  switch (event.type) {
    case 'behavior.disabled':
      return `:no_entry: ${name} was *disabled* (risk level ${behavior.risk_level})`;
    case 'behavior.enabled':
      return `:white_check_mark: ${name} was *enabled* (risk level ${behavior.risk_level})`;
    case 'behavior.risk_level_changed':
      return `:arrows_counterclockwise: ${name} risk level ${previous?.risk_level ?? '?'} → *${behavior.risk_level}*`;
    case 'behavior.added':
      return `:new: ${name} was added (${behavior.enabled ? 'enabled' : 'disabled'}, risk level ${behavior.risk_level})`;
    case 'behavior.removed':
      return `:wastebasket: ${name} was removed (was ${behavior.enabled ? 'enabled' : 'disabled'}, risk level ${behavior.risk_level})`;
  }
}

/** "3 users raised (1 to high), 1 behavior disabled" */
function summarize(events: readonly RiskEvent[]): string {
  const counts = new Map<string, number>();
  let toHigh = 0;
  for (const event of events) {
    counts.set(event.type, (counts.get(event.type) ?? 0) + 1);
    if (event.type === 'user.risk_level_raised' && event.data.current_level === 'high') toHigh++;
  }
  const parts: string[] = [];
  const plural = (n: number, noun: string) => `${n} ${noun}${n === 1 ? '' : 's'}`;
  for (const [type, n] of counts) {
    const [kind, verb] = type.split('.') as [string, string];
    const what = verb === 'risk_level_raised' ? 'raised' : verb === 'risk_level_lowered' ? 'lowered' : verb === 'risk_level_changed' ? 'level changed' : verb;
    parts.push(`${plural(n, kind)} ${what}${verb === 'risk_level_raised' && toHigh > 0 ? ` (${toHigh} to high)` : ''}`);
  }
  return parts.join(', ') || 'no changes';
}

/**
 * Cuts to at most `max` UTF-16 units (so also at most `max` code points, however
 * Slack counts), at a code point boundary: an emoji at the cut goes whole, never
 * half a surrogate pair, which Slack would show as garbage. Never leaves half of
 * an `&amp;` escape behind either.
 */
function clip(text: string, max: number): string {
  if (text.length <= max) return text;
  let end = max - 1;
  if (isHighSurrogate(text.charCodeAt(end - 1))) end--;
  return `${text.slice(0, end).replace(/&[a-z]{0,3}$/, '')}…`;
}

function isHighSurrogate(unit: number): boolean {
  return unit >= 0xd800 && unit <= 0xdbff;
}
