import { describe, expect, it } from 'vitest';
import type { BehaviorEvent, RiskEvent } from '../../src/detect/events.ts';
import type { Behavior, RiskEventDetail } from '../../src/model.ts';
import { escapeSlack, renderSlack, renderSlackTest, SLACK_LIMITS, type SlackMessage } from '../../src/notify/sinks/slack-render.ts';
import { ACCOUNT as account, behaviorEvent, ONE_OF_EACH, storm, userEvent } from '../support/sink-fixtures.ts';
import { behavior as behaviorFixture } from '../support/snapshots.ts';

const MENTION = '<!here>';

function sections(message: SlackMessage): string[] {
  return message.blocks.flatMap((b) => (b.type === 'section' ? [b.text.text] : []));
}
function contexts(message: SlackMessage): string[] {
  return message.blocks.flatMap((b) => (b.type === 'context' ? b.elements.map((e) => e.text) : []));
}
function header(message: SlackMessage): string {
  const block = message.blocks[0];
  if (block?.type !== 'header') throw new Error(`first block is ${block?.type}, not a header`);
  return block.text.text;
}
/** Every mrkdwn string Slack will parse: the fallback, sections and context elements. */
function mrkdwnTexts(message: SlackMessage): string[] {
  return [message.text, ...sections(message), ...contexts(message)];
}
/** The user ids named in the item sections, in the order they appear. */
function listedUsers(message: SlackMessage): string[] {
  return sections(message).flatMap((text) => [...text.matchAll(/\*User (\d{4})\*/g)].map((m) => m[1]!));
}

function expectWithinLimits(message: SlackMessage): void {
  expect(message.blocks.length).toBeLessThanOrEqual(SLACK_LIMITS.blocks);
  expect(SLACK_LIMITS).toEqual({ blocks: 50, sectionText: 3000, headerText: 150 });
  expect(header(message).length).toBeGreaterThan(0);
  expect(header(message).length).toBeLessThanOrEqual(150);
  for (const text of sections(message)) expect(text.length).toBeLessThanOrEqual(3000);
  for (const text of contexts(message)) expect(text.length).toBeLessThanOrEqual(3000);
  expect(message.blocks.filter((b) => b.type === 'header')).toHaveLength(1);
  expect(typeof message.text).toBe('string');
  expect(message.text.trim()).not.toBe('');
}

/** No `<` or `>` outside the configured mention, and every `&` starts a whole entity. */
function expectEscaped(message: SlackMessage, mention?: string): void {
  const headers = message.blocks.flatMap((b) => (b.type === 'header' ? [b.text.text] : []));
  for (const raw of [...mrkdwnTexts(message), ...headers]) {
    const text = mention ? raw.split(mention).join('') : raw;
    expect(text, `unescaped < or > in ${JSON.stringify(text.slice(0, 200))}`).not.toMatch(/[<>]/);
  }
  for (const text of mrkdwnTexts(message)) {
    const broken = [...text.matchAll(/&(?!amp;|lt;|gt;)/g)].map((m) => JSON.stringify(text.slice(Math.max(0, m.index - 10), m.index + 10)));
    expect(broken, 'a & that does not start &amp; &lt; or &gt;').toEqual([]);
  }
}

describe('limits: 50 blocks, 3000 characters a section, 150 in the header', () => {
  it.each([1, 10, 500])('%i users and two behavior changes stay inside the limits', (count) => {
    for (const mention of [undefined, MENTION]) {
      const message = renderSlack(storm(count), mention);
      expectWithinLimits(message);
      expectEscaped(message, mention);
    }
  });

  it('a long account name is clipped in the header', () => {
    const events = storm(3).map((e) => ({ ...e, data: { ...e.data, account: { id: account.id, name: 'acme '.repeat(100) } } }) as RiskEvent);
    const message = renderSlack(events, undefined);
    expectWithinLimits(message);
    expect(header(message).startsWith('riskwatch · acme acme')).toBe(true);
  });

  it('falls back to the account id when the account has no name', () => {
    const events = storm(1).map((e) => ({ ...e, data: { ...e.data, account: { id: account.id, name: null } } }) as RiskEvent);
    const message = renderSlack(events, undefined);
    expect(header(message)).toContain(account.id);
    expect(message.text).toContain(account.id);
  });
});

