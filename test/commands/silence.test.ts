import fs from 'node:fs';
import { DatabaseSync } from 'node:sqlite';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ACCOUNT_ID, type Cli, columns, iso, makeCli } from './cli.ts';

let cli: Cli;
beforeEach(() => {
  cli = makeCli();
});
afterEach(() => cli.tmp.remove());

interface Listed {
  id: string;
  user: string | null;
  behavior: string | null;
  account: string | null;
  starts_at: string;
  ends_at: string;
  reason: string;
  by: string;
  active: boolean;
}

const add = async (argv: string[]) => {
  const { code, out, err } = await cli.run(['silence', 'add', ...argv]);
  expect(err).toEqual([]);
  expect(code).toBe(0);
  expect(out).toHaveLength(1);
  expect(out[0]).toMatch(/^sil_[0-9a-f]{8}$/);
  return out[0]!;
};

describe('silence add and list', () => {
  it('a user by email (stored lowercased), in every account, for a duration, by whoever runs it', async () => {
    const before = Date.now();
    const id = await add(['--user', 'Mallory@Example.COM', '--for', '90m', '--reason', 'under investigation']);
    const [listed, ...more] = (await cli.json(['silence', 'list'])) as Listed[];
    expect(more).toEqual([]);
    expect(listed).toMatchObject({ id, user: 'mallory@example.com', behavior: null, account: null, reason: 'under investigation', active: true });
    expect(listed!.by).toMatch(/^.+@.+$/);
    const starts = Date.parse(listed!.starts_at);
    expect(starts).toBeGreaterThanOrEqual(before - 1000);
    expect(Date.parse(listed!.ends_at) - starts).toBeGreaterThanOrEqual(90 * 60_000 - 1000);
    expect(Date.parse(listed!.ends_at) - starts).toBeLessThanOrEqual(90 * 60_000 + 1000);
  });

  it('a behavior in one account (stored as its id, given by name), until a time, by a name given', async () => {
    const until = iso(Date.now() + 86_400_000);
    const id = await add(['--behavior', 'b1', '--account', 'production', '--until', until, '--reason', 'reworking the rule', '--by', 'alice']);
    expect(await cli.json(['silence', 'list'])).toEqual([
      { id, user: null, behavior: 'b1', account: ACCOUNT_ID, starts_at: expect.any(String), ends_at: until, reason: 'reworking the rule', by: 'alice', active: true },
    ]);
  });

  it('a user id is stored lower-case, as the client stores ids (an upper-case one would never match)', async () => {
    await add(['--user', '182BD5E5-6E1A-4FE4-A799-AA6D9A6AB26E', '--for', '1h', '--reason', 'x']);
    expect(((await cli.json(['silence', 'list'])) as Listed[])[0]!.user).toBe('182bd5e5-6e1a-4fe4-a799-aa6d9a6ab26e');
  });

  it("made before the daemon first starts, by root: the new state file is its directory owner's (the daemon's user), not root's", async () => {
    fs.rmSync(cli.stateFile);
    // As root (CI, a newcomer's container) the directory is given to another user, as /var/lib/riskwatch is;
    // as anyone else it is their own. Either way the files must end up its owner's.
    if (process.getuid?.() === 0) fs.chownSync(cli.tmp.dir, 65534, 65534);
    const dir = fs.statSync(cli.tmp.dir);
    await add(['--user', 'a@b.c', '--for', '1h', '--reason', 'before the first start']);
    for (const name of fs.readdirSync(cli.tmp.dir).filter((n) => n.startsWith('state.db'))) {
      expect([name, fs.statSync(`${cli.tmp.dir}/${name}`).uid, fs.statSync(`${cli.tmp.dir}/${name}`).gid]).toEqual([name, dir.uid, dir.gid]);
    }
    expect(fs.existsSync(cli.stateFile)).toBe(true);
  });

  it('lasts up to ten years', async () => {
    await add(['--user', 'a@b.c', '--for', '3650d', '--reason', 'x']);
    await add(['--user', 'a@b.c', '--until', iso(Date.now() + 3649 * 86_400_000), '--reason', 'x']);
    expect(await cli.json(['silence', 'list'])).toHaveLength(2);
  });

  it('a stored silence whose times are not times: list warns in one line and goes on, expire ends it', async () => {
    const id = await add(['--user', 'a@b.c', '--for', '1h', '--reason', 'x']);
    const db = new DatabaseSync(cli.stateFile);
    db.prepare('UPDATE silences SET ends_at = ? WHERE id = ?').run(86_400_000_000_000_000n, id);
    const other = await add(['--user', 'b@b.c', '--for', '1h', '--reason', 'y']);
    const listed = await cli.run(['silence', 'list', '--all']);
    expect(listed.code).toBe(0);
    expect(listed.err).toEqual([`riskwatch: silence ${id}: its stored ends_at (86400000000000000) is not a time, so it mutes nothing; end it with riskwatch silence expire ${id}`]);
    expect(columns(listed.out).map((row) => row.ID)).toEqual([other]);
    expect((await cli.run(['silence', 'expire', id])).code).toBe(0);
    db.close();
  });

  it('as a table: id, what it matches, where, until when, by whom, why', async () => {
    const until = iso(Date.now() + 3_600_000);
    const first = await add(['--user', 'eve@example.com', '--until', until, '--reason', 'travel', '--by', 'bob']);
    const second = await add(['--behavior', 'b2', '--account', 'staging', '--until', until, '--reason', 'noisy', '--by', 'carol']);
    const { out } = await cli.run(['silence', 'list']);
    expect(out[0]).toMatch(/^ID +MATCHES +ACCOUNT +ENDS +BY +REASON$/);
    expect(columns(out).sort((a, b) => a.BY!.localeCompare(b.BY!))).toEqual([
      { ID: first, MATCHES: 'user eve@example.com', ACCOUNT: 'all', ENDS: until, BY: 'bob', REASON: 'travel' },
      { ID: second, MATCHES: 'behavior b2', ACCOUNT: 'staging', ENDS: until, BY: 'carol', REASON: 'noisy' },
    ]);
  });

  it('none: says so', async () => {
    expect((await cli.run(['silence', 'list'])).out).toEqual(['no active silences']);
    expect((await cli.run(['silence', 'list', '--all'])).out).toEqual(['no silences']);
    expect(await cli.json(['silence', 'list'])).toEqual([]);
  });
});

