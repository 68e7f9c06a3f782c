import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { FakeRiskApi } from '../../src/simulator/fake-api.ts';
import { ACCOUNT, user } from '../support/cloudflare.ts';
import { writeDaemonConfig } from '../support/daemon-config.ts';
import { killIfRunning, type RiskwatchProcess, spawnRiskwatch } from '../support/process.ts';
import { Receiver } from '../support/receiver.ts';
import { until } from '../support/until.ts';

/**
 * Issue 26's "done when" for digests, against the real process: a digest
 * arrives at the webhook once a slot, as the event type `digest` naming who is
 * at or above the sink's min_level under the id of its sink and slot, and a
 * slot once only across a kill -9 and a restart.
 */

let api: FakeRiskApi;
let hook: Receiver;
let dir: string;
let running: RiskwatchProcess | undefined;

beforeAll(async () => {
  [api, hook] = await Promise.all([FakeRiskApi.start(), Receiver.start()]);
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'rw-digest-'));
});
afterEach(async () => {
  await killIfRunning(running);
  running = undefined;
});
afterAll(async () => {
  await Promise.all([api.close(), hook.close()]);
  fs.rmSync(dir, { recursive: true, force: true });
});

const env = { CF_TOKEN: 'cf-digest-token' };

describe('a digest', () => {
  it('arrives once a slot, and a slot once only across a kill -9 and a restart', { timeout: 90_000 }, async () => {
    // A slot every 5 seconds (croner takes a seconds field first): the first look at start is a
    // baseline, then each slot is one digest, whatever the machine's speed.
    const file = writeDaemonConfig(path.join(dir, 'riskwatch.yaml'), {
      apiBaseUrl: api.baseUrl,
      pollInterval: '1s',
      state: './digest.db',
      sinks: `  - name: daily
    type: webhook
    url: ${hook.url('/digest')}
    min_level: high
    digest: "*/5 * * * * *"
`,
    });
    const account = api.account(ACCOUNT);
    account.users.clear();
    account.users.set(user(1).user_id, user(1, 'high'));
    account.users.set(user(2).user_id, user(2, 'low'));
    running = spawnRiskwatch(['run', '--config', file], env);
    await running.waitForLine(/"msg":"digest scheduled: the first goes at the next slot"/);

    type Digest = { timestamp: string; data: { sink: string; accounts: { users: { email: string }[]; users_total: number }[] } };
    const digests = () => hook.requests.filter((r) => r.path === '/digest').map((r) => ({ id: String(r.headers['webhook-id']), body: JSON.parse(r.body) as Digest }));
    await until('the first digest', () => digests().length >= 1);
    const [first] = digests();
    expect(first!.id).toBe(`digest/daily/${first!.body.timestamp}`);
    expect(Date.parse(first!.body.timestamp) % 5000).toBe(0);
    expect(first!.body.data.accounts.map((a) => [a.users.map((u) => u.email), a.users_total])).toEqual([[['user1@example.com'], 1]]);

    // Killed once the store has it as delivered (killed before, a retry under the same id would be right too).
    await until('the first digest recorded as delivered', () => delivered().includes(first!.id));
    running.child.kill('SIGKILL');
    await running.exited;
    running = spawnRiskwatch(['run', '--config', file], env);
    await running.waitForLine(/"msg":"riskwatch started"/);
    await until('two more digests', () => digests().length >= 3, 40_000);
    running.child.kill('SIGTERM');
    expect(await running.exited).toBe(0);

    // Each slot once: no id twice, slots only ever later.
    const ids = digests().map((d) => d.id);
    expect(new Set(ids).size).toBe(ids.length);
    const slots = digests().map((d) => Date.parse(d.body.timestamp));
    for (let i = 1; i < slots.length; i++) expect(slots[i]!).toBeGreaterThan(slots[i - 1]!);
  });
});

/** The ids of the digest events whose delivery the state file has as delivered. */
function delivered(): string[] {
  const db = new DatabaseSync(path.join(dir, 'digest.db'), { readOnly: true, timeout: 5000 });
  try {
    return (db.prepare("SELECT j.value AS id FROM deliveries d, json_each(d.event_ids) j WHERE d.state = 'delivered'").all() as { id: string }[]).map((r) => r.id);
  } finally {
    db.close();
  }
}
