import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { killIfRunning, type RiskwatchProcess, spawnRiskwatch } from '../support/process.ts';

/** `simulate` (issue 18): the demo's tenant alone, and a config pasted from what it prints, driven by once. */

let dir: string;
let simulator: RiskwatchProcess | undefined;
beforeAll(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'rw-simulate-'));
});
afterEach(async () => {
  await killIfRunning(simulator);
  simulator = undefined;
});
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

async function riskwatch(...args: string[]) {
  const proc = spawnRiskwatch(args);
  return { code: await proc.exited, stdout: proc.stdout, stderr: proc.stderr };
}

describe('simulate', () => {
  it('prints a config snippet that once (and once --dry-run) can poll, enrichment included; exits 0 on SIGINT', { timeout: 60_000 }, async () => {
    simulator = spawnRiskwatch(['simulate', '--port', '0']);
    await simulator.waitForLine(/^ {4}name: simulated$/);
    const start = simulator.stdout.indexOf('cloudflare:');
    const snippet = simulator.stdout.slice(start).join('\n');
    expect(snippet).toMatch(/^cloudflare:\n {2}api_base_url: http:\/\/127\.0\.0\.1:\d+\/client\/v4\n {2}api_token: simulated\naccounts:\n {2}- id: [0-9a-f]{32}\n {4}name: simulated$/);
    const file = path.join(dir, 'riskwatch.yaml');
    fs.writeFileSync(file, `${snippet}\nfirst_run: notify\nstate:\n  sqlite: ${path.join(dir, 'state.db')}\nsinks:\n  - name: console\n    type: console\nlog:\n  level: warn\n`);

    const dry = await riskwatch('once', '--dry-run', '--config', file);
    expect(dry.code).toBe(0);
    expect(dry.stdout.at(-1)).toMatch(/^dry run: [1-9]\d* events in 1 account polled; nothing committed, nothing sent$/);

    const once = await riskwatch('once', '--config', file);
    expect(once.code).toBe(0);
    const raised = once.stdout.filter((line) => / \[simulated\] user\.risk_level_raised .* none -> (low|medium|high)/.test(line));
    expect(raised.length).toBeGreaterThan(0);
    // The per-user endpoint is simulated too: no alert went out without its risk events.
    expect(once.stdout.concat(once.stderr).filter((line) => line.includes('could not enrich'))).toEqual([]);

    simulator.child.kill('SIGINT');
    expect(await simulator.exited).toBe(0);
  });

  it('a bad port is a usage error (2); a port in use is named (2)', async () => {
    const bad = await riskwatch('simulate', '--port', 'http');
    expect(bad.code).toBe(2);
    expect(bad.stderr[0]).toBe('riskwatch: --port http: not a port (0 to 65535; 0 picks a free one)');
    const taken = net.createServer();
    await new Promise<void>((resolve) => taken.listen(0, '127.0.0.1', () => resolve()));
    const port = (taken.address() as net.AddressInfo).port;
    try {
      const busy = await riskwatch('simulate', '--port', String(port));
      expect(busy.code).toBe(2);
      expect(busy.stderr).toEqual([`riskwatch: --port ${port}: cannot listen on 127.0.0.1:${port}: the port is already in use`]);
    } finally {
      taken.close();
    }
  });
});
