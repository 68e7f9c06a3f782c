import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { failure } from '../../src/simulator/fake-api.ts';
import { FakeRiskApi } from '../../src/simulator/fake-api.ts';
import { ACCOUNT, user } from '../support/cloudflare.ts';
import { writeDaemonConfig, webhookSinkYaml } from '../support/daemon-config.ts';
import { killIfRunning, type RiskwatchProcess, spawnRiskwatch } from '../support/process.ts';
import { Receiver } from '../support/receiver.ts';

/** Issue 5 against the real process: demo, readiness, metrics, SIGHUP, and no secret in any output. */

const TOKEN = 'cf-service-token-91ab';
let api: FakeRiskApi;
let receiverA: Receiver;
let receiverB: Receiver;
let dir: string;
let running: RiskwatchProcess | undefined;

beforeAll(async () => {
  api = await FakeRiskApi.start({ auth: { token: TOKEN } });
  receiverA = await Receiver.start();
  receiverB = await Receiver.start();
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'rw-service-'));
});
afterEach(async () => {
  await killIfRunning(running);
  running = undefined;
});
afterAll(async () => {
  await Promise.all([api.close(), receiverA.close(), receiverB.close()]);
  fs.rmSync(dir, { recursive: true, force: true });
});

const env = { CF_TOKEN: TOKEN, HOOK_SECRET: 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw' };

function writeConfig(name: string, sinks: string, firstRun = 'baseline'): string {
  return writeDaemonConfig(path.join(dir, name), { apiBaseUrl: api.baseUrl, sinks, state: `./${name}.db`, firstRun });
}

const hookSink = (name: string, receiver: Receiver) => webhookSinkYaml(name, receiver.url(`/${name}`), '${HOOK_SECRET}');

/** Starts `run` and returns the HTTP address from its start-up line. */
async function startRun(file: string): Promise<string> {
  running = spawnRiskwatch(['run', '--config', file], env);
  const started = JSON.parse(await running.waitForLine(/"msg":"riskwatch started"/)) as { http: string };
  return `http://${started.http}`;
}

async function until<T>(what: string, probe: () => Promise<T | undefined>, timeoutMs = 15_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

describe('demo', () => {
  it('prints raised and behavior alerts within 10 seconds and exits 0 on SIGINT', { timeout: 30_000 }, async () => {
    running = spawnRiskwatch(['demo']);
    await running.waitForLine(/ user\.risk_level_raised .* -> /, 10_000);
    await running.waitForLine(/ behavior\.(enabled|disabled) /, 10_000);
    running.child.kill('SIGINT');
    expect(await running.exited).toBe(0);
  });
});

describe('/readyz follows the polls, /healthz the process', () => {
  it('turns 503 naming the account while the API refuses, and 200 once it recovers', { timeout: 30_000 }, async () => {
    api.account(ACCOUNT).users.set(user(1).user_id, user(1));
    api.fault = () => ({ status: 403, body: failure(10000, 'Authentication error') });
    const base = await startRun(writeConfig('ready.yaml', hookSink('a', receiverA)));
    expect((await fetch(`${base}/healthz`)).status).toBe(200);
    const notReady = await until('a 503 with the error', async () => {
      const res = await fetch(`${base}/readyz`);
      const body = (await res.json()) as { ready: boolean; accounts: { account: string; reason: string }[] };
      return res.status === 503 && body.accounts[0]?.reason.includes('403') ? body : undefined;
    });
    expect(notReady.ready).toBe(false);
    expect(notReady.accounts[0]!.account).toBe('production');
    expect(notReady.accounts[0]!.reason).toMatch(/not polled successfully yet; last error: .*HTTP 403.*"Zero Trust: PII Read"/);
    api.fault = undefined;
    const ready = await until('a 200', async () => {
      const res = await fetch(`${base}/readyz`);
      return res.status === 200 ? await res.json() : undefined;
    });
    // Ready lists the account as ready, not an empty list that reads as "no accounts".
    expect(ready).toEqual({ ready: true, accounts: [{ account: 'production', ready: true, last_success_s_ago: expect.any(Number) }] });
  });
});

describe('/metrics', () => {
  it('is valid Prometheus text with the series of SPEC §7', { timeout: 30_000 }, async () => {
    api.account(ACCOUNT).users.set(user(2).user_id, { ...user(2), max_risk_level: 'high' });
    const base = await startRun(writeConfig('metrics.yaml', hookSink('a', receiverA), 'notify'));
    const text = await until('a scrape after the first poll', async () => {
      const body = await (await fetch(`${base}/metrics`)).text();
      return body.includes('riskwatch_users_tracked{account="production"}') && body.includes('riskwatch_deliveries_total{') ? body : undefined;
    });
    for (const series of [
      'riskwatch_poll_duration_seconds_bucket',
      'riskwatch_poll_errors_total',
      'riskwatch_users_tracked',
      'riskwatch_events_total{account="production",type="user.risk_level_raised"}',
      'riskwatch_deliveries_total{sink="a",outcome="delivered"}',
      'riskwatch_deliveries_pending',
      'riskwatch_deliveries_dead_lettered',
      'riskwatch_cloudflare_requests_total{call="summary",status="200"}',
      'riskwatch_cloudflare_rate_limited_total',
      'riskwatch_process_cpu_seconds_total',
    ]) {
      expect(text, series).toContain(series);
    }
    // The exposition format, line by line: comments, or `name{labels} value`.
    for (const line of text.split('\n').filter(Boolean)) {
      expect(line).toMatch(/^(# (HELP|TYPE) [a-zA-Z_:][a-zA-Z0-9_:]* .+|[a-zA-Z_:][a-zA-Z0-9_:]*(\{([a-zA-Z_][a-zA-Z0-9_]*="([^"\\]|\\.)*",?)*\})? -?([0-9.e+-]+|NaN|\+Inf|-Inf))$/);
    }
  });
});

describe('SIGHUP reloads the config', () => {
  it('keeps the old config when the new file is broken, and starts a new sink when it is good', { timeout: 40_000 }, async () => {
    const file = writeConfig('reload.yaml', hookSink('a', receiverA));
    const target = api.account(ACCOUNT);
    target.users.set(user(3).user_id, { ...user(3), max_risk_level: 'low' });
    const base = await startRun(file);
    const proc = running!;
    await proc.waitForLine(/"msg":"first poll of the account committed"/);
    const reloadOk = async () => (await (await fetch(`${base}/metrics`)).text()).match(/^riskwatch_config_last_reload_successful (\d)$/m)?.[1];
    expect(await reloadOk()).toBe('1');

    const rise = async (n: number, receiver: Receiver) => {
      const before = receiver.requests.length;
      target.users.set(user(n).user_id, { ...user(n), max_risk_level: 'high' });
      await until(`user ${n} at ${receiver.url()}`, async () => (receiver.requests.slice(before).some((r) => r.body.includes(user(n).email)) ? true : undefined));
    };
    await rise(4, receiverA);

    fs.writeFileSync(file, `${fs.readFileSync(file, 'utf8')}\nbogus_key: [`);
    proc.child.kill('SIGHUP');
    await proc.waitForLine(/"msg":"reload failed, still running on the previous config: .*YAML syntax error/);
    expect(await reloadOk()).toBe('0');
    await rise(5, receiverA);

    fs.writeFileSync(file, fs.readFileSync(writeConfig('reload-next.yaml', hookSink('a', receiverA) + hookSink('b', receiverB)), 'utf8').replace('./reload-next.yaml.db', './reload.yaml.db'));
    proc.child.kill('SIGHUP');
    await proc.waitForLine(/"msg":"config reloaded"/);
    expect(await reloadOk()).toBe('1');
    await rise(6, receiverB);
    expect(proc.child.exitCode).toBeNull();
    proc.child.kill('SIGTERM');
    expect(await proc.exited).toBe(0);
  });
});
