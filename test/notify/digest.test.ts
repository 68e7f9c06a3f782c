import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { parseSchedule } from '../../src/config/schedule.ts';
import { DigestScheduler, type DigestEvent, digestText } from '../../src/notify/digest.ts';
import { renderEmailDigest } from '../../src/notify/sinks/email-render.ts';
import { renderSlackDigest, SLACK_LIMITS } from '../../src/notify/sinks/slack-render.ts';
import { renderTeamsDigest, TEAMS_LIMITS } from '../../src/notify/sinks/teams-render.ts';
import { SqliteStore } from '../../src/store/sqlite.ts';
import { FakeClock } from '../support/fake-clock.ts';
import { captureLogs } from '../support/logs.ts';
import { ACCOUNT, delta, makeStateDir, OTHER_ACCOUNT, pollCommit, riskUser, type StateDir, userEvent } from '../support/store-fixtures.ts';

/**
 * Digests (SPEC §9): the scheduler against a real SQLite store (a slot is
 * queued once, a first look is a baseline, slots missed while down are one),
 * and each renderer within its receiver's limits, saying how many it left out.
 */

const HOUR = 3_600_000;
const T = Date.UTC(2026, 11, 4, 8, 30); // a Friday, 08:30 UTC

let dir: StateDir;
let store: SqliteStore;
beforeEach(() => {
  dir = makeStateDir();
  store = SqliteStore.open(dir.path('state.db'));
});
afterEach(async () => {
  await store.close();
  dir.remove();
});

const sink = (name: string, cron: string, fields: Record<string, unknown> = {}) =>
  ({ type: 'console', name, minLevel: 'high', events: undefined, accounts: undefined, digest: parseSchedule(cron, 'UTC'), ...fields }) as const;
const accounts = [
  { id: ACCOUNT.id, name: ACCOUNT.name, label: ACCOUNT.name, credential: { scheme: 'token', id: 'cred-x', token: undefined as never } },
  { id: OTHER_ACCOUNT.id, name: OTHER_ACCOUNT.name, label: OTHER_ACCOUNT.name, credential: { scheme: 'token', id: 'cred-x', token: undefined as never } },
] as const;

function scheduler(sinks: ReturnType<typeof sink>[], clock = new FakeClock(T)) {
  return new DigestScheduler({ store, sinks, accounts, clock, log: captureLogs().log });
}

describe('DigestScheduler', () => {
  it('a first look records the latest slot and sends nothing; the next slot is queued once, however often asked', async () => {
    const s = scheduler([sink('daily', '0 9 * * *')]);
    expect(await s.due(T)).toBe(0);
    expect(await store.lastDigest('daily')).toBe(Date.UTC(2026, 11, 3, 9));
    expect(await s.due(T + HOUR)).toBe(1);
    expect(await s.due(T + HOUR)).toBe(0);
    expect(await s.due(T + 2 * HOUR)).toBe(0);
    const [delivery, ...more] = await store.claimDue('daily', T + HOUR, 10);
    expect(more).toEqual([]);
    expect(delivery!.digest).toMatchObject({ id: 'digest/daily/2026-12-04T09:00:00.000Z', type: 'digest', timestamp: '2026-12-04T09:00:00.000Z' });
  });

  it('slots missed while down are one digest, the latest, changes counted since the last one sent', async () => {
    const s = scheduler([sink('hourly', '0 * * * *')]);
    await s.due(T);
    const up = userEvent('evt-up', riskUser(1, 'high'), 'low', 'high', T + 10);
    await store.commitPoll(pollCommit({ polledAt: T + 10, delta: delta({ upsertUsers: [riskUser(1, 'high'), riskUser(2, 'low')] }), events: [up] }));
    expect(await s.due(T + 5 * HOUR)).toBe(1);
    const [delivery] = await store.claimDue('hourly', T + 5 * HOUR, 10);
    expect(delivery!.digest!.timestamp).toBe('2026-12-04T13:00:00.000Z');
    expect(delivery!.digest!.data).toMatchObject({
      sink: 'hourly',
      min_level: 'high',
      since: '2026-12-04T08:00:00.000Z',
      accounts: [
        {
          account: { id: ACCOUNT.id, name: ACCOUNT.name },
          users: [{ user_id: riskUser(1).user_id, email: 'user1@example.com', level: 'high', since: new Date(T + 10).toISOString() }],
          users_total: 1,
          changes: 1,
        },
        { account: { id: OTHER_ACCOUNT.id }, users: [], users_total: 0, changes: 0 },
      ],
    });
  });

  it('only the accounts the sink takes; a sink without a digest is left alone', async () => {
    const s = scheduler([sink('prod', '0 * * * *', { accounts: new Set([ACCOUNT.id]) }), { ...sink('none', '0 * * * *'), digest: undefined } as unknown as ReturnType<typeof sink>]);
    await s.due(T);
    await s.due(T + HOUR);
    const [delivery] = await store.claimDue('prod', T + HOUR, 10);
    expect(delivery!.digest!.data.accounts.map((a) => a.account.id)).toEqual([ACCOUNT.id]);
    expect(await store.lastDigest('none')).toBeUndefined();
  });
});