describe('order: users highest level first, as diff handed them over', () => {
  it.each([1, 10])('%i users: every user is listed, in input order, then the behavior changes', (count) => {
    const events = storm(count);
    const message = renderSlack(events, undefined);
    const expected = Array.from({ length: count }, (_, i) => String(i + 1).padStart(4, '0'));
    expect(listedUsers(message)).toEqual(expected);
    // The first section is the highest user; the behavior changes come after every user.
    expect(sections(message)[0]).toContain('*User 0001*');
    expect(sections(message)[0]).toContain('*high*');
    expect(sections(message).at(-2)).toContain('imp_travel');
    expect(sections(message).at(-1)).toContain('new_geo');
    expect(contexts(message)).toEqual([]);
    expect(message.blocks).toHaveLength(1 + count + 2);
  });

  it('the first user section follows the mention when one is configured', () => {
    const message = renderSlack(storm(10), MENTION);
    expect(sections(message)[0]).toBe(MENTION);
    expect(sections(message)[1]).toContain('*User 0001*');
  });
});

describe('"…and N more" past the limit', () => {
  it.each([undefined, MENTION])('500 users (mention %s): the first ones in order, then a context block with the right N', (mention) => {
    const events = storm(500);
    const message = renderSlack(events, mention);
    expectWithinLimits(message);
    const shown = listedUsers(message);
    expect(shown.length).toBeGreaterThanOrEqual(10);
    expect(shown).toEqual(Array.from({ length: shown.length }, (_, i) => String(i + 1).padStart(4, '0')));
    const items = sections(message).filter((t) => t !== mention);
    expect(items).toHaveLength(shown.length); // the behaviors are at the tail: all of them among the rest
    const [more, ...others] = contexts(message);
    expect(others).toEqual([]);
    expect(message.blocks.at(-1)?.type).toBe('context');
    const n = Number(/^…and (\d+) more/.exec(more ?? '')?.[1]);
    expect(n).toBe(events.length - items.length);
    expect(more).toContain('behavior');
  });

  it('exactly as many events as fit leave no "more" block; one more leaves "…and 1 more"', () => {
    // Find how many items fit by rendering a storm, then check the boundary on both sides.
    const fit = sections(renderSlack(storm(500), MENTION)).length - 1;
    const users = (k: number) => Array.from({ length: k }, (_, i) => userEvent(i + 1, 'high'));
    const exact = renderSlack(users(fit), MENTION);
    expect(contexts(exact)).toEqual([]);
    expect(listedUsers(exact)).toHaveLength(fit);
    const over = renderSlack(users(fit + 1), MENTION);
    expectWithinLimits(over);
    expect(contexts(over)).toHaveLength(1);
    expect(contexts(over)[0]).toMatch(/^…and 1 more\b/);
  });

  it('the fallback text counts everything, not only what was listed', () => {
    const message = renderSlack(storm(500), undefined);
    expect(message.text).toContain('production');
    expect(message.text).toContain('500 users raised');
  });
});

const HOSTILE = ['<!channel>', '<!here>', '<@U123>', '<https://evil.example|click>', '&', '&amp;'];
const LONG = '<!channel>&<@U123>'.repeat(600).slice(0, 10_000);

function hostileEvents(): RiskEvent[] {
  const riskEvents: RiskEventDetail[] = HOSTILE.map((name, i) => ({ id: `re${i}`, name, risk_level: 'high', timestamp: '2026-11-22T17:58:00Z' }));
  const users = HOSTILE.map((name, i) => userEvent(i + 1, 'high', { name: `${name} x`, email: `${name}@example.com`, riskEvents }));
  const behaviors = HOSTILE.map((name, i) =>
    behaviorEvent('behavior.disabled', { id: `${name}${i}`, name, description: name, enabled: false, risk_level: 'high' }, { enabled: true, risk_level: 'high' }),
  );
  const long = [
    userEvent(90, 'high', { name: LONG, email: `${LONG}@example.com` }),
    userEvent(91, 'high', { name: LONG, riskEvents: [{ id: 're-long', name: LONG, risk_level: 'high', timestamp: LONG }] }),
    behaviorEvent('behavior.added', { id: LONG, name: LONG, description: LONG, enabled: true, risk_level: 'high' }, null),
  ];
  return [...users, ...long, ...behaviors];
}

