import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { SqliteStore } from '../../src/store/sqlite.ts';
import { OTHER_ACCOUNT } from '../support/store-fixtures.ts';
import { ACCOUNT_ID, type Cli, columns, iso, makeCli, OTHER_ACCOUNT_ID, seed } from './cli.ts';

let cli: Cli;
let seeded: Awaited<ReturnType<typeof seed>>;
const AT = Date.now() - 2 * 3_600_000;
beforeEach(async () => {
  cli = makeCli();
  seeded = await seed(cli.stateFile, AT);
});
afterEach(() => cli.tmp.remove());

const usageErrors = async (cases: readonly (readonly [string[], string])[]) => {
  for (const [argv, named] of cases) {
    const { code, out, err } = await cli.run(argv);
    expect(code, argv.join(' ')).toBe(2);
    expect(out).toEqual([]);
    expect(err[0], argv.join(' ')).toContain(named);
  }
};

describe('users', () => {
  it('as a table: highest level first, then by email, with the account by name and since when', async () => {
    const { code, out } = await cli.run(['users']);
    expect(code).toBe(0);
    expect(out[0]).toMatch(/^ACCOUNT +EMAIL +NAME +LEVEL +SINCE +FLAPPING$/);
    expect(columns(out)).toEqual([
      { ACCOUNT: 'production', EMAIL: 'user1@example.com', NAME: 'User 1', LEVEL: 'high', SINCE: iso(AT), FLAPPING: '-' },
      { ACCOUNT: 'staging', EMAIL: 'user4@example.com', NAME: 'User 4', LEVEL: 'high', SINCE: iso(AT), FLAPPING: '-' },
      { ACCOUNT: 'production', EMAIL: 'user2@example.com', NAME: 'User 2', LEVEL: 'medium', SINCE: iso(AT), FLAPPING: '-' },
      // No event brought user 3 to low: since is unknown.
      { ACCOUNT: 'production', EMAIL: 'user3@example.com', NAME: 'User 3', LEVEL: 'low', SINCE: '-', FLAPPING: '-' },
    ]);
  });

  it('--level high --json: the users at high, with since the time of the event that raised them', async () => {
    expect(await cli.json(['users', '--level', 'high'])).toEqual([
      { account: { id: ACCOUNT_ID, name: 'production' }, user_id: seeded.users.u1.user_id, email: 'user1@example.com', name: 'User 1', level: 'high', since: iso(AT), flapping: false },
      { account: { id: OTHER_ACCOUNT_ID, name: 'staging' }, user_id: seeded.users.u4.user_id, email: 'user4@example.com', name: 'User 4', level: 'high', since: iso(AT), flapping: false },
    ]);
  });

  it('--account by name or id', async () => {
    const byName = (await cli.json(['users', '--account', 'staging'])) as { email: string }[];
    expect(byName.map((u) => u.email)).toEqual(['user4@example.com']);
    expect(await cli.json(['users', '--account', OTHER_ACCOUNT_ID])).toEqual(byName);
  });

  it('no users: says so', async () => {
    const empty = makeCli();
    try {
      expect((await empty.run(['users'])).out).toEqual(['no users']);
      expect(await empty.json(['users'])).toEqual([]);
    } finally {
      empty.tmp.remove();
    }
  });

  it('usage errors: exit 2 naming the flag', async () => {
    await usageErrors([
      [['users', '--account', 'nope'], '--account nope'],
      [['users', '--level', 'extreme'], '--level extreme'],
      [['users', '--level'], "'--level"],
      [['users', '--type', 'behavior.disabled'], "'--type'"],
    ]);
  });
});

describe('events', () => {
  it('as a table: newest first, what happened in words, silenced by', async () => {
    const { code, out } = await cli.run(['events']);
    expect(code).toBe(0);
    expect(out[0]).toMatch(/^TIME +TYPE +WHAT +SILENCED +ID$/);
    const rows = columns(out);
    expect(rows.map((r) => r.ID).sort()).toEqual(['evt-1', 'evt-2', 'evt-3', 'evt-4']);
    expect(rows.every((r) => r.TIME === iso(AT) && r.SILENCED === '-' && r.WHAT!.length > 0)).toBe(true);
    expect(rows.find((r) => r.ID === 'evt-3')!.TYPE).toBe('behavior.disabled');
  });

  it('--json: the stored event (the webhook payload) plus id, silenced and flapping', async () => {
    expect(await cli.json(['events', '--type', 'behavior.disabled'])).toEqual([{ ...seeded.events.e3, silenced: null, flapping: false }]);
    const [first] = (await cli.json(['events', '--user', 'USER1@Example.com'])) as Record<string, unknown>[];
    expect(Object.keys(first!)).toEqual(['type', 'timestamp', 'data', 'id', 'silenced', 'flapping']);
    expect(first).toEqual({ ...seeded.events.e1, silenced: null, flapping: false });
    expect(await cli.json(['events', '--user', seeded.users.u1.user_id])).toEqual([first]);
  });

  it('--account, --since, --limit', async () => {
    const ids = async (argv: string[]) => ((await cli.json(['events', ...argv])) as { id: string }[]).map((e) => e.id).sort();
    expect(await ids(['--account', 'staging'])).toEqual(['evt-4']);
    expect(await ids(['--account', ACCOUNT_ID])).toEqual(['evt-1', 'evt-2', 'evt-3']);
    expect(await ids(['--since', '90m'])).toEqual([]);
    expect(await ids(['--since', '3h'])).toHaveLength(4);
    expect(await ids(['--limit', '2'])).toHaveLength(2);
    expect((await cli.run(['events', '--since', '1h'])).out).toEqual(['no events']);
  });

  it('a silenced event names its silence', async () => {
    const added = await cli.run(['silence', 'add', '--user', 'user5@example.com', '--for', '1h', '--reason', 'known']);
    const silence = added.out[0]!;
    const store = SqliteStore.open(cli.stateFile);
    const { e4 } = seeded.events;
    const user5 = { ...e4.data.user, user_id: 'u5', email: 'User5@example.com' };
    try {
      await store.commitPoll({
        accountId: OTHER_ACCOUNT.id,
        expectedVersion: 1,
        polledAt: Date.now(),
        delta: { upsertUsers: [], removeUserIds: [], upsertBehaviors: [], removeBehaviorIds: [] },
        events: [{ ...e4, id: 'evt-5', data: { ...e4.data, user: user5 } }],
        deliveries: [],
      });
    } finally {
      await store.close();
    }
    const [latest] = (await cli.json(['events', '--limit', '1'])) as { id: string; silenced: string | null }[];
    expect(latest).toMatchObject({ id: 'evt-5', silenced: silence });
    expect(columns((await cli.run(['events', '--user', 'u5'])).out)[0]!.SILENCED).toBe(silence);
  });

  it('usage errors: exit 2 naming the flag', async () => {
    await usageErrors([
      [['events', '--since', 'soon'], '--since soon'],
      [['events', '--since', '0m'], '--since 0m'],
      [['events', '--limit', '0'], '--limit 0'],
      [['events', '--limit', 'ten'], '--limit ten'],
      [['events', '--type', 'user.deleted'], '--type user.deleted'],
      [['events', '--account', 'nope'], '--account nope'],
      [['events', '--level', 'high'], "'--level'"],
    ]);
  });
});
