import { describe, expect, it } from 'vitest';
import type { RiskEvent } from '../../src/detect/events.ts';
import type { RiskEventDetail } from '../../src/model.ts';
import { jsonBytes } from '../../src/notify/limits.ts';
import { type CardElement, renderTeams, renderTeamsTest, TEAMS_LIMITS, type TeamsMessage, type TextRun } from '../../src/notify/sinks/teams-render.ts';
import { expectGolden } from '../support/golden.ts';
import { ACCOUNT, HOSTILE, hostileEvents, LONG, ONE_OF_EACH, storm, userEvent } from '../support/sink-fixtures.ts';

const card = (message: TeamsMessage) => message.payload.attachments[0].content;

/** Every element of the card, depth first, containers and their items alike. */
function elements(message: TeamsMessage): CardElement[] {
  const all: CardElement[] = [];
  const walk = (list: readonly CardElement[]) => {
    for (const element of list) {
      all.push(element);
      if (element.type === 'Container') walk(element.items);
    }
  };
  walk(card(message).body);
  return all;
}
const runs = (message: TeamsMessage): TextRun[] => elements(message).flatMap((e) => (e.type === 'RichTextBlock' ? e.inlines : []));
const textBlocks = (message: TeamsMessage): string[] => elements(message).flatMap((e) => (e.type === 'TextBlock' ? [e.text] : []));
const items = (message: TeamsMessage) => card(message).body.filter((e) => e.type === 'Container');
/** The text of one item, its runs joined. */
const itemText = (element: CardElement): string =>
  element.type === 'Container' ? element.items.map(itemText).join('\n') : element.type === 'RichTextBlock' ? element.inlines.map((r) => r.text).join('') : element.text;
/** The user numbers listed, in order. */
const listedUsers = (message: TeamsMessage) => items(message).flatMap((e) => [...itemText(e).matchAll(/User (\d{4})/g)].map((m) => m[1]!).slice(0, 1));
const moreLine = (message: TeamsMessage) => textBlocks(message).find((t) => t.startsWith('…and'));

function expectWithinLimits(message: TeamsMessage): void {
  expect(jsonBytes(message.payload)).toBeLessThanOrEqual(20_000);
  expect(TEAMS_LIMITS.requestBytes).toBe(20_000);
  expect(message.payload.summary.length).toBeGreaterThan(0);
  expect(message.payload.summary.length).toBeLessThanOrEqual(TEAMS_LIMITS.titleChars);
  for (const run of runs(message)) expect(run.text.isWellFormed()).toBe(true);
}

describe('the message: one Adaptive Card 1.4 in a Workflows message', () => {
  it('has exactly the envelope Workflows expects, with a summary for the preview', () => {
    const message = renderTeams(storm(2));
    const { payload } = message;
    expect(Object.keys(payload)).toEqual(['type', 'summary', 'attachments']);
    expect(payload.type).toBe('message');
    expect(payload.summary).toBe('riskwatch · production: 2 users raised (1 to high), 1 behavior disabled, 1 behavior added');
    expect(payload.attachments).toHaveLength(1);
    const [attachment] = payload.attachments;
    expect(Object.keys(attachment)).toEqual(['contentType', 'contentUrl', 'content']);
    expect(attachment.contentType).toBe('application/vnd.microsoft.card.adaptive');
    expect(attachment.contentUrl).toBeNull();
    expect(Object.keys(attachment.content)).toEqual(['$schema', 'type', 'version', 'body']);
    expect(attachment.content).toMatchObject({ $schema: 'http://adaptivecards.io/schemas/adaptive-card.json', type: 'AdaptiveCard', version: '1.4' });
    expect(message.cuts).toEqual([]);
  });

  it('starts with a header naming the account and what happened, then when it was detected', () => {
    const [header, detected] = card(renderTeams(storm(2))).body;
    expect(header).toEqual({
      type: 'RichTextBlock',
      inlines: [{ type: 'TextRun', text: 'riskwatch · production: 2 users raised (1 to high), 1 behavior disabled, 1 behavior added', weight: 'Bolder', size: 'Medium' }],
    });
    expect(detected).toEqual({ type: 'TextBlock', text: 'Cloudflare Zero Trust risk scoring · detected 2026-11-22T18:00:05.123Z', wrap: true, isSubtle: true, size: 'Small' });
  });

  it('falls back to the account id when the account has no name', () => {
    const events = storm(1).map((e) => ({ ...e, data: { ...e.data, account: { id: ACCOUNT.id, name: null } } }) as RiskEvent);
    expect(renderTeams(events).payload.summary).toContain(ACCOUNT.id);
  });

  it('every TextBlock wraps (Teams mobile truncates otherwise); only card elements that carry no action', () => {
    const message = renderTeams([...storm(5), ...hostileEvents()]);
    for (const element of elements(message)) {
      expect(['RichTextBlock', 'TextBlock', 'Container']).toContain(element.type);
      if (element.type === 'TextBlock') expect(element.wrap).toBe(true);
    }
    const json = JSON.stringify(message.payload);
    expect(json).not.toMatch(/selectAction|"actions"|Action\.|msteams|"entities"/);
  });
});

