import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import { Webhook } from 'standardwebhooks';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FakeRiskApi } from '../../src/simulator/fake-api.ts';
import { SqliteStore } from '../../src/store/sqlite.ts';
import { ACCOUNT, behavior, user } from '../support/cloudflare.ts';
import { writeDaemonConfig, webhookSinkYaml } from '../support/daemon-config.ts';
import { spawnRiskwatch } from '../support/process.ts';
import { Receiver } from '../support/receiver.ts';

/**
 * The notifier end to end (issue 4's "done when"): the real process, the fake
 * Cloudflare API and two loopback receivers, a signed webhook and Slack.
 */

const SECRET = 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw';
let api: FakeRiskApi;
let hook: Receiver;
let slack: Receiver;
let dir: string;
let configFile: string;

beforeAll(async () => {
  api = await FakeRiskApi.start();
  hook = await Receiver.start();
  slack = await Receiver.start();
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'rw-e2e-'));
  configFile = writeDaemonConfig(path.join(dir, 'riskwatch.yaml'), {
    apiBaseUrl: api.baseUrl,
    sinks: `${webhookSinkYaml('incidents', hook.url('/riskwatch'), '${HOOK_SECRET}')}  - name: secops
    type: slack
    url: ${slack.url('/services/T000/B000/slacksecretpath')}`,
    logLevel: 'warn',
  });
});

afterAll(async () => {
  await Promise.all([api.close(), hook.close(), slack.close()]);
  fs.rmSync(dir, { recursive: true, force: true });
});

const env = { CF_TOKEN: 'cf-e2e-token', HOOK_SECRET: SECRET };
async function riskwatch(...args: string[]) {
  const proc = spawnRiskwatch([...args, '--config', configFile], env, ['slacksecretpath']);
  const code = await proc.exited;
  return { code, stdout: proc.stdout, stderr: proc.stderr };
}

describe('a rise, a new user and a disabled behavior reach a signed webhook and one grouped, escaped Slack message', () => {
  it('delivers through an outage of the webhook receiver, under the same webhook-ids', { timeout: 60_000 }, async () => {
    const account = api.account(ACCOUNT);
    account.users.set(user(1).user_id, { ...user(1), max_risk_level: 'low' });
    account.behaviors.set('imp_travel', behavior('imp_travel', true, 'high'));
    expect((await riskwatch('once')).code).toBe(0); // baseline: nothing to say
    expect(hook.requests).toHaveLength(0);

    account.users.set(user(1).user_id, { ...user(1), max_risk_level: 'high' });
    const hostile = { ...user(2), name: '<!channel> Eve & <https://evil.example|click>', max_risk_level: 'medium' as const };
    account.users.set(hostile.user_id, hostile);
    account.behaviors.set('imp_travel', behavior('imp_travel', false, 'high'));

    hook.answer = () => ({ status: 503, body: 'down for maintenance' });
    const failed = await riskwatch('once');
    expect(failed.code).toBe(1);
    // Says when the next retry falls due, so that a cron entry can be set to run by then.
    const pendingLine = failed.stdout
      .filter((l) => l.startsWith('{'))
      .map((l) => JSON.parse(l) as { msg: string; nextDueAt?: string })
      .find((l) => l.msg.includes('still pending'));
    expect(pendingLine?.msg).toMatch(/^3 deliveries are still pending; they go out on a later run \(the next falls due at \d{4}-\d\d-\d\dT[\d:.]+Z\)$/);
    expect(Date.parse(pendingLine!.nextDueAt!)).toBeGreaterThan(Date.now() - 60_000);
    const firstIds = hook.requests.map((r) => r.headers['webhook-id']);
    expect(firstIds).toHaveLength(3);

    // The receiver comes back; the next runs deliver what is pending once its backoff is due.
    hook.answer = () => ({ status: 200, body: 'ok' });
    let code: number | string = 1;
    for (let run = 0; run < 10 && code !== 0; run++) {
      await delay(700);
      code = (await riskwatch('once')).code;
    }
    expect(code).toBe(0);

    const delivered = hook.requests.slice(3);
    expect(delivered.map((r) => r.headers['webhook-id']).sort()).toEqual([...firstIds].sort());
    const bodies = delivered.map((r) => {
      const headers = { 'webhook-id': String(r.headers['webhook-id']), 'webhook-timestamp': String(r.headers['webhook-timestamp']), 'webhook-signature': String(r.headers['webhook-signature']) };
      return new Webhook(SECRET).verify(r.body, headers) as { type: string; data: Record<string, unknown> };
    });
    expect(bodies.map((b) => b.type).sort()).toEqual(['behavior.disabled', 'user.risk_level_raised', 'user.risk_level_raised']);
    const newUser = bodies.find((b) => b.type === 'user.risk_level_raised' && b.data.previous_level === null);
    expect(newUser?.data).toMatchObject({ user: { name: hostile.name }, current_level: 'medium' });

    // Slack: one message for the poll, hostile strings escaped.
    expect(slack.requests).toHaveLength(1);
    const message = JSON.parse(slack.requests[0]!.body) as { text: string; blocks: { text?: { text: string } }[] };
    const all = JSON.stringify(message);
    expect(all).toContain('&lt;!channel&gt; Eve &amp; &lt;https://evil.example|click&gt;');
    expect(all).not.toContain('<!channel>');
    expect(message.blocks.filter((b) => b.text?.text.includes(user(1).email))).toHaveLength(1);
    expect(all).toMatch(/Impossible travel|Behavior imp_travel/);
  });
});

