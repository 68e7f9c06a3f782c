import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { RiskLevel } from '../../src/model.ts';
import { FakeRiskApi } from '../../src/simulator/fake-api.ts';
import { ACCOUNT, user } from '../support/cloudflare.ts';
import { webhookSinkYaml, writeDaemonConfig } from '../support/daemon-config.ts';
import { FakePagerDuty } from '../support/fakes/pagerduty.ts';
import { killIfRunning, type RiskwatchProcess, spawnRiskwatch } from '../support/process.ts';
import { Receiver } from '../support/receiver.ts';
import { until } from '../support/until.ts';

/**
 * Issue 26's "done when" for flapping, against the real process: with
 * notify.flapping {changes: 4, window: 15s}, poll_interval 1s and
 * notify.lowered, a user toggled between low and high eight times costs the
 * webhook at most three plain changes, one user.flapping and one
 * user.settled naming the level they settled at; PagerDuty's incident ends
 * open for the user who settled high and resolved for the one who settled
 * low; `events --user` lists every change; a steady user is announced once.
 */

const ROUTING_KEY = 'R0UT1NGKEYflappinge2eAAAAAAAAAAA';
let api: FakeRiskApi;
let hook: Receiver;
let pagerduty: FakePagerDuty;
let dir: string;
let running: RiskwatchProcess | undefined;

beforeAll(async () => {
  [api, hook, pagerduty] = await Promise.all([FakeRiskApi.start(), Receiver.start(), FakePagerDuty.start()]);
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'rw-flapping-'));
});
afterEach(async () => {
  await killIfRunning(running);
  running = undefined;
});
afterAll(async () => {
  await Promise.all([api.close(), hook.close(), pagerduty.close()]);
  fs.rmSync(dir, { recursive: true, force: true });
});

const env = { CF_TOKEN: 'cf-flapping-token', PD_KEY: ROUTING_KEY };

/** A summary read that began after now: a poll has seen what was just set. */
async function polled(): Promise<void> {
  const since = Date.now();
  await until('a poll', () => api.requests.some((r) => r.call === 'summary' && r.receivedAt > since));
}

describe('a flapping user is one story', () => {
  it('toggled eight times: three plain changes, one user.flapping, one user.settled; the incident ends as the user settled', { timeout: 120_000 }, async () => {
    const file = writeDaemonConfig(path.join(dir, 'riskwatch.yaml'), {
      apiBaseUrl: api.baseUrl,
      pollInterval: '1s',
      state: './flapping.db',
      sinks: `${webhookSinkYaml('hook', hook.url('/riskwatch'))}  - name: oncall
    type: pagerduty
    min_level: high
    routing_key: \${PD_KEY}
    url: ${pagerduty.url}
`,
      // Issue 26 says 6s; 15s here, so that eight toggles on a loaded machine still fall within one window.
      extra: 'notify:\n  lowered: true\n  flapping:\n    changes: 4\n    window: 15s\n',
    });
    // Users 1 (starts high, ends high), 2 (starts low, ends low) and 3 (steady: rises once) in the baseline.
    const account = api.account(ACCOUNT);
    account.users.clear();
    account.users.set(user(1).user_id, user(1, 'high'));
    account.users.set(user(2).user_id, user(2, 'low'));
    running = spawnRiskwatch(['run', '--config', file], env, [ROUTING_KEY]);
    await running.waitForLine(/"msg":"first poll of the account committed"/);

    account.users.set(user(3).user_id, user(3, 'high'));
    const other = (level: RiskLevel): RiskLevel => (level === 'high' ? 'low' : 'high');
    let one: RiskLevel = 'high';
    let two: RiskLevel = 'low';
    for (let toggle = 0; toggle < 8; toggle++) {
      one = other(one);
      two = other(two);
      account.users.set(user(1).user_id, user(1, one));
      account.users.set(user(2).user_id, user(2, two));
      await polled();
    }
    expect([one, two]).toEqual(['high', 'low']);

    const said = (n: number) =>
      hook.requests.map((r) => JSON.parse(r.body) as { type: string; data: { user?: { email: string }; level?: string | null } }).filter((b) => b.data.user?.email === `user${n}@example.com`);
    await until('both settled', () => said(1).some((b) => b.type === 'user.settled') && said(2).some((b) => b.type === 'user.settled'), 60_000);
    for (const [n, level] of [
      [1, 'high'],
      [2, 'low'],
    ] as const) {
      const types = said(n).map((b) => b.type);
      expect(types.filter((t) => t === 'user.risk_level_raised' || t === 'user.risk_level_lowered').length, types.join(' ')).toBeLessThanOrEqual(3);
      expect(
        types.filter((t) => t === 'user.flapping'),
        types.join(' '),
      ).toHaveLength(1);
      expect(
        types.filter((t) => t === 'user.settled'),
        types.join(' '),
      ).toHaveLength(1);
      expect(types.at(-1)).toBe('user.settled');
      expect(said(n).at(-1)!.data.level).toBe(level);
    }
    // The steady user: once.
    expect(said(3).map((b) => b.type)).toEqual(['user.risk_level_raised']);

    // PagerDuty (min_level high): open for the user who settled high, resolved for the one who settled low; the steady one open.
    const key = (n: number) => `riskwatch/${ACCOUNT}/user/${user(n).user_id}`;
    await until('the incidents as settled', () => pagerduty.isOpen(key(1)) && !pagerduty.isOpen(key(2)));
    expect(
      pagerduty
        .openIncidents()
        .map((i) => i.dedupKey)
        .sort(),
    ).toEqual([key(1), key(3)].sort());

    // Every change is still in the history, the muted ones marked.
    const events = spawnRiskwatch(['events', '--user', 'user1@example.com', '--json', '--config', file], env);
    expect(await events.exited).toBe(0);
    const history = JSON.parse(events.stdout.join('\n')) as { type: string; flapping: boolean }[];
    const changes = history.filter((e) => e.type === 'user.risk_level_raised' || e.type === 'user.risk_level_lowered' || e.type === 'user.flapping');
    expect(changes).toHaveLength(8);
    expect(history.filter((e) => e.flapping).length).toBeGreaterThanOrEqual(4);
    expect(history.filter((e) => e.type === 'user.settled')).toHaveLength(1);

    running.child.kill('SIGTERM');
    expect(await running.exited).toBe(0);
  });

  it('survives processes: once from cron, a process per poll, still sees the fourth change as flapping and mutes the fifth', { timeout: 60_000 }, async () => {
    const file = writeDaemonConfig(path.join(dir, 'cron.yaml'), {
      apiBaseUrl: api.baseUrl,
      pollInterval: '1s',
      state: './cron.db',
      sinks: webhookSinkYaml('hook', hook.url('/cron')),
      extra: 'notify:\n  lowered: true\n  flapping:\n    changes: 4\n    window: 10m\n',
    });
    const account = api.account(ACCOUNT);
    account.users.clear();
    account.users.set(user(7).user_id, user(7, 'low'));
    const once = async () => {
      const proc = spawnRiskwatch(['once', '--config', file], env);
      expect(await proc.exited, proc.stdout.join('\n')).toBe(0);
    };
    await once();
    const before = hook.requests.length;
    for (const level of ['high', 'low', 'high', 'low', 'high'] as const) {
      account.users.set(user(7).user_id, user(7, level));
      await once();
    }
    const types = hook.requests.slice(before).map((r) => (JSON.parse(r.body) as { type: string }).type);
    expect(types).toEqual(['user.risk_level_raised', 'user.risk_level_lowered', 'user.risk_level_raised', 'user.flapping']);
  });
});