describe('escaping: nothing from the API can mention, link or break an entity', () => {
  it('escapeSlack turns &, < and > into entities, & first', () => {
    expect(escapeSlack('<!channel> & <https://evil.example|click> &amp;')).toBe('&lt;!channel&gt; &amp; &lt;https://evil.example|click&gt; &amp;amp;');
    expect(escapeSlack('plain')).toBe('plain');
  });

  it.each([undefined, MENTION])('hostile names, emails, behaviors and risk events (mention %s)', (mention) => {
    const message = renderSlack(hostileEvents(), mention);
    expectWithinLimits(message);
    expectEscaped(message, mention);
    const all = mrkdwnTexts(message).join('\n');
    expect(all).toContain('&lt;!channel&gt;');
    expect(all).toContain('&lt;@U123&gt;');
    expect(all).toContain('&lt;https://evil.example|click&gt;');
    expect(all).toContain('&amp;amp;');
    expect(all).toContain('*&amp; x*'); // the name "& x"
  });

  it('a 10,000-character name is clipped to the section limit and marked as clipped', () => {
    const message = renderSlack([userEvent(1, 'high', { name: LONG })], undefined);
    const [text] = sections(message);
    expect(text!.length).toBeLessThanOrEqual(3000);
    expect(text!.length).toBeGreaterThan(2900);
    expect(text!.endsWith('…')).toBe(true);
    expectEscaped(message);
  });

  // Each escape is several characters; the cut must not land inside one, wherever it falls.
  it.each(['&', '<', '>'])('clipping a run of %s never leaves half an entity, whatever the offset', (char) => {
    for (let offset = 0; offset < 6; offset++) {
      const name = `${'x'.repeat(offset)}${char.repeat(3000)}`;
      const message = renderSlack([userEvent(1, 'high', { name })], undefined);
      const [text] = sections(message);
      expect(text!.length).toBeLessThanOrEqual(3000);
      expect(text!.endsWith('…')).toBe(true);
      expect(text, `offset ${offset}: ends ${JSON.stringify(text!.slice(-8))}`).not.toMatch(/&[a-z]*…$/);
      expectEscaped(message);
    }
  });

  it('the test message escapes the sink name', () => {
    const message = renderSlackTest('<!channel> & co');
    expect(message.text).toContain('&lt;!channel&gt; &amp; co');
    expectEscaped(message);
    expect(message.text.toLowerCase()).toContain('test');
  });
});

describe('mention: the configured one only, at the top', () => {
  it('with a mention: it starts the fallback and is the first section, and appears nowhere else', () => {
    const message = renderSlack(storm(10), MENTION);
    expect(message.text.startsWith(`${MENTION} `)).toBe(true);
    expect(message.blocks[1]).toStrictEqual({ type: 'section', text: { type: 'mrkdwn', text: MENTION } });
    const occurrences = [...mrkdwnTexts(message), header(message)].join('\n').split(MENTION).length - 1;
    expect(occurrences).toBe(2);
  });

  it('a user mention or channel mention works the same', () => {
    const message = renderSlack(storm(1), '<!subteam^S123> <@U999>');
    expect(message.text.startsWith('<!subteam^S123> <@U999> ')).toBe(true);
    expect(sections(message)[0]).toBe('<!subteam^S123> <@U999>');
  });

  it('without a mention: no mention anywhere, and the first section is the highest user', () => {
    const message = renderSlack(storm(10), undefined);
    const all = [...mrkdwnTexts(message), header(message)].join('\n');
    expect(all).not.toMatch(/[<>]/);
    expect(all).not.toContain('!here');
    expect(message.text.startsWith('riskwatch')).toBe(true);
    expect(sections(message)[0]).toContain('*User 0001*');
  });
});