describe('test-sinks', () => {
  it('reports each sink and exits 0 when all accepted', { timeout: 30_000 }, async () => {
    const before = hook.requests.length;
    const result = await riskwatch('test-sinks');
    expect(result.code).toBe(0);
    expect(result.stdout).toEqual(expect.arrayContaining(['incidents (webhook): accepted', 'secops (slack): accepted']));
    const test = hook.requests[before]!;
    expect(JSON.parse(test.body).type).toBe('riskwatch.test');
  });

  it('exits 1 and says why when a sink refuses, naming only that sink with --sink', { timeout: 30_000 }, async () => {
    slack.answer = () => ({ status: 404, body: 'no_service' });
    const result = await riskwatch('test-sinks', '--sink', 'secops');
    slack.answer = () => ({ status: 200, body: 'ok' });
    expect(result.code).toBe(1);
    expect(result.stdout).toEqual(['secops (slack): FAILED after 1 attempt: sink secops: HTTP 404 (permanent): "no_service"']);
    expect(result.stdout.join('\n')).not.toContain('slacksecretpath');
  });

  it('--sample: a realistic alert, marked as a sample, rendered as a real one (signed webhook, grouped Slack message)', { timeout: 30_000 }, async () => {
    const before = { hook: hook.requests.length, slack: slack.requests.length };
    const all = await riskwatch('test-sinks', '--sample');
    expect(all.code).toBe(0);
    expect(all.stdout).toEqual(
      expect.arrayContaining(['incidents (webhook): no sample sent: an automation would take it for a real event (name it with --sink to send one)', 'secops (slack): sample accepted']),
    );
    expect(hook.requests.length).toBe(before.hook);
    const named = await riskwatch('test-sinks', '--sample', '--sink', 'incidents');
    expect(named.stdout).toEqual(['incidents (webhook): sample accepted']);
    const payloads = hook.requests.slice(before.hook).map((r) => {
      const headers = { 'webhook-id': String(r.headers['webhook-id']), 'webhook-timestamp': String(r.headers['webhook-timestamp']), 'webhook-signature': String(r.headers['webhook-signature']) };
      return new Webhook(SECRET).verify(r.body, headers) as { type: string; data: { account: { name: string }; user?: { name: string }; risk_events?: unknown[] } };
    });
    expect(payloads.map((p) => p.type).sort()).toEqual(['behavior.disabled', 'user.risk_level_raised']);
    for (const payload of payloads) expect(payload.data.account.name).toBe('production (riskwatch sample alert, not a real one)');
    expect(payloads.find((p) => p.type === 'user.risk_level_raised')?.data.risk_events).toHaveLength(2);
    const [message] = slack.requests.slice(before.slack);
    expect(message!.body).toContain('Sample User (riskwatch sample alert, not a real one)');
    expect(message!.body).toContain('Impossible travel (riskwatch sample alert, not a real one)');
  });

  it('refuses an unknown sink name with exit 2', async () => {
    const result = await riskwatch('test-sinks', '--sink', 'nope');
    expect(result.code).toBe(2);
    expect(result.stderr[0]).toBe('riskwatch: --sink nope: no such sink (configured: incidents, secops)');
  });
});

describe('once --dry-run', () => {
  it('prints what would be announced and to which sinks (a silence said), and commits and sends nothing', { timeout: 60_000 }, async () => {
    const file = writeDaemonConfig(path.join(dir, 'dry.yaml'), {
      apiBaseUrl: api.baseUrl,
      sinks: `${webhookSinkYaml('incidents', hook.url('/riskwatch'), '${HOOK_SECRET}')}  - name: secops
    type: slack
    min_level: high
    url: ${slack.url('/services/T000/B000/slacksecretpath')}`,
      state: './dry.db',
      logLevel: 'warn',
    });
    const run = async (...args: string[]) => {
      const proc = spawnRiskwatch([...args, '--config', file], env, ['slacksecretpath']);
      return { code: await proc.exited, stdout: proc.stdout.filter((l) => !l.startsWith('{')), stderr: proc.stderr };
    };
    const account = api.account(ACCOUNT);
    const [rising, muted] = [user(20), user(21)];
    account.users.set(rising.user_id, { ...rising, max_risk_level: 'low' });
    account.users.set(muted.user_id, { ...muted, max_risk_level: 'low' });
    expect((await run('once')).code).toBe(0); // the baseline
    const before = { hook: hook.requests.length, slack: slack.requests.length };

    account.users.set(rising.user_id, { ...rising, max_risk_level: 'high' });
    account.users.set(muted.user_id, { ...muted, max_risk_level: 'medium' });
    expect((await run('silence', 'add', '--user', muted.email, '--for', '1h', '--reason', 'dry run test')).code).toBe(0);

    // Beside a running daemon: it holds the state file's lock, and the dry run does not need it.
    const daemon = SqliteStore.open(path.join(dir, 'dry.db'));
    for (let round = 0; round < 2; round++) {
      const dry = await run('once', '--dry-run');
      expect(dry.code).toBe(0);
      expect(dry.stdout).toEqual([
        expect.stringMatching(new RegExp(`\\[production\\] user\\.risk_level_raised .*<${rising.email}> low -> high .* -> to incidents, secops$`)),
        expect.stringMatching(new RegExp(`\\[production\\] user\\.risk_level_raised .*<${muted.email}> low -> medium .* -> silenced by sil_[0-9a-f]+$`)),
        'dry run: 2 events in 1 account polled; nothing committed, nothing sent',
      ]);
    }
    await daemon.close();
    expect({ hook: hook.requests.length, slack: slack.requests.length }).toEqual(before);
    expect((await run('events', '--since', '1h', '--json')).stdout.join('')).toBe('[]');

    // The real run announces what the dry run printed.
    expect((await run('once')).code).toBe(0);
    expect(
      hook.requests
        .slice(before.hook)
        .map((r) => r.body)
        .filter((b) => b.includes(rising.email)),
    ).toHaveLength(1);
  });
});