describe('silence expire', () => {
  it('ends an active silence (0), then there is none of that id (1); list --all still shows it, ended', async () => {
    const id = await add(['--user', 'eve@example.com', '--for', '1h', '--reason', 'travel']);
    const first = await cli.run(['silence', 'expire', id]);
    expect(first.code).toBe(0);
    expect(first.err).toEqual([]);
    const second = await cli.run(['silence', 'expire', id]);
    expect(second.code).toBe(1);
    expect(second.err).toEqual([`riskwatch: no active silence ${id}`]);
    expect(await cli.json(['silence', 'list'])).toEqual([]);
    const [ended] = (await cli.json(['silence', 'list', '--all'])) as Listed[];
    expect(ended).toMatchObject({ id, active: false });
    expect(columns((await cli.run(['silence', 'list', '--all'])).out)[0]!.ENDS).toBe(`${ended!.ends_at} (ended)`);
  });

  it('an id never made: 1', async () => {
    const { code, err } = await cli.run(['silence', 'expire', 'sil_00000000']);
    expect(code).toBe(1);
    expect(err).toEqual(['riskwatch: no active silence sil_00000000']);
  });
});

describe('silence usage errors: exit 2 naming the flag, nothing stored', () => {
  const future = () => iso(Date.now() + 3_600_000);
  const cases: [string[], string][] = [
    [['add', '--for', '1h', '--reason', 'x'], '--user or --behavior'],
    [['add', '--user', 'a@b.c', '--behavior', 'b1', '--for', '1h', '--reason', 'x'], '--user or --behavior'],
    [['add', '--user', 'a@b.c', '--reason', 'x'], '--for D or --until T'],
    [['add', '--user', 'a@b.c', '--for', '1h', '--until', future(), '--reason', 'x'], '--for D or --until T'],
    [['add', '--user', 'a@b.c', '--until', '2020-01-01T00:00:00Z', '--reason', 'x'], '--until 2020-01-01T00:00:00Z'],
    [['add', '--user', 'a@b.c', '--until', 'tomorrow', '--reason', 'x'], '--until tomorrow'],
    [['add', '--user', 'a@b.c', '--for', 'forever', '--reason', 'x'], '--for forever'],
    [['add', '--user', 'a@b.c', '--for', '999999999d', '--reason', 'x'], '--for 999999999d: a silence lasts at most 3650d (ten years)'],
    [['add', '--user', 'a@b.c', '--for', '3651d', '--reason', 'x'], '--for 3651d: a silence lasts at most 3650d'],
    [['add', '--user', 'a@b.c', '--until', '9999-12-31T23:59:59Z', '--reason', 'x'], '--until 9999-12-31T23:59:59Z: a silence lasts at most 3650d'],
    [['add', '--user', 'a@b.c', '--until', '2030-02-30T10:00:00Z', '--reason', 'x'], '--until 2030-02-30T10:00:00Z: not an RFC 3339 time on the calendar'],
    [['add', '--user', 'a@b.c', '--until', '2031-04-31T10:00:00Z', '--reason', 'x'], '--until 2031-04-31T10:00:00Z'],
    [['add', '--user', 'a@b.c', '--until', '2030-01-01T24:00:00Z', '--reason', 'x'], '--until 2030-01-01T24:00:00Z'],
    [['add', '--user', 'a@b.c', '--for', '1h'], '--reason'],
    [['add', '--user', 'a@b.c', '--for', '1h', '--reason', '  '], '--reason'],
    [['add', '--user', '', '--for', '1h', '--reason', 'x'], '--user'],
    [['add', '--user', 'a@b.c', '--account', 'nope', '--for', '1h', '--reason', 'x'], '--account nope'],
    [['add', '--user', 'a@b.c', '--for', '1h', '--reason', 'x', '--json'], "'--json'"],
    [['add', '--user', 'a@b.c', '--for', '1h', '--reason', 'x', 'extra'], '"extra"'],
    [['list', '--user', 'a@b.c'], "'--user'"],
    [['expire'], 'silence id'],
    [['expire', 'sil_1', 'sil_2'], '"sil_2"'],
    [['expire', '--all', 'sil_1'], "'--all'"],
    [[], 'give one of add, list, expire'],
    [['mute'], 'give one of add, list, expire'],
  ];
  for (const [argv, named] of cases) {
    it(`silence ${argv.join(' ')}`, async () => {
      const { code, out, err } = await cli.run(['silence', ...argv]);
      expect(code).toBe(2);
      expect(out).toEqual([]);
      expect(err[0]).toMatch(/^riskwatch: /);
      expect(err[0]).toContain(named);
      expect(await cli.json(['silence', 'list', '--all'])).toEqual([]);
    });
  }
});
