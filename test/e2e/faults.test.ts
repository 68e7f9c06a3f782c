import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { FakeRiskApi, failure, success } from '../../src/simulator/fake-api.ts';
import { ACCOUNT, user } from '../support/cloudflare.ts';
import { writeDaemonConfig, webhookSinkYaml } from '../support/daemon-config.ts';
import { killIfRunning, type RiskwatchProcess, spawnRiskwatch } from '../support/process.ts';
import { Receiver } from '../support/receiver.ts';

/**
 * Issue 6: faults against the real process. Cloudflare misbehaving, the state
 * directory filling up or turning read-only, a stop in the middle of a storm.
 */

const TOKEN = 'cf-fault-token-77d1';
const env = { CF_TOKEN: TOKEN };
let api: FakeRiskApi;
let receiver: Receiver;
let dir: string;
let running: RiskwatchProcess | undefined;

beforeAll(async () => {
  receiver = await Receiver.start();
});
beforeEach(async () => {
  api = await FakeRiskApi.start({ auth: { token: TOKEN } });
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'rw-faults-'));
});
afterEach(async () => {
  await killIfRunning(running);
  running = undefined;
  receiver.answer = () => ({ status: 200, body: 'ok' });
  await api.close();
  fs.rmSync(dir, { recursive: true, force: true });
});
afterAll(async () => {
  await receiver.close();
});

function config(options: { stateDir?: string; firstRun?: string } = {}): string {
  return writeDaemonConfig(path.join(dir, 'riskwatch.yaml'), {
    apiBaseUrl: api.baseUrl,
    sinks: webhookSinkYaml('hook', receiver.url('/hook')),
    state: path.join(options.stateDir ?? dir, 'state.db'),
    ...(options.firstRun ? { firstRun: options.firstRun } : {}),
  });
}

async function once(file: string) {
  const proc = spawnRiskwatch(['once', '--config', file], env);
  return { code: await proc.exited, stdout: proc.stdout, stderr: proc.stderr };
}

/** Log lines of a given level (pino: 40 warn, 50 error) as objects. */
const logs = (lines: readonly string[], level: number) =>
  lines
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as Record<string, unknown>)
    .filter((l) => l.level === level);

function seed(count: number, level: 'low' | 'medium' | 'high' = 'low') {
  for (let n = 1; n <= count; n++) api.account(ACCOUNT).users.set(user(n).user_id, { ...user(n), max_risk_level: level });
}

describe('Cloudflare faults', () => {
  it('names the permission on an authentication failure, and `once` exits 1', async () => {
    seed(3);
    api.fault = () => ({ status: 403, body: failure(10000, 'Authentication error') });
    const result = await once(config());
    expect(result.code).toBe(1);
    const [error] = logs(result.stdout, 50);
    expect(error?.account).toBe('production');
    expect(String(error?.err)).toMatch(/HTTP 403: Authentication error \(code 10000\); the credential needs the "Zero Trust: PII Read" permission/);
  });

  it('sends nothing on the credential until a 429 Retry-After has passed', { timeout: 30_000 }, async () => {
    seed(3);
    let limited = 0;
    api.fault = (r) => (r.call === 'summary' && limited++ === 0 ? { status: 429, headers: { 'retry-after': '3' }, body: failure(971, 'Please wait') } : undefined);
    const result = await once(config());
    expect(result.code).toBe(0);
    // The behaviors call went out alongside the refused one; every request sent after the 429 waited 3 s.
    const refusedAt = api.requests[0]!.receivedAt;
    const later = api.requests.filter((r) => r.receivedAt - refusedAt > 100);
    expect(later.length).toBeGreaterThan(0);
    expect(later.every((r) => r.receivedAt - refusedAt >= 3000)).toBe(true);
  });

  it('reads a 10 MB summary page', { timeout: 30_000 }, async () => {
    const users = Array.from({ length: 40_000 }, (_, i) => ({ ...user(i + 1), name: `User ${i + 1} ${'x'.repeat(100)}` }));
    const body = JSON.stringify({ ...success({ users }), result_info: { page: 1, per_page: 40_000, count: 40_000, total_count: 40_000, total_pages: 1 } });
    expect(body.length).toBeGreaterThan(10_000_000);
    api.fault = (r) => (r.call === 'summary' ? { status: 200, body } : undefined);
    api.account(ACCOUNT);
    expect((await once(config())).code).toBe(0);
    const db = new DatabaseSync(path.join(dir, 'state.db'), { readOnly: true });
    expect(db.prepare('SELECT COUNT(*) AS n FROM users').get()).toEqual({ n: 40_000 });
    db.close();
  });

  it('keeps a user whose record turned malformed, and announces the others', async () => {
    seed(3);
    const file = config();
    expect((await once(file)).code).toBe(0);
    const target = api.account(ACCOUNT);
    target.users.set(user(1).user_id, { ...user(1), max_risk_level: 'critical' });
    target.users.set(user(2).user_id, { ...user(2), max_risk_level: 'high' });
    const before = receiver.requests.length;
    const result = await once(file);
    expect(result.code).toBe(0);
    const bodies = receiver.requests.slice(before).map((r) => JSON.parse(r.body) as { type: string; data: { user: { email: string } } });
    expect(bodies.map((b) => `${b.type} ${b.data.user.email}`)).toEqual([`user.risk_level_raised ${user(2).email}`]);
    expect(logs(result.stdout, 40).some((l) => /skipped 1 malformed user record/.test(String(l.msg)))).toBe(true);
  });
});