describe('golden cards, one per event type', () => {
  it.each(Object.entries(ONE_OF_EACH))('%s', (type, event) => {
    const message = renderTeams([event]);
    expectWithinLimits(message);
    expectGolden(new URL(`golden/teams/${type}.json`, import.meta.url), `${JSON.stringify(message.payload, null, 2)}\n`);
  });

  it('the test card', () => {
    expectGolden(new URL('golden/teams/test.json', import.meta.url), `${JSON.stringify(renderTeamsTest('secops-teams').payload, null, 2)}\n`);
  });

  it('a 500-user storm', () => {
    expectGolden(new URL('golden/teams/storm-500.json', import.meta.url), `${JSON.stringify(renderTeams(storm(500)).payload, null, 2)}\n`);
  });

  it('a 10,000-character name', () => {
    expectGolden(new URL('golden/teams/long-name.json', import.meta.url), `${JSON.stringify(renderTeams([userEvent(1, 'high', { name: LONG })]).payload, null, 2)}\n`);
  });
});

describe('items: each user and behavior change reads sensibly', () => {
  const only = (event: RiskEvent) => {
    const message = renderTeams([event]);
    expect(items(message)).toHaveLength(1);
    return itemText(items(message)[0]!);
  };

  it('raised: name, email, verb, previous → current, facts, risk events', () => {
    const text = only(ONE_OF_EACH['user.risk_level_raised']);
    expect(text).toContain('🔴 User 0001 · u0001@example.com');
    expect(text).toContain('raised low → high · 3 risk events · last 2026-11-22T17:59:00Z');
    expect(text).toContain('• Impossible travel (high) at 2026-11-22T17:58:00Z');
    expect(text).toContain('• Sign-in from a new country (medium) at 2026-11-22T17:40:00Z');
  });

  it('lowered out of the summary says so', () => {
    expect(only(ONE_OF_EACH['user.risk_level_lowered'])).toContain('lowered high → none (left the summary)');
  });

  it('a user with no name is shown by email, in bold', () => {
    const message = renderTeams([userEvent(1, 'high', { name: '' })]);
    expect(runs(message)).toContainEqual({ type: 'TextRun', text: 'u0001@example.com', weight: 'Bolder' });
  });

  it('the current level is bold and coloured by level', () => {
    const level = (event: RiskEvent) => runs(renderTeams([event])).find((r) => r.text.includes('→'));
    expect(level(userEvent(1, 'high', { previous: 'low' }))).toEqual({ type: 'TextRun', text: 'low → high', weight: 'Bolder', color: 'Attention' });
    expect(level(userEvent(1, 'medium'))?.color).toBe('Warning');
  });

  it('at most 3 risk events under a user, then how many more', () => {
    const riskEvents: RiskEventDetail[] = Array.from({ length: 7 }, (_, i) => ({ id: `re${i}`, name: `Signal ${i}`, risk_level: 'high', timestamp: '2026-11-22T17:58:00Z' }));
    const text = only(userEvent(1, 'high', { riskEvents }));
    expect(text.match(/Signal \d/g)).toEqual(['Signal 0', 'Signal 1', 'Signal 2']);
    expect(text).toContain('• and 4 more risk events');
  });

  it.each([
    ['behavior.disabled', '⛔ Impossible travel (imp_travel) disabled (risk level high)'],
    ['behavior.enabled', '✅ Impossible travel (imp_travel) enabled (risk level high)'],
    ['behavior.risk_level_changed', '🔄 Impossible travel (imp_travel) risk level low → high'],
    ['behavior.added', '🆕 Impossible travel (imp_travel) added (enabled, risk level high)'],
    ['behavior.removed', '🗑️ Impossible travel (imp_travel) removed (was enabled, risk level high)'],
  ] as const)('%s', (type, line) => {
    expect(only(ONE_OF_EACH[type])).toBe(line);
  });
});

