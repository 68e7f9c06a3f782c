import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FakeRiskApi } from '../../src/simulator/fake-api.ts';
import { ACCOUNT, behavior, user } from '../support/cloudflare.ts';
import { freshDatabase } from '../support/postgres.ts';
import { spawnRiskwatch } from '../support/process.ts';
import { Receiver } from '../support/receiver.ts';

/**
 * Issue 16's "done when", end to end with a running daemon, on SQLite and on
 * PostgreSQL: the operator mutes a user and a behavior, sees who is high and
 * since when, finds a 410 dead letter and retries it (received under its old
 * webhook-id within seconds), expires a silence twice (0, then 1), and reads
 * a right status after the daemon exits; all without SQL, beside the daemon.
 */

const STORES = [
  { name: 'sqlite', state: async () => '  sqlite: ./state.db' },
  { name: 'postgres', state: async () => `  postgres: ${await freshDatabase()}` },
] as const;

let api: FakeRiskApi;
let hook: Receiver;
let dir: string;

beforeAll(async () => {
  [api, hook] = await Promise.all([FakeRiskApi.start(), Receiver.start()]);
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'rw-operate-'));
});

afterAll(async () => {
  await Promise.all([api.close(), hook.close()]);
  fs.rmSync(dir, { recursive: true, force: true });
});

const env = { CF_TOKEN: 'cf-operate-token' };

async function until<T>(what: string, check: () => Promise<T | undefined> | T | undefined, timeoutMs = 30_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value !== undefined && value !== false) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await delay(100);
  }
}

