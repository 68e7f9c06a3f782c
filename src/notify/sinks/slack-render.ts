import { type BehaviorEvent, isUserEvent, type RiskEvent, type UserEvent } from '../../detect/events.ts';
import type { RiskLevel } from '../../model.ts';
import { accountLabel, levelChange, summarize, userVerb } from '../describe.ts';
import { type DigestEvent, type DigestRow, digestText } from '../digest.ts';
import { clip } from '../limits.ts';

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
type Block = { type: 'header'; text: { type: 'plain_text'; text: string; emoji: true } } | { type: 'section'; text: Mrkdwn } | { type: 'context'; elements: Mrkdwn[] };

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
  const label = accountLabel(events);
  const summary = summarize(events);
  const blocks: Block[] = [{ type: 'header', text: { type: 'plain_text', text: clipEscaped(`riskwatch · ${label}: ${summary}`, SLACK_LIMITS.headerText), emoji: true } }];
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
  return { type: 'section', text: verbatim(clipEscaped(text, SLACK_LIMITS.sectionText)) };
}

/** The configured mention, alone in its section and not verbatim: the one text Slack must parse, so that `<!here>` notifies. */
function mentionSection(mention: string): Block {
  return { type: 'section', text: { type: 'mrkdwn', text: clipEscaped(mention, SLACK_LIMITS.sectionText) } };
}

function verbatim(text: string): Mrkdwn {
  return { type: 'mrkdwn', text, verbatim: true };
}

function userText(event: UserEvent): string {
  const { user, previous_level: before, current_level: after, risk_events: riskEvents } = event.data;
  const who = user.name ? `*${escapeSlack(user.name)}* · ${escapeSlack(user.email)}` : `*${escapeSlack(user.email)}*`;
  const change = event.type === 'user.flapping' || event.type === 'user.settled' ? `${userVerb(event)} *${levelChange(event)}*` : `${before ?? 'none'} → *${after ?? 'none (left the summary)'}*`;
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

/** Slack's clip: never leaves half of an `&amp;` escape before the ellipsis. */
function clipEscaped(text: string, max: number): string {
  const cut = clip(text, max);
  return cut === text ? text : `${cut.slice(0, -1).replace(/&[a-z]{0,3}$/, '')}…`;
}

/**
 * A digest (SPEC §9) as one Slack message: the title as its header, then the
 * accounts and their users as lines packed into sections of at most 3,000
 * characters; past the 50 blocks, "…and N more" names how many users were left out.
 */
export function renderSlackDigest(digest: DigestEvent, mention: string | undefined): SlackMessage {
  const { title, rows } = digestText(digest);
  const blocks: Block[] = [{ type: 'header', text: { type: 'plain_text', text: clipEscaped(title, SLACK_LIMITS.headerText), emoji: true } }];
  if (mention) blocks.push(mentionSection(mention));
  const line = (row: DigestRow) => (row.kind === 'account' ? `*${escapeSlack(row.text)}*` : row.kind === 'user' ? `${LEVEL_ICON[row.level!]} ${escapeSlack(row.text)}` : `_${escapeSlack(row.text)}_`);
  // Lines packed into sections; each section knows how many users it lists.
  const sections: { text: string; users: number }[] = [];
  for (const row of rows) {
    const next = line(row);
    const last = sections.at(-1);
    if (last && last.text.length + 1 + next.length <= SLACK_LIMITS.sectionText) last.text += `\n${next}`;
    else sections.push({ text: next, users: 0 });
    if (row.kind === 'user') sections.at(-1)!.users++;
  }
  const room = SLACK_LIMITS.blocks - blocks.length - 1;
  for (const { text } of sections.slice(0, room)) blocks.push(section(text));
  const left = sections.slice(room).reduce((n, s) => n + s.users, 0);
  if (sections.length > room) blocks.push({ type: 'context', elements: [verbatim(`…and ${left} more ${left === 1 ? 'user' : 'users'} (riskwatch users lists them all)`)] });
  return { text: `${mention ? `${mention} ` : ''}${escapeSlack(title)}`, blocks };
}