describe('order and "…and N more": the request stays within 20,000 bytes', () => {
  it.each([1, 10])('%i users: all listed in the order given, then the behaviors, nothing more', (count) => {
    const message = renderTeams(storm(count));
    expectWithinLimits(message);
    expect(listedUsers(message)).toEqual(Array.from({ length: count }, (_, i) => String(i + 1).padStart(4, '0')));
    expect(itemText(items(message).at(-2)!)).toContain('imp_travel');
    expect(itemText(items(message).at(-1)!)).toContain('new_geo');
    expect(moreLine(message)).toBeUndefined();
    expect(message.cuts).toEqual([]);
  });

  it.each([300, 500, 5000])('%i users: one card, the first ones in order, then "…and N more" with the right N and a summary of the rest', (count) => {
    const events = storm(count);
    const message = renderTeams(events);
    expectWithinLimits(message);
    const shown = listedUsers(message);
    expect(shown.length).toBeGreaterThanOrEqual(15);
    expect(shown).toEqual(Array.from({ length: shown.length }, (_, i) => String(i + 1).padStart(4, '0')));
    expect(items(message)).toHaveLength(shown.length);
    const more = moreLine(message)!;
    const n = Number(/^…and (\d+) more \(/.exec(more)?.[1]);
    expect(n).toBe(events.length - shown.length);
    expect(more).toContain('1 behavior disabled, 1 behavior added');
    expect(card(message).body.at(-1)).toEqual({ type: 'TextBlock', text: more, wrap: true, isSubtle: true, size: 'Small' });
    // The summary counts everything, not only what is listed.
    expect(message.payload.summary).toContain(`${count} users raised`);
    expect(message.cuts).toEqual([`${n} events of ${events.length} left out as "…and ${n} more" to fit 20000 bytes`]);
  });

  it('fills the budget: one more item would not have fitted', () => {
    const message = renderTeams(storm(300));
    const nextItem = items(renderTeams(storm(300).slice(listedUsers(message).length, listedUsers(message).length + 1)))[0]!;
    expect(jsonBytes(message.payload) + jsonBytes(nextItem)).toBeGreaterThan(20_000 - 100);
  });
});

describe('API text cannot become a link, a mention or formatting', () => {
  /** Every string in the payload that Teams parses as Markdown: the TextBlocks and the preview. */
  const parsed = (message: TeamsMessage) => [...textBlocks(message), message.payload.summary];

  it('hostile names, emails, last events, behaviors and risk events land only in TextRuns', () => {
    const message = renderTeams(hostileEvents());
    expectWithinLimits(message);
    const texts = runs(message).map((r) => r.text);
    for (const hostile of HOSTILE) {
      expect(
        texts.some((t) => t.includes(hostile)),
        hostile,
      ).toBe(true);
      for (const text of parsed(message)) expect(text, `${hostile} in a parsed text`).not.toContain(hostile);
    }
    // The TextBlocks hold riskwatch's words only: counts, levels, times.
    for (const text of parsed(message)) expect(text).not.toMatch(/evil|<at>|\*\*|\[|script|&|_under_/);
  });

  it('a TextRun carries no link or action; the card no mention entities', () => {
    const message = renderTeams(hostileEvents());
    for (const run of runs(message)) expect(Object.keys(run).every((k) => ['type', 'text', 'weight', 'size', 'color', 'isSubtle'].includes(k))).toBe(true);
    expect(JSON.stringify(message.payload)).not.toContain('"msteams"');
  });

  it('a line break or control character in a name cannot start a line of its own', () => {
    const message = renderTeams([userEvent(1, 'high', { name: 'Eve\n\n**Urgent**: reset at https://evil.example\u2028x\u0000' })]);
    const name = runs(message).find((r) => r.text.startsWith('Eve'))!;
    expect(name.text).toBe('Eve **Urgent**: reset at https://evil.example x ');
  });

  it('the test card keeps a hostile sink name in a TextRun too', () => {
    const message = renderTeamsTest('[x](https://evil.example)');
    expect(textBlocks(message)).toEqual([]);
    expect(runs(message)[0]!.text).toBe('✅ riskwatch test notification for sink [x](https://evil.example): this sink works');
  });
});

describe('a 10,000-character name is clipped to its item', () => {
  it('to 300 characters ending in "…", recorded as a cut, and the card stays small', () => {
    const message = renderTeams([userEvent(1, 'high', { name: LONG, email: `${LONG}@example.com` })]);
    expectWithinLimits(message);
    expect(jsonBytes(message.payload)).toBeLessThan(5000);
    const name = runs(message).find((r) => r.weight === 'Bolder' && r.text.startsWith('<at>'))!;
    expect(name.text).toHaveLength(300);
    expect(name.text.endsWith('…')).toBe(true);
    expect(message.cuts).toEqual(['user name cut from 10000 to 300 characters', 'user email cut from 10012 to 300 characters']);
  });

  it('a storm of them still lists some, within the budget', () => {
    const events = Array.from({ length: 100 }, (_, i) => userEvent(i + 1, 'high', { name: `${'😀'.repeat(5000)}`, email: `${LONG}@example.com` }));
    const message = renderTeams(events);
    expectWithinLimits(message);
    expect(items(message).length).toBeGreaterThanOrEqual(5);
    expect(moreLine(message)).toMatch(/^…and \d+ more/);
  });

  it.each([0, 1])('clipping a run of emoji never leaves half of one (offset %i)', (offset) => {
    const message = renderTeams([userEvent(1, 'high', { name: `${'x'.repeat(offset)}${'🚨'.repeat(400)}` })]);
    const name = runs(message).find((r) => r.text.includes('🚨'))!;
    expect(name.text.isWellFormed()).toBe(true);
    expect(name.text.endsWith('🚨…')).toBe(true);
  });
});
