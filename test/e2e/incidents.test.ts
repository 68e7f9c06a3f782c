import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { FakeRiskApi } from '../../src/simulator/fake-api.ts';
import { ACCOUNT, user } from '../support/cloudflare.ts';
import { writeDaemonConfig } from '../support/daemon-config.ts';
import { FakeOpsgenie } from '../support/fakes/opsgenie.ts';
import { FakePagerDuty } from '../support/fakes/pagerduty.ts';
import { freshDatabase } from '../support/postgres.ts';
import { until } from '../support/until.ts';
import { killIfRunning, type RiskwatchProcess, spawnRiskwatch } from '../support/process.ts';

/**
 * Issue 29, "no incident left open", against the real process on both stores:
 * an incident a sink opened is closed when a reload raises the sink's
 * min_level above the user's level, moved (closed with the old key, opened with
 * the new one) when its routing key changes, and closed when the sink is
 * removed; `riskwatch incidents --json` lists exactly what is open throughout.
 */

const KEY_A = 'R0UT1NGKEYincidentsAAAAAAAAAAAAA';
const KEY_B = 'R0UT1NGKEYincidentsBBBBBBBBBBBBB';
const GENIE_KEY = 'genie-incidents-key-3c1f';

let api: FakeRiskApi;
let pagerduty: FakePagerDuty;
let opsgenie: FakeOpsgenie;
let dir: string;
let running: RiskwatchProcess | undefined;

beforeAll(async () => {
  api = await FakeRiskApi.start();
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'rw-incidents-'));
});
// Receivers of their own for each store's run: what one left open is not the other's.
beforeEach(async () => {
  [pagerduty, opsgenie] = await Promise.all([FakePagerDuty.start(), FakeOpsgenie.start({ apiKey: GENIE_KEY })]);
});
afterEach(async () => {
  await killIfRunning(running);
  running = undefined;
  await Promise.all([pagerduty.close(), opsgenie.close()]);
});
afterAll(async () => {
  await api.close();
  fs.rmSync(dir, { recursive: true, force: true });
});

const env = { CF_TOKEN: 'cf-incidents-token', PD_KEY_A: KEY_A, PD_KEY_B: KEY_B, GENIE_KEY };
const secrets = [KEY_A, KEY_B, GENIE_KEY];

interface Listed {
  sink: string;
  key: string;
  credential: string;
  configured: boolean;
  trigger: string;
}