/** A tiny tmpfs for the state file: needs root and mount, which CI on these machines has. */
function mountTmpfs(target: string, size: string): boolean {
  try {
    execFileSync('mount', ['-t', 'tmpfs', '-o', `size=${size}`, 'tmpfs', target], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}
const canMount = (() => {
  const probe = fs.mkdtempSync(path.join(os.tmpdir(), 'rw-mount-'));
  const ok = mountTmpfs(probe, '64k');
  if (ok) execFileSync('umount', [probe]);
  fs.rmSync(probe, { recursive: true, force: true });
  return ok;
})();

describe.skipIf(!canMount)('the state directory at commit time (a tmpfs of its own)', () => {
  let stateDir: string;
  beforeEach(() => {
    stateDir = fs.mkdtempSync(path.join(os.tmpdir(), 'rw-statefs-'));
  });
  afterEach(() => {
    execFileSync('umount', ['-l', stateDir], { stdio: 'ignore' });
    fs.rmSync(stateDir, { recursive: true, force: true });
  });

  // A read-only remount cannot be simulated here: Linux refuses to remount a file system
  // read-only while riskwatch holds its files open for writing. A full disk is the same
  // failure at the same place (the commit), and an unwritable directory is refused at open.
  it('full: the poll fails with a clear line, nothing partial is written, and it succeeds once there is room', { timeout: 60_000 }, async () => {
    expect(mountTmpfs(stateDir, '600k')).toBe(true);
    seed(20_000);
    const file = config({ stateDir });
    const result = await once(file);
    expect(result.code).toBe(1);
    expect(String(logs(result.stdout, 50)[0]?.err)).toMatch(/state file .*state\.db: cannot commit the poll: the disk is full/);
    // Nothing partial: the file opens, and holds no snapshot.
    api.account(ACCOUNT).users.clear();
    seed(5);
    expect((await once(file)).code).toBe(0);
    const db = new DatabaseSync(path.join(stateDir, 'state.db'), { readOnly: true });
    expect(db.prepare('SELECT COUNT(*) AS n FROM users').get()).toEqual({ n: 5 });
    expect(db.prepare('SELECT version FROM accounts').get()).toEqual({ version: 1 });
    db.close();
  });
});

describe('SIGTERM during a delivery storm', () => {
  it('exits promptly, and the next start delivers the rest: nothing lost, none under two ids', { timeout: 60_000 }, async () => {
    seed(300, 'low');
    const file = config({ firstRun: 'notify' });
    let slow = true;
    receiver.answer = () => ({ status: 200, body: 'ok', delayMs: slow ? 50 : 0 });
    const before = receiver.requests.length;
    running = spawnRiskwatch(['run', '--config', file], env);
    const proc = running;
    const deadline = Date.now() + 20_000;
    while (receiver.requests.length - before < 20 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    const stopAt = Date.now();
    proc.child.kill('SIGTERM');
    expect(await proc.exited).toBe(0);
    expect(Date.now() - stopAt).toBeLessThan(10_000 + 5_000);
    slow = false;
    // Restart: the rest goes out.
    running = spawnRiskwatch(['run', '--config', file], env);
    const end = Date.now() + 30_000;
    const ids = () => new Set(receiver.requests.slice(before).map((r) => String(r.headers['webhook-id'])));
    while (ids().size < 300 && Date.now() < end) await new Promise((r) => setTimeout(r, 50));
    running.child.kill('SIGTERM');
    expect(await running.exited).toBe(0);
    const byUser = new Map<string, Set<string>>();
    for (const r of receiver.requests.slice(before)) {
      const body = JSON.parse(r.body) as { data: { user: { email: string } } };
      byUser.set(body.data.user.email, (byUser.get(body.data.user.email) ?? new Set()).add(String(r.headers['webhook-id'])));
    }
    expect(byUser.size).toBe(300);
    expect([...byUser.values()].every((set) => set.size === 1)).toBe(true);
  });
});

describe('the HTTP endpoint', () => {
  it('listens on loopback unless http.listen says otherwise', () => {
    const file = path.join(dir, 'plain.yaml');
    fs.writeFileSync(file, `cloudflare: { api_token: x }\naccounts: [{ id: ${ACCOUNT} }]\nsinks: [{ name: out, type: console }]\n`);
    const out = execFileSync(process.execPath, ['src/main.ts', 'check-config', '--config', file], { cwd: path.resolve(import.meta.dirname, '../..') }).toString();
    expect(out).toMatch(/^http: 127\.0\.0\.1:9464 /m);
  });
});
