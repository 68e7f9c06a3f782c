import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ACCOUNT_ID, type Cli, columns, iso, LONG_ERROR, makeCli, seed } from './cli.ts';

let cli: Cli;
const AT = Date.now() - 2 * 3_600_000;
beforeEach(async () => {
  cli = makeCli();
  await seed(cli.stateFile, AT);
});
afterEach(() => cli.tmp.remove());

interface Listed {
  id: number;
  sink: string;
  account: string;
  state: 'pending' | 'dead';
  event_ids: string[];
  types: string[];
  attempts: number;
  last_error: string | null;
  next_attempt_at: string;
  created_at: string;
}

const listed = async (argv: string[] = []) => (await cli.json(['deliveries', ...argv])) as Listed[];

describe('deliveries', () => {
  it('--json: the outbox, oldest first, each with its events, attempts and last error', async () => {
    const rows = await listed();
    expect(rows.map((d) => [d.sink, d.state, d.event_ids])).toEqual([
      ['secops', 'pending', ['evt-1', 'evt-2']],
      ['incidents', 'dead', ['evt-1']],
      ['incidents', 'dead', ['evt-3']],
      ['incidents', 'pending', ['evt-2']],
    ]);
    expect(rows[0]).toEqual({
      id: expect.any(Number),
      sink: 'secops',
      account: ACCOUNT_ID,
      state: 'pending',
      event_ids: ['evt-1', 'evt-2'],
      types: ['user.risk_level_raised', 'user.risk_level_raised'],
      attempts: 0,
      last_error: null,
      next_attempt_at: iso(AT),
      created_at: iso(AT),
      finished_at: null,
    });
    expect(rows[1]).toMatchObject({ types: ['user.risk_level_raised'], attempts: 1, last_error: LONG_ERROR });
    expect(rows[3]).toMatchObject({ attempts: 1, last_error: 'HTTP 503', next_attempt_at: iso(AT + 600_000) });
  });

  it('--sink and --state filter', async () => {
    expect((await listed(['--state', 'dead'])).map((d) => d.event_ids)).toEqual([['evt-1'], ['evt-3']]);
    expect((await listed(['--sink', 'secops', '--state', 'pending'])).map((d) => d.event_ids)).toEqual([['evt-1', 'evt-2']]);
    expect(await listed(['--sink', 'secops', '--state', 'dead'])).toEqual([]);
  });

  it('as a table: long errors shortened, the next attempt of pending ones only', async () => {
    const rows = await listed();
    const { out } = await cli.run(['deliveries']);
    expect(out[0]).toMatch(/^ID +SINK +ACCOUNT +STATE +EVENTS +ATTEMPTS +NEXT ATTEMPT +LAST ERROR$/);
    const table = columns(out);
    expect(table[0]).toEqual({ ID: String(rows[0]!.id), SINK: 'secops', ACCOUNT: 'production', STATE: 'pending', EVENTS: '2 events', ATTEMPTS: '0', 'NEXT ATTEMPT': iso(AT), 'LAST ERROR': '-' });
    expect(table[1]).toMatchObject({ STATE: 'dead', EVENTS: 'user.risk_level_raised', ATTEMPTS: '1', 'NEXT ATTEMPT': '-' });
    expect(table[1]!['LAST ERROR']).toMatch(/^HTTP 404 from .*…$/);
    expect(table[1]!['LAST ERROR']!.length).toBeLessThan(LONG_ERROR.length);
    expect(table[2]).toMatchObject({ STATE: 'dead', EVENTS: 'behavior.disabled' });
  });

  it('none: says so', async () => {
    expect((await cli.run(['deliveries', '--sink', 'nowhere'])).out).toEqual(['no pending or dead-lettered deliveries']);
  });
});