describe.each(['sqlite', 'postgres'] as const)('incidents follow the config across reloads (%s)', (store) => {
  it('closed when min_level is raised above the user, moved when the routing key changes, closed when the sink goes', { timeout: 120_000 }, async () => {
    const file = path.join(dir, `${store}.yaml`);
    const postgres = store === 'postgres' ? await freshDatabase() : undefined;
    const write = (sinks: { pd: { minLevel: string; key: string }; genie?: { minLevel: string } }) =>
      writeDaemonConfig(file, {
        apiBaseUrl: api.baseUrl,
        pollInterval: '1s',
        ...(postgres ? { postgres } : { state: `./${store}.db` }),
        sinks: `  - name: oncall
    type: pagerduty
    min_level: ${sinks.pd.minLevel}
    routing_key: \${${sinks.pd.key}}
    url: ${pagerduty.url}
${
  sinks.genie
    ? `  - name: genie
    type: opsgenie
    min_level: ${sinks.genie.minLevel}
    api_key: \${GENIE_KEY}
    url: ${opsgenie.url}
`
    : ''
}`,
      });
    const listed = async (): Promise<Listed[]> => {
      const proc = spawnRiskwatch(['incidents', '--json', '--config', file], env, secrets);
      expect(await proc.exited, proc.stderr.join('\n')).toBe(0);
      return (JSON.parse(proc.stdout.join('\n')) as Listed[]).sort((a, b) => `${a.sink} ${a.key}`.localeCompare(`${b.sink} ${b.key}`));
    };
    const key = (n: number) => `riskwatch/${ACCOUNT}/user/${user(n).user_id}`;
    const pdOpen = (routingKey: string) =>
      pagerduty
        .openIncidents(routingKey)
        .map((i) => i.dedupKey)
        .sort();
    const genieOpen = () =>
      opsgenie
        .openAlerts()
        .map((a) => a.alias)
        .sort();
    const reloads = () => running!.stdout.filter((line) => line.includes('"msg":"config reloaded"')).length;
    const reload = async (sinks: Parameters<typeof write>[0]) => {
      const before = reloads();
      write(sinks);
      running!.child.kill('SIGHUP');
      await until('the reload', () => reloads() > before);
    };

    // Users 1 to 3 of a fresh account; the first poll is the baseline.
    const account = api.account(ACCOUNT);
    account.users.clear();
    for (const n of [1, 2, 3]) account.users.set(user(n).user_id, user(n, 'low'));
    write({ pd: { minLevel: 'medium', key: 'PD_KEY_A' }, genie: { minLevel: 'medium' } });
    running = spawnRiskwatch(['run', '--config', file], env, secrets);
    await running.waitForLine(/"msg":"first poll of the account committed"/);
    expect(await listed()).toEqual([]);

    // Users 1 and 3 rise to high, user 2 to medium: three incidents on each sink.
    for (const [n, level] of [
      [1, 'high'],
      [2, 'medium'],
      [3, 'high'],
    ] as const)
      account.users.set(user(n).user_id, user(n, level));
    await until('three incidents on each', () => pdOpen(KEY_A).length === 3 && genieOpen().length === 3);
    const opened = await listed();
    expect(opened.map((i) => [i.sink, i.key, i.configured, i.trigger])).toEqual([
      ['genie', key(1), true, 'delivered'],
      ['genie', key(2), true, 'delivered'],
      ['genie', key(3), true, 'delivered'],
      ['oncall', key(1), true, 'delivered'],
      ['oncall', key(2), true, 'delivered'],
      ['oncall', key(3), true, 'delivered'],
    ]);
    const credentialA = opened.find((i) => i.sink === 'oncall')!.credential;

    // min_level high on both: user 2 (medium) is no longer covered, and is closed on both, with the key it was opened with.
    await reload({ pd: { minLevel: 'high', key: 'PD_KEY_A' }, genie: { minLevel: 'high' } });
    await until("user 2's incidents closed", () => !pdOpen(KEY_A).includes(key(2)) && !genieOpen().includes(key(2)));
    expect(pdOpen(KEY_A)).toEqual([key(1), key(3)].sort());
    expect(genieOpen()).toEqual([key(1), key(3)].sort());
    expect(opsgenie.alerts.find((a) => a.alias === key(2))!.closeNote).toMatch(/^Closed by riskwatch: the user is at medium now, below sink genie's min_level high$/);
    expect((await listed()).map((i) => [i.sink, i.key])).toEqual([
      ['genie', key(1)],
      ['genie', key(3)],
      ['oncall', key(1)],
      ['oncall', key(3)],
    ]);

    // A new routing key: users 1 and 3 are resolved under the old key and triggered under the new one.
    await reload({ pd: { minLevel: 'high', key: 'PD_KEY_B' }, genie: { minLevel: 'high' } });
    await until('the incidents moved to the new key', () => pdOpen(KEY_A).length === 0 && pdOpen(KEY_B).length === 2);
    expect(pdOpen(KEY_B)).toEqual([key(1), key(3)].sort());
    const moved = (await listed()).filter((i) => i.sink === 'oncall');
    expect(moved.map((i) => [i.key, i.configured])).toEqual([
      [key(1), true],
      [key(3), true],
    ]);
    expect(moved[0]!.credential).not.toBe(credentialA);
    expect(running.stdout.filter((l) => l.includes("closing an incident the config no longer covers: sink oncall's routing key changed"))).toHaveLength(2);

    // The Opsgenie sink removed: its alerts are closed with its key, kept by riskwatch until they are.
    await reload({ pd: { minLevel: 'high', key: 'PD_KEY_B' } });
    await until("genie's alerts closed", () => genieOpen().length === 0);
    expect((await listed()).map((i) => [i.sink, i.key])).toEqual([
      ['oncall', key(1)],
      ['oncall', key(3)],
    ]);

    // An ordinary drop still resolves what is open, under the key it is open with.
    account.users.set(user(1).user_id, user(1, 'low'));
    await until("user 1's incident resolved", () => pdOpen(KEY_B).length === 1);
    expect((await listed()).map((i) => [i.sink, i.key])).toEqual([['oncall', key(3)]]);
    // Nothing was ever open under a key riskwatch did not mean: every incident that was opened is accounted for.
    expect(pagerduty.openIncidents()).toHaveLength(1);
    expect(opsgenie.openAlerts()).toHaveLength(0);

    running.child.kill('SIGTERM');
    expect(await running.exited).toBe(0);
  });
});
