import { existsSync, rmSync } from 'node:fs';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { SqliteStore } from '../../src/store/sqlite.ts';
import { ACCOUNT_ID, type Cli, columns, iso, makeCli, OTHER_ACCOUNT_ID, seed } from './cli.ts';

let cli: Cli;
const AT = Date.now() - 2 * 3_600_000;
beforeEach(() => {
  cli = makeCli();
});
afterEach(() => cli.tmp.remove());

describe('status', () => {
  it('on a state file no poll wrote yet: every configured account and sink, all zero', async () => {
    expect(await cli.json(['status'])).toEqual({
      accounts: [
        { id: ACCOUNT_ID, name: 'production', last_success_at: null, last_error: null, last_error_at: null, users: { low: 0, medium: 0, high: 0 }, leader: null, flapping: 0 },
        { id: OTHER_ACCOUNT_ID, name: 'staging', last_success_at: null, last_error: null, last_error_at: null, users: { low: 0, medium: 0, high: 0 }, leader: null, flapping: 0 },
      ],
      sinks: [
        { name: 'secops', type: 'slack', configured: true, pending: 0, dead: 0, held_until: null },
        { name: 'incidents', type: 'webhook', configured: true, pending: 0, dead: 0, held_until: null },
      ],
      silences: 0,
    });
  });

  it('no state file there: exit 2 naming it, and none made; silence add may make it, before the daemon first starts', async () => {
    cli.tmp.remove();
    const fresh = makeCli();
    rmSync(fresh.stateFile);
    try {
      for (const argv of [['status'], ['users'], ['events'], ['deliveries'], ['silence', 'list']]) {
        const { code, out, err } = await fresh.run(argv);
        expect({ argv, code, out }).toEqual({ argv, code: 2, out: [] });
        expect(err).toEqual([`riskwatch: state file ${fresh.stateFile} does not exist: riskwatch run creates it (is this the daemon's config?)`]);
        expect(existsSync(fresh.stateFile)).toBe(false);
      }
      expect((await fresh.run(['silence', 'add', '--user', 'a@example.com', '--for', '1h', '--reason', 'before the first run'])).code).toBe(0);
      expect((await fresh.json(['status'])) as { silences: number }).toMatchObject({ silences: 1 });
    } finally {
      fresh.tmp.remove();
    }
  });

  it('--json: the accounts with their last poll and users, the sinks with their outbox, the active silences', async () => {
    await seed(cli.stateFile, AT);
    expect((await cli.run(['silence', 'add', '--user', 'user9@example.com', '--for', '1h', '--reason', 'test'])).code).toBe(0);
    expect(await cli.json(['status'])).toEqual({
      accounts: [
        { id: ACCOUNT_ID, name: 'production', last_success_at: iso(AT), last_error: null, last_error_at: null, users: { low: 1, medium: 1, high: 1 }, leader: null, flapping: 0 },
        {
          id: OTHER_ACCOUNT_ID,
          name: 'staging',
          last_success_at: iso(AT),
          last_error: 'HTTP 403: the token lacks Zero Trust Read',
          last_error_at: iso(AT + 60_000),
          users: { low: 0, medium: 0, high: 1 },
          leader: null,
          flapping: 0,
        },
      ],
      sinks: [
        { name: 'secops', type: 'slack', configured: true, pending: 1, dead: 0, held_until: null },
        { name: 'incidents', type: 'webhook', configured: true, pending: 1, dead: 2, held_until: null },
      ],
      silences: 1,
    });
  });

  it('as a table: aligned columns under a header, then the sinks, then the silences', async () => {
    await seed(cli.stateFile, AT);
    const { code, out, err } = await cli.run(['status']);
    expect(err).toEqual([]);
    expect(code).toBe(0);
    const blank = out.indexOf('');
    expect(out[0]).toMatch(/^ACCOUNT +LAST SUCCESS +HIGH +MEDIUM +LOW +FLAPPING +LEADER +LAST ERROR$/);
    expect(columns(out.slice(0, blank))).toEqual([
      { ACCOUNT: 'production', 'LAST SUCCESS': iso(AT), HIGH: '1', MEDIUM: '1', LOW: '1', FLAPPING: '0', LEADER: '-', 'LAST ERROR': '-' },
      { ACCOUNT: 'staging', 'LAST SUCCESS': iso(AT), HIGH: '1', MEDIUM: '0', LOW: '0', FLAPPING: '0', LEADER: '-', 'LAST ERROR': `${iso(AT + 60_000)}: HTTP 403: the token lacks Zero Trust Read` },
    ]);
    const sinks = out.slice(blank + 1, out.indexOf('', blank + 1));
    expect(sinks[0]).toMatch(/^SINK +TYPE +PENDING +DEAD +HELD UNTIL$/);
    expect(columns(sinks)).toEqual([
      { SINK: 'secops', TYPE: 'slack', PENDING: '1', DEAD: '0', 'HELD UNTIL': '-' },
      { SINK: 'incidents', TYPE: 'webhook', PENDING: '1', DEAD: '2', 'HELD UNTIL': '-' },
    ]);
    expect(out.at(-1)).toBe('active silences: 0');
  });

  it('a sink renamed or removed from the config whose deliveries are still stored: listed as not configured', async () => {
    cli.tmp.remove();
    cli = makeCli((doc) => {
      doc.sinks = doc.sinks.filter((sink) => sink.name !== 'incidents');
    });
    await seed(cli.stateFile, AT);
    expect(((await cli.json(['status'])) as { sinks: unknown[] }).sinks).toEqual([
      { name: 'secops', type: 'slack', configured: true, pending: 1, dead: 0, held_until: null },
      { name: 'incidents', type: null, configured: false, pending: 1, dead: 2, held_until: null },
    ]);
    const { out } = await cli.run(['status']);
    const blank = out.indexOf('');
    expect(columns(out.slice(blank + 1, out.indexOf('', blank + 1)))).toEqual([
      { SINK: 'secops', TYPE: 'slack', PENDING: '1', DEAD: '0', 'HELD UNTIL': '-' },
      { SINK: 'incidents', TYPE: 'not configured', PENDING: '1', DEAD: '2', 'HELD UNTIL': '-' },
    ]);
  });

  it('an account never polled shows as never', async () => {
    const { out } = await cli.run(['status']);
    expect(columns(out.slice(0, 3)).map((row) => row['LAST SUCCESS'])).toEqual(['never', 'never']);
  });

  it('works while the daemon holds the state file (its lock), and sees what it committed', async () => {
    await seed(cli.stateFile, AT);
    const daemon = SqliteStore.open(cli.stateFile);
    try {
      // The lock is real: a second daemon is refused.
      expect(() => SqliteStore.open(cli.stateFile)).toThrow();
      const status = (await cli.json(['status'])) as { accounts: { users: unknown }[]; sinks: { dead: number }[] };
      expect(status.accounts[0]!.users).toEqual({ low: 1, medium: 1, high: 1 });
      expect(status.sinks.map((s) => s.dead)).toEqual([0, 2]);
      // And writes beside it: a silence, then an expiry.
      const added = await cli.run(['silence', 'add', '--behavior', 'b1', '--for', '2h', '--reason', 'rework']);
      expect(added.code).toBe(0);
      expect((await daemon.listSilences({ all: false, now: Date.now() })).map((s) => s.id)).toEqual([added.out[0]]);
    } finally {
      await daemon.close();
    }
  });

  it('usage errors: exit 2 naming the flag or the argument', async () => {
    for (const [argv, named] of [
      [['status', '--bogus'], "'--bogus'"],
      [['status', '--account', 'production'], "'--account'"],
      [['status', 'now'], '"now"'],
    ] as const) {
      const { code, out, err } = await cli.run(argv);
      expect(code, argv.join(' ')).toBe(2);
      expect(out).toEqual([]);
      expect(err[0]).toContain(named);
      expect(err[0]).toMatch(/^riskwatch: status: /);
    }
  });
});