describe.each(STORES)('operating riskwatch without SQL, beside a running daemon ($name)', ({ name, state }) => {
  it('silences, users, a retried dead letter, silence expiry and status after exit', { timeout: 120_000 }, async () => {
    // Each store its own account, so that the fake API's state of one run does not leak into the other.
    const account = api.account(ACCOUNT);
    account.users.clear();
    account.behaviors.clear();
    const [alice, bob, carol] = [user(101), user(102), user(103)];
    account.users.set(alice.user_id, { ...alice, max_risk_level: 'low' });
    account.users.set(bob.user_id, { ...bob, max_risk_level: 'low' });
    account.behaviors.set('imp_travel', behavior('imp_travel', true, 'high'));
    hook.requests.length = 0;
    hook.accepted.length = 0;
    hook.answer = () => ({ status: 200, body: 'ok' });

    const config = path.join(dir, `${name}.yaml`);
    fs.writeFileSync(
      config,
      `cloudflare:
  api_base_url: ${api.baseUrl}
  api_token: \${CF_TOKEN}
accounts:
  - id: ${ACCOUNT}
    name: production
poll_interval: 1s
state:
${await state()}
sinks:
  - name: hook
    type: webhook
    url: ${hook.url('/riskwatch')}
http:
  listen: 127.0.0.1:0
log:
  level: warn
`,
    );
    const cli = async (...args: string[]) => {
      const proc = spawnRiskwatch([...args, '--config', config], env);
      const code = await proc.exited;
      return { code, stdout: proc.stdout, stderr: proc.stderr, json: () => JSON.parse(proc.stdout.join('\n')) as unknown };
    };

    const daemon = spawnRiskwatch(['run', '--config', config], env);
    try {
      // The baseline poll, seen through status.
      await until('the first poll in status', async () => {
        const status = await cli('status', '--json');
        // Until the daemon has made the state file, status says it does not exist (exit 2).
        if (status.code !== 0) return undefined;
        return (status.json() as { accounts: { last_success_at: string | null }[] }).accounts[0]?.last_success_at ? true : undefined;
      });

      const muteAlice = await cli('silence', 'add', '--user', alice.email.toUpperCase(), '--for', '1h', '--reason', 'under investigation');
      expect(muteAlice.code).toBe(0);
      const aliceSilence = muteAlice.stdout.join(' ').match(/sil_[0-9a-f]+/)![0];
      const muteTravel = await cli('silence', 'add', '--behavior', 'imp_travel', '--account', 'production', '--for', '2h', '--reason', 'being reworked', '--by', 'ana');
      expect(muteTravel.code).toBe(0);
      const travelSilence = muteTravel.stdout.join(' ').match(/sil_[0-9a-f]+/)![0];

      // Carol's alert will be refused with a 410 and dead-lettered.
      hook.answer = (request) => (request.body.includes(carol.email) ? { status: 410, body: 'gone' } : { status: 200, body: 'ok' });
      account.users.set(alice.user_id, { ...alice, max_risk_level: 'high' });
      account.users.set(bob.user_id, { ...bob, max_risk_level: 'high' });
      account.users.set(carol.user_id, { ...carol, max_risk_level: 'medium' });
      account.behaviors.set('imp_travel', behavior('imp_travel', false, 'high'));

      await until("bob's alert", () => hook.accepted.some((r) => r.body.includes(bob.email)) || undefined);
      const dead = await until('the dead letter', async () => {
        const listed = (await cli('deliveries', '--state', 'dead', '--json')).json() as { id: number; sink: string; last_error: string; event_ids: string[] }[];
        return listed.length > 0 ? listed : undefined;
      });
      expect(dead).toHaveLength(1);
      expect(dead[0]).toMatchObject({ sink: 'hook', last_error: expect.stringMatching(/HTTP 410/) });
      const refused = hook.requests.find((r) => r.body.includes(carol.email))!;

      // Silenced: recorded with their silence, sent nowhere.
      const events = (await cli('events', '--json')).json() as { type: string; id: string; silenced: string | null; data: { user?: { email: string } } }[];
      const silencedOf = (match: (e: (typeof events)[number]) => boolean) => events.find(match)?.silenced;
      expect(silencedOf((e) => e.data.user?.email === alice.email)).toBe(aliceSilence);
      expect(silencedOf((e) => e.type === 'behavior.disabled')).toBe(travelSilence);
      expect(silencedOf((e) => e.data.user?.email === bob.email)).toBeNull();
      expect(hook.requests.filter((r) => r.body.includes(alice.email) || r.body.includes('behavior.disabled'))).toEqual([]);
      const byAlice = await cli('events', '--user', alice.email, '--json');
      expect((byAlice.json() as unknown[]).length).toBe(1);

      // Who is high now, and since when.
      const high = (await cli('users', '--level', 'high', '--json')).json() as { email: string; level: string; since: string | null }[];
      expect(high.map((u) => u.email).sort()).toEqual([alice.email, bob.email].sort());
      expect(high.every((u) => u.level === 'high' && typeof u.since === 'string')).toBe(true);

      // The dead letter, retried: received within seconds under its old webhook-id.
      hook.answer = () => ({ status: 200, body: 'ok' });
      const retried = await cli('deliveries', 'retry', '--sink', 'hook');
      expect(retried.code).toBe(0);
      expect(retried.stdout.join(' ')).toMatch(/\b1\b/);
      const redelivered = await until('the retried delivery', () => hook.accepted.find((r) => r.body.includes(carol.email)), 10_000);
      expect(redelivered.headers['webhook-id']).toBe(refused.headers['webhook-id']);
      expect((await cli('deliveries', 'retry', '--sink', 'hook')).code).toBe(1);

      // A silence ends once.
      expect((await cli('silence', 'expire', aliceSilence)).code).toBe(0);
      expect((await cli('silence', 'expire', aliceSilence)).code).toBe(1);
      const listed = (await cli('silence', 'list', '--json')).json() as { id: string; by: string; account: string | null }[];
      expect(listed.map((s) => s.id)).toEqual([travelSilence]);
      expect(listed[0]).toMatchObject({ by: 'ana', account: ACCOUNT });
    } finally {
      daemon.child.kill('SIGTERM');
      // On failure, what the daemon said (it exited 2 once, when it and `status` migrated a new state file at the same moment).
      expect(await daemon.exited, `${daemon.stdout.join('\n')}\n${daemon.stderr.join('\n')}`).toBe(0);
    }

    // After the daemon exits, status still knows.
    const status = (await cli('status', '--json')).json() as {
      accounts: { id: string; name: string; last_success_at: string | null; last_error: string | null; users: Record<string, number> }[];
      sinks: { name: string; type: string; pending: number; dead: number }[];
      silences: number;
    };
    expect(status.accounts).toEqual([expect.objectContaining({ id: ACCOUNT, name: 'production', last_error: null, users: { low: 0, medium: 1, high: 2 } })]);
    expect(Date.parse(status.accounts[0]!.last_success_at!)).toBeGreaterThan(Date.now() - 60_000);
    expect(status.sinks).toEqual([expect.objectContaining({ name: 'hook', type: 'webhook', pending: 0, dead: 0 })]);
    expect(status.silences).toBe(1);
  });
});