/** A digest of `accounts` accounts of `users` high users each (listed up to 100, the rest counted). */
function bigDigest(accountCount: number, users: number): DigestEvent {
  return {
    id: 'digest/daily/2026-12-04T09:00:00.000Z',
    type: 'digest',
    timestamp: '2026-12-04T09:00:00.000Z',
    data: {
      sink: 'daily',
      min_level: 'high',
      since: '2026-12-03T09:00:00.000Z',
      accounts: Array.from({ length: accountCount }, (_, a) => ({
        account: { id: `acc${a}`, name: `account ${a} <script>` },
        users: Array.from({ length: Math.min(users, 100) }, (_, u) => ({
          user_id: `u${u}`,
          email: `user${u}@example.com`,
          name: `User ${u} [x](https://evil.example) <!channel>`,
          level: 'high' as const,
          since: '2026-12-01T10:00:00.000Z',
        })),
        users_total: users,
        changes: 7,
      })),
    },
  };
}

describe('renderers keep a digest within their receiver’s limits and say how many more', () => {
  it('the words: a title, each account with its count and changes, each user, and how many more were not listed', () => {
    const { title, rows, users } = digestText(bigDigest(2, 150));
    expect(title).toBe('riskwatch digest for daily: 300 users at high or above in 2 accounts');
    expect(users).toBe(300);
    expect(rows[0]).toEqual({ kind: 'account', text: 'account 0 <script>: 150 users at high or above · 7 changes since 2026-12-03T09:00:00.000Z' });
    expect(rows[1]).toEqual({ kind: 'user', level: 'high', text: 'User 0 [x](https://evil.example) <!channel> <user0@example.com> · high since 2026-12-01T10:00:00.000Z' });
    expect(rows[101]).toEqual({ kind: 'more', text: '…and 50 more in account 0 <script>' });
  });

  it('Slack: at most 50 blocks, every section within 3,000 characters, API text escaped, "…and N more users" past them', () => {
    const message = renderSlackDigest(bigDigest(30, 150), '<!here>');
    expect(message.blocks.length).toBeLessThanOrEqual(SLACK_LIMITS.blocks);
    for (const block of message.blocks) if (block.type === 'section') expect(block.text.text.length).toBeLessThanOrEqual(SLACK_LIMITS.sectionText);
    const json = JSON.stringify(message.blocks.slice(2));
    expect(json).not.toContain('<!channel>');
    expect(json).not.toContain('<script>');
    expect(message.blocks.at(-1)).toMatchObject({ type: 'context', elements: [{ text: expect.stringMatching(/^…and \d+ more users \(riskwatch users lists them all\)$/) }] });
    const small = renderSlackDigest(bigDigest(1, 3), undefined);
    expect(small.blocks.map((b) => b.type)).toEqual(['header', 'section']);
  });

  it('Teams: within 20,000 bytes, "…and N more users" past what fits', () => {
    const { payload, cuts } = renderTeamsDigest(bigDigest(10, 150));
    expect(Buffer.byteLength(JSON.stringify(payload))).toBeLessThanOrEqual(TEAMS_LIMITS.requestBytes);
    expect(JSON.stringify(payload)).toMatch(/…and \d+ more users \(riskwatch users lists them all\)/);
    expect(cuts.some((cut) => /users? left out/.test(cut))).toBe(true);
  });

  it('email: the title as the subject, every line escaped in the HTML, the same Message-ID for the same slot', () => {
    const options = { sink: 'daily', subjectPrefix: '[riskwatch]', from: 'riskwatch@example.com' };
    const mail = renderEmailDigest(bigDigest(1, 3), options);
    expect(mail.subject).toBe('[riskwatch] riskwatch digest for daily: 3 users at high or above in 1 account');
    expect(mail.html).not.toContain('<script>');
    expect(mail.text).toContain('[HIGH] User 2 [x](https://evil.example) <!channel> <user2@example.com> · high since 2026-12-01T10:00:00.000Z');
    expect(renderEmailDigest(bigDigest(1, 3), options).messageId).toBe(mail.messageId);
  });
});