describe('deliveries retry', () => {
  it('--id: that dead letter pending again, due now, under its old id; a second time nothing matches (1)', async () => {
    const [dead] = await listed(['--state', 'dead']);
    const before = Date.now();
    const { code, out, err } = await cli.run(['deliveries', 'retry', '--id', String(dead!.id)]);
    expect(err).toEqual([]);
    expect(code).toBe(0);
    expect(out).toEqual(['1 delivery made pending again']);
    const retried = (await listed()).find((d) => d.id === dead!.id)!;
    expect(retried).toMatchObject({ state: 'pending', event_ids: ['evt-1'], attempts: 0 });
    expect(Date.parse(retried.next_attempt_at)).toBeGreaterThanOrEqual(before - 1000);
    expect(Date.parse(retried.next_attempt_at)).toBeLessThanOrEqual(Date.now());
    const again = await cli.run(['deliveries', 'retry', '--id', String(dead!.id)]);
    expect(again.code).toBe(1);
    expect(again.out).toEqual([]);
    expect(again.err).toEqual(['riskwatch: no dead-lettered delivery matched']);
  });

  it('--sink: every dead letter of the sink; --id repeated', async () => {
    const ids = (await listed(['--state', 'dead'])).map((d) => String(d.id));
    expect((await cli.run(['deliveries', 'retry', '--sink', 'secops'])).code).toBe(1);
    expect((await cli.run(['deliveries', 'retry', '--sink', 'incidents'])).out).toEqual(['2 deliveries made pending again']);
    expect(await listed(['--state', 'dead'])).toEqual([]);
    expect((await cli.run(['deliveries', 'retry', '--id', ids[0]!, '--id', ids[1]!])).code).toBe(1);
  });

  it('--id repeated: each of them', async () => {
    const ids = (await listed(['--state', 'dead'])).map((d) => String(d.id));
    expect((await cli.run(['deliveries', 'retry', '--id', ids[0]!, '--id', ids[1]!])).out).toEqual(['2 deliveries made pending again']);
  });

  it('a pending delivery is not retried', async () => {
    const [pending] = await listed(['--state', 'pending']);
    expect((await cli.run(['deliveries', 'retry', '--id', String(pending!.id)])).code).toBe(1);
  });
});

describe("deliveries retry --sink OLD --to NEW: a renamed sink's deliveries", () => {
  it('moves every pending and dead one, under its id and in its order, pending and due now; the old name then has none', async () => {
    cli.tmp.remove();
    cli = makeCli((doc) => {
      for (const sink of doc.sinks) if (sink.name === 'incidents') sink.name = 'hooks';
    });
    await seed(cli.stateFile, AT);
    const before = await listed(['--sink', 'incidents']);
    expect(before.map((d) => d.state)).toEqual(['dead', 'dead', 'pending']);
    const refused = await cli.run(['deliveries', 'retry', '--sink', 'incidents']);
    expect(refused.code).toBe(2);
    expect(refused.err[0]).toBe('riskwatch: --sink incidents: not a configured sink, so nothing would send its deliveries; move them with --to NEW (secops, hooks)');
    const moved = await cli.run(['deliveries', 'retry', '--sink', 'incidents', '--to', 'hooks']);
    expect(moved.err).toEqual([]);
    expect(moved.out).toEqual(['3 deliveries of incidents moved to hooks, due now']);
    expect(await listed(['--sink', 'incidents'])).toEqual([]);
    const after = await listed(['--sink', 'hooks']);
    expect(after.map((d) => [d.id, d.event_ids, d.state, d.attempts, d.created_at])).toEqual(before.map((d) => [d.id, d.event_ids, 'pending', 0, d.created_at]));
    for (const d of after) expect(Date.parse(d.next_attempt_at)).toBeLessThanOrEqual(Date.now());
    const again = await cli.run(['deliveries', 'retry', '--sink', 'incidents', '--to', 'hooks']);
    expect(again.code).toBe(1);
    expect(again.err).toEqual(['riskwatch: no pending or dead-lettered delivery is for sink incidents']);
  });
});

describe('deliveries usage errors: exit 2 naming the flag', () => {
  const cases: [string[], string][] = [
    [['--state', 'delivered'], '--state delivered'],
    [['--id', '3'], "'--id'"],
    [['--all'], "'--all'"],
    [['retry'], '--sink S or --id N'],
    [['retry', '--sink', 'incidents', '--id', '1'], '--sink S or --id N'],
    [['retry', '--id', 'abc'], '--id abc'],
    [['retry', '--state', 'dead'], "'--state'"],
    [['retry', '--id'], "'--id"],
    [['retry', '--sink', 'incidents', 'now'], '"now"'],
    [['retry', '--id', '1', '--to', 'secops'], '--to: moves a whole sink'],
    [['retry', '--sink', 'incidents', '--id', '1', '--to', 'secops'], '--to: moves a whole sink'],
    [['retry', '--id', '99999999999999999999999'], '--id 99999999999999999999999'],
    [['retry', '--sink', 'gone'], '--sink gone: not a configured sink'],
    [['retry', '--sink', 'incidents', '--to', 'nowhere'], '--to nowhere: not a configured sink (secops, incidents)'],
    [['retry', '--sink', 'incidents', '--to', 'incidents'], '--to incidents: is the sink they are already for'],
  ];
  for (const [argv, named] of cases) {
    it(`deliveries ${argv.join(' ')}`, async () => {
      const { code, out, err } = await cli.run(['deliveries', ...argv]);
      expect(code).toBe(2);
      expect(out).toEqual([]);
      expect(err[0]).toContain(named);
      expect((await listed(['--state', 'dead'])).length).toBe(2);
    });
  }
});
