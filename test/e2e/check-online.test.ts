import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FakeRiskApi, failure } from '../../src/simulator/fake-api.ts';
import { ACCOUNT } from '../support/cloudflare.ts';
import { webhookSinkYaml, writeDaemonConfig } from '../support/daemon-config.ts';
import { spawnRiskwatch } from '../support/process.ts';

/** `check-config --online` (issue 18): one request per account and call, each refusal one line naming the permission; nothing committed. */

const TOKEN = 'cf-online-token-77c2';
let api: FakeRiskApi;
let dir: string;
let file: string;

beforeAll(async () => {
  api = await FakeRiskApi.start({ auth: { token: TOKEN } });
  api.account(ACCOUNT);
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'rw-online-'));
  file = writeDaemonConfig(path.join(dir, 'riskwatch.yaml'), { apiBaseUrl: api.baseUrl, sinks: webhookSinkYaml('hook', 'http://127.0.0.1:9/hook'), state: './state.db' });
});
afterAll(async () => {
  await api.close();
  fs.rmSync(dir, { recursive: true, force: true });
});

async function checkOnline(token: string) {
  const proc = spawnRiskwatch(['check-config', '--online', '--config', file], { CF_TOKEN: token });
  return { code: await proc.exited, stdout: proc.stdout, stderr: proc.stderr };
}

describe('check-config --online', () => {
  it('a credential that may read both: one line, exit 0, one request per call, nothing stored', async () => {
    const before = api.requests.length;
    const result = await checkOnline(TOKEN);
    expect({ code: result.code, said: result.stdout.slice(-2) }).toEqual({ code: 0, said: ['online: production: the summary and the behaviors can be read', 'Cloudflare answers every account'] });
    expect(
      api.requests
        .slice(before)
        .map((r) => r.call)
        .sort(),
    ).toEqual(['behaviors', 'summary']);
    expect(fs.existsSync(path.join(dir, 'state.db'))).toBe(false);
  });

  it('a token without Zero Trust Read: the behaviors line names the permission, exit 1', async () => {
    api.fault = (request) => (request.call === 'behaviors' ? { status: 403, body: failure(10000, 'Authentication error') } : undefined);
    try {
      const result = await checkOnline(TOKEN);
      expect(result.code).toBe(1);
      expect(result.stdout.slice(-2)).toEqual([
        `online: production: the behaviors cannot be read: GET /accounts/${ACCOUNT}/zt_risk_scoring/behaviors: HTTP 403: Authentication error (code 10000); the credential needs the "Zero Trust Read" permission on this account`,
        'Cloudflare refused some reads (above): alerts for those accounts would fail',
      ]);
    } finally {
      api.fault = undefined;
    }
  });

  it('a wrong token: both calls refused, each on its line; the token is never printed', async () => {
    const result = await checkOnline('not-the-token-3f9e');
    expect(result.code).toBe(1);
    const refused = result.stdout.filter((line) => line.startsWith('online: production: the '));
    expect(refused).toHaveLength(2);
    expect(refused[0]).toMatch(/the summary cannot be read: .*HTTP 40[13].*"Zero Trust: PII Read"/);
    expect(refused[1]).toMatch(/the behaviors cannot be read: .*HTTP 40[13].*"Zero Trust Read"/);
  });

  it('an account id Cloudflare does not know: the 404 (code 7003) says to check the id', async () => {
    const unknown = writeDaemonConfig(path.join(dir, 'unknown.yaml'), { apiBaseUrl: api.baseUrl, sinks: webhookSinkYaml('hook', 'http://127.0.0.1:9/hook') });
    fs.writeFileSync(unknown, fs.readFileSync(unknown, 'utf8').replace(ACCOUNT, 'f'.repeat(32)));
    const proc = spawnRiskwatch(['check-config', '--online', '--config', unknown], { CF_TOKEN: TOKEN });
    expect({ code: await proc.exited, stderr: proc.stderr }).toEqual({ code: 1, stderr: [] });
    expect(proc.stdout.filter((line) => line.startsWith('online: '))).toEqual([
      expect.stringMatching(/the summary cannot be read: .*HTTP 404: .*\(code 7003\); no such account for this credential: check the account id$/),
      expect.stringMatching(/the behaviors cannot be read: .*HTTP 404: .*\(code 7003\); no such account for this credential: check the account id$/),
    ]);
  });
});