describe('lines: each event type reads sensibly', () => {
  const line = (event: RiskEvent) => {
    const message = renderSlack([event], undefined);
    expectWithinLimits(message);
    expectEscaped(message);
    expect(sections(message)).toHaveLength(1);
    return sections(message)[0]!;
  };

  it('raised: name, email, previous → current, event count and last event', () => {
    const text = line(userEvent(1, 'high', { previous: 'low' }));
    expect(text).toContain('User 0001');
    expect(text).toContain('u0001@example.com');
    expect(text).toMatch(/low → \*high\*/);
    expect(text).toContain('3 risk events');
    expect(text).toContain('2026-11-22T17:59:00Z');
  });

  it('a user new to the summary comes from none', () => {
    expect(line(userEvent(1, 'medium'))).toMatch(/none → \*medium\*/);
  });

  it('lowered to a level', () => {
    expect(line(userEvent(1, 'low', { previous: 'high', type: 'user.risk_level_lowered' }))).toMatch(/high → \*low\*/);
  });

  it('lowered to none: says the user left the summary', () => {
    const text = line(userEvent(1, null, { previous: 'high', type: 'user.risk_level_lowered' }));
    expect(text).toMatch(/high → \*none/);
    expect(text).toMatch(/left/);
    expect(text).toContain('User 0001');
  });

  it('a user with no name is shown by email', () => {
    const text = line(userEvent(1, 'high', { name: '' }));
    expect(text).toContain('*u0001@example.com*');
  });

  it('enriched: lists the risk events, a bounded number of them', () => {
    const riskEvents: RiskEventDetail[] = Array.from({ length: 20 }, (_, i) => ({
      id: `re${i}`,
      name: `Signal ${String(i).padStart(2, '0')}`,
      risk_level: 'high',
      timestamp: '2026-11-22T17:58:00Z',
    }));
    const text = line(userEvent(1, 'high', { riskEvents }));
    expect(text).toContain('Signal 00');
    const listed = text.match(/Signal \d\d/g) ?? [];
    expect(listed.length).toBeGreaterThan(0);
    expect(listed.length).toBeLessThan(20);
  });

  const b = behaviorFixture('imp_travel', { name: 'Impossible travel', risk_level: 'high' });
  it.each<[BehaviorEvent['type'], Behavior, BehaviorEvent['data']['previous'], RegExp[]]>([
    ['behavior.added', b, null, [/added/]],
    ['behavior.removed', b, null, [/removed/]],
    ['behavior.enabled', b, { enabled: false, risk_level: 'high' }, [/enabled/]],
    ['behavior.disabled', { ...b, enabled: false }, { enabled: true, risk_level: 'high' }, [/disabled/]],
    ['behavior.risk_level_changed', b, { enabled: true, risk_level: 'low' }, [/risk level/, /low → \*high\*/]],
  ])('%s', (type, behavior, previous, patterns) => {
    const text = line(behaviorEvent(type, behavior, previous));
    expect(text).toContain('Impossible travel');
    expect(text).toContain('imp_travel');
    for (const pattern of patterns) expect(text).toMatch(pattern);
  });

  it('the header and fallback summarise the kinds of change', () => {
    const events = [
      userEvent(1, 'high', { previous: 'low' }),
      userEvent(2, null, { previous: 'high', type: 'user.risk_level_lowered' }),
      behaviorEvent('behavior.disabled', { ...b, enabled: false }, { enabled: true, risk_level: 'high' }),
    ];
    const message = renderSlack(events, undefined);
    for (const text of [header(message), message.text]) {
      expect(text).toContain('production');
      expect(text).toMatch(/1 user raised \(1 to high\)/);
      expect(text).toMatch(/1 user lowered/);
      expect(text).toMatch(/1 behavior disabled/);
    }
  });
});

/** Every mrkdwn text object of the blocks: section texts and fields, context elements. */
function mrkdwnObjects(message: SlackMessage): { type: string; text: string; verbatim?: boolean }[] {
  return message.blocks.flatMap((b) => {
    const block = b as { type: string; text?: { type: string; text: string }; fields?: { type: string; text: string }[]; elements?: { type: string; text: string }[] };
    return [...(block.type === 'section' && block.text ? [block.text] : []), ...(block.fields ?? []), ...(block.elements ?? [])].filter((t) => t.type === 'mrkdwn');
  });
}

