import { DatabaseSync } from 'node:sqlite';
import { expect } from 'vitest';
import { main } from '../../src/main.ts';
import { SqliteStore } from '../../src/store/sqlite.ts';
import { ACCOUNT_ID, type ConfigDoc, configYaml, ENV, makeTempDir, OTHER_ACCOUNT_ID, type TempDir } from '../support/config-files.ts';
import { ACCOUNT, behavior, behaviorEvent, delta, OTHER_ACCOUNT, planned, pollCommit, riskUser, userEvent } from '../support/store-fixtures.ts';

/** The operator commands' tests: a config with two accounts, a real SQLite state file beside it, main() in-process. */

export { ACCOUNT_ID, OTHER_ACCOUNT_ID };

export interface Cli {
  readonly tmp: TempDir;
  readonly config: string;
  readonly stateFile: string;
  /** Runs `riskwatch <argv> --config <config>` in-process; lines as printed. */
  run(argv: readonly string[]): Promise<{ code: number; out: string[]; err: string[] }>;
  /** run() and JSON.parse of what it printed (exit 0 expected). */
  json(argv: readonly string[]): Promise<unknown>;
}

/** A config and its state file, made empty as a daemon's first start leaves it (the commands but `silence add` refuse a missing one). */
export function makeCli(edit?: (doc: ConfigDoc) => void): Cli {
  const tmp = makeTempDir();
  const stateFile = `${tmp.dir}/state.db`;
  new DatabaseSync(stateFile).close();
  const config = tmp.write(
    'riskwatch.yaml',
    configYaml((doc) => {
      doc.accounts.push({ id: OTHER_ACCOUNT_ID, name: 'staging' });
      doc.state = { sqlite: stateFile };
      edit?.(doc);
    }),
  );
  const run = async (argv: readonly string[]) => {
    const out: string[] = [];
    const err: string[] = [];
    const code = await main([...argv, '--config', config], { out: (l) => out.push(...l.split('\n')), err: (l) => err.push(...l.split('\n')), env: ENV });
    return { code, out, err };
  };
  return {
    tmp,
    config,
    stateFile,
    run,
    async json(argv) {
      const result = await run([...argv, '--json']);
      expect(result.err).toEqual([]);
      expect(result.code).toBe(0);
      return JSON.parse(result.out.join('\n'));
    },
  };
}

export const LONG_ERROR = `HTTP 404 from https://hooks.example.com/in/****: ${'no such hook, '.repeat(12)}giving up`;

/**
 * The state a few polls leave: production with users 1 (high), 2 (medium), 3 (low),
 * events e1 (user 1 raised), e2 (user 2 raised), e3 (behavior b1 disabled), polled at `at`;
 * staging with user 4 (high, event e4) and a failed poll after it. Deliveries: secops [e1, e2]
 * pending; incidents [e1] and [e3] dead-lettered with LONG_ERROR; incidents [e2] pending.
 */
export async function seed(file: string, at: number) {
  const [u1, u2, u3, u4] = [riskUser(1, 'high'), riskUser(2, 'medium'), riskUser(3, 'low'), riskUser(4, 'high')];
  const e1 = userEvent('evt-1', u1, null, 'high', at);
  const e2 = userEvent('evt-2', u2, null, 'medium', at);
  const e3 = behaviorEvent('evt-3', behavior('b1', { enabled: false }), 'behavior.disabled', { enabled: true, risk_level: 'medium' }, at);
  const e4base = userEvent('evt-4', u4, null, 'high', at);
  const e4 = { ...e4base, data: { ...e4base.data, account: { ...OTHER_ACCOUNT } } };
  const store = SqliteStore.open(file);
  try {
    await store.commitPoll(
      pollCommit({
        polledAt: at,
        delta: delta({ upsertUsers: [u1, u2, u3], upsertBehaviors: [behavior('b1', { enabled: false })] }),
        events: [e1, e2, e3],
        deliveries: [planned('secops', [e1, e2]), planned('incidents', [e1]), planned('incidents', [e3]), planned('incidents', [e2])],
      }),
    );
    await store.commitPoll(pollCommit({ accountId: OTHER_ACCOUNT.id, polledAt: at, delta: delta({ upsertUsers: [u4] }), events: [e4], deliveries: [] }));
    await store.recordPollFailure(OTHER_ACCOUNT.id, 'HTTP 403: the token lacks Zero Trust Read', at + 60_000);
    const claimed = await store.claimDue('incidents', at + 1, 10);
    for (const d of claimed.filter((d) => d.events[0]!.id !== 'evt-2')) await store.recordOutcomes([{ deliveryId: d.id, outcome: { kind: 'dead', at: at + 2, error: LONG_ERROR } }]);
    for (const d of claimed.filter((d) => d.events[0]!.id === 'evt-2'))
      await store.recordOutcomes([{ deliveryId: d.id, outcome: { kind: 'retry', at: at + 2, nextAttemptAt: at + 600_000, error: 'HTTP 503' } }]);
    return { users: { u1, u2, u3, u4 }, events: { e1, e2, e3, e4 } };
  } finally {
    await store.close();
  }
}

export { ACCOUNT };

/** RFC 3339 to the second, as the commands print times. */
export const iso = (ms: number) => new Date(ms).toISOString().replace(/\.\d{3}Z$/, 'Z');

/** The table's rows split into cells at the header's column starts; checks every row lines up with the header. */
export function columns(lines: readonly string[]): Record<string, string>[] {
  const header = lines[0]!;
  const names = header.split(/ {2,}/);
  const starts = names.map((name) => header.indexOf(name));
  return lines.slice(1).map((line) => {
    const row: Record<string, string> = {};
    names.forEach((name, i) => {
      // Each cell starts at its column: the character before it is a space (or it is the first).
      if (starts[i]! > 0 && line.length > starts[i]!) expect(line[starts[i]! - 1], `${name} in ${JSON.stringify(line)}`).toBe(' ');
      row[name] = line.slice(starts[i], i + 1 < names.length ? starts[i + 1] : undefined).trim();
    });
    return row;
  });
}