describe('verbatim: Slack neither links nor parses API text, but still parses the mention', () => {
  const URL = 'https://evil.example/login';
  const urlEvents = (): RiskEvent[] => [
    userEvent(1, 'high', {
      name: URL,
      email: `${URL}@example.com`,
      riskEvents: [{ id: 're1', name: URL, risk_level: 'high', timestamp: '2026-11-22T17:58:00Z' }],
    }),
    behaviorEvent('behavior.disabled', { id: 'www.evil.example', name: URL, description: `see ${URL}`, enabled: false, risk_level: 'high' }, { enabled: true, risk_level: 'high' }),
  ];

  it.each([undefined, MENTION])('a bare URL in a user name and a behavior (mention %s) sits only in verbatim text objects', (mention) => {
    const message = renderSlack(urlEvents(), mention);
    const carrying = mrkdwnObjects(message).filter((t) => t.text.includes('evil.example'));
    expect(carrying.length).toBe(2); // the user's section and the behavior's section
    expect(carrying[0]!.text).toContain(`*${URL}*`);
    expect(carrying[1]!.text).toContain(`*${URL}*`);
    for (const text of carrying) expect(text.verbatim).toBe(true);
  });

  it('every mrkdwn object is verbatim except the mention, in a storm with "…and N more" too', () => {
    const message = renderSlack(storm(500), MENTION);
    const objects = mrkdwnObjects(message);
    expect(contexts(message)).toHaveLength(1);
    const [mention, ...rest] = objects;
    expect(mention).toStrictEqual({ type: 'mrkdwn', text: MENTION });
    expect(rest.length).toBe(message.blocks.length - 2); // all but the header and the mention
    for (const text of rest) expect(text.verbatim, text.text.slice(0, 60)).toBe(true);
  });

  it('the mention block carries no verbatim, so that Slack still notifies', () => {
    const message = renderSlack(urlEvents(), '<!subteam^S123> <@U999>');
    expect(message.blocks[1]).toStrictEqual({ type: 'section', text: { type: 'mrkdwn', text: '<!subteam^S123> <@U999>' } });
  });

  it('the test message is verbatim too', () => {
    const [text, ...others] = mrkdwnObjects(renderSlackTest('https://evil.example'));
    expect(others).toEqual([]);
    expect(text?.verbatim).toBe(true);
  });
});

describe('clipping never leaves half an emoji (a lone surrogate)', () => {
  // An emoji is two UTF-16 units: a prefix of either parity puts the cut inside one or between two.
  it.each([0, 1])('a header of emoji, offset %i', (offset) => {
    const events = storm(1).map((e) => ({ ...e, data: { ...e.data, account: { id: account.id, name: `${'x'.repeat(offset)}${'😀'.repeat(200)}` } } }) as RiskEvent);
    const title = header(renderSlack(events, undefined));
    expect(title.length).toBeLessThanOrEqual(SLACK_LIMITS.headerText);
    expect(title.endsWith('😀…')).toBe(true);
    expect(title.isWellFormed(), JSON.stringify(title.slice(-4))).toBe(true);
  });

  it.each([0, 1])('a section of emoji, offset %i', (offset) => {
    const message = renderSlack([userEvent(1, 'high', { name: `${'x'.repeat(offset)}${'🚨'.repeat(2000)}` })], undefined);
    const [text] = sections(message);
    expect(text!.length).toBeLessThanOrEqual(SLACK_LIMITS.sectionText);
    expect(text!.length).toBeGreaterThan(SLACK_LIMITS.sectionText - 3);
    expect(text!.endsWith('🚨…')).toBe(true);
    expect(text!.isWellFormed(), JSON.stringify(text!.slice(-4))).toBe(true);
  });
});

describe('a flapping user (SPEC §9): one short line each for user.flapping and user.settled', () => {
  it('says the levels between which they flap, how often, and the level they settled at', () => {
    const message = renderSlack([ONE_OF_EACH['user.flapping'], ONE_OF_EACH['user.settled']], undefined);
    expect(header(message)).toBe('riskwatch · production: 1 user flapping, 1 user settled');
    const [flapping, settled] = sections(message).filter((text) => /User 000[34]/.test(text));
    expect(flapping).toContain('is flapping *between none and high, 4 level changes in 30m, low now*');
    expect(settled).toContain('settled *at high, after flapping between low and high*');
    expectWithinLimits(message);
  });
});
