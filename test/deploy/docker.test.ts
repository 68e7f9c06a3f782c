import { execFileSync, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { VERSION } from '../../src/version.ts';
import { FakeRiskApi } from '../../src/simulator/fake-api.ts';
import { ACCOUNT, user } from '../support/cloudflare.ts';
import { configYaml, ENV, makeTempDir, type TempDir } from '../support/config-files.ts';
import { webhookSinkYaml, writeDaemonConfig } from '../support/daemon-config.ts';
import { killIfRunning, REPO, spawnRiskwatch } from '../support/process.ts';
import { Receiver } from '../support/receiver.ts';

/**
 * The Dockerfile, read (no Docker engine here): every COPY from the build
 * context names something .dockerignore lets in (else `docker build` stops
 * with "not found"), and the entry point is bin/riskwatch under tini.
 */

const dockerfile = fs.readFileSync(path.join(REPO, 'Dockerfile'), 'utf8');
const ignore = fs
  .readFileSync(path.join(REPO, '.dockerignore'), 'utf8')
  .split('\n')
  .map((line) => line.trim())
  .filter((line) => line !== '' && !line.startsWith('#'));

/** Whether .dockerignore sends `source` (a path in the context) to the build: its last matching rule decides. */
function inContext(source: string): boolean {
  let included = true;
  for (const rule of ignore) {
    const negated = rule.startsWith('!');
    const pattern = (negated ? rule.slice(1) : rule).replace(/\/$/, '');
    if (pattern === '*' || pattern === source || source.startsWith(`${pattern}/`)) included = negated;
  }
  return included;
}

describe('the Dockerfile', () => {
  it('copies only what .dockerignore lets into the build context, and each exists', () => {
    const sources = [...dockerfile.matchAll(/^COPY (?!--from)(.+)$/gm)].flatMap((m) => m[1]!.trim().split(/\s+/).slice(0, -1));
    expect(sources.length).toBeGreaterThan(0);
    for (const source of sources) {
      const name = source.replace(/^\.\//, '').replace(/\/$/, '');
      expect(inContext(name), `${source} is left out by .dockerignore`).toBe(true);
      expect(fs.existsSync(path.join(REPO, name)), `${source} does not exist`).toBe(true);
    }
    expect(inContext('test')).toBe(false);
    expect(inContext('node_modules')).toBe(false);
  });

  it('runs bin/riskwatch under tini', () => {
    expect(dockerfile).toMatch(/^ENTRYPOINT \["\/usr\/bin\/tini", "--", "\/app\/bin\/riskwatch"\]$/m);
    expect(dockerfile).toMatch(/^COPY bin \.\/bin$/m);
  });

  it('ships the compiled JavaScript, not the sources', () => {
    expect(dockerfile).toMatch(/^RUN npm run build$/m);
    expect(dockerfile).toMatch(/^COPY --from=build \/app\/dist \.\/dist$/m);
    const runtime = dockerfile.slice(dockerfile.lastIndexOf('\nFROM '));
    expect(runtime).not.toMatch(/^COPY src /m);
  });
});

describe('the compiled JavaScript the image ships (npm run build)', () => {
  let tmp: TempDir;
  beforeAll(() => {
    // The image's /app: package.json, bin/, dist/ and the dependencies, and no src/.
    tmp = makeTempDir();
    const app = path.join(tmp.dir, 'app');
    execFileSync(path.join(REPO, 'node_modules/.bin/tsc'), ['-p', path.join(REPO, 'tsconfig.build.json'), '--outDir', path.join(app, 'dist')], { cwd: REPO });
    fs.cpSync(path.join(REPO, 'bin'), path.join(app, 'bin'), { recursive: true });
    fs.copyFileSync(path.join(REPO, 'package.json'), path.join(app, 'package.json'));
    fs.symlinkSync(path.join(REPO, 'node_modules'), path.join(app, 'node_modules'));
  }, 120_000);
  afterAll(() => tmp.remove());

  const riskwatch = (args: readonly string[]) =>
    spawnSync(path.join(tmp.dir, 'app', 'bin', 'riskwatch'), args, { env: { PATH: process.env.PATH ?? '', TMPDIR: tmp.dir, ...ENV }, encoding: 'utf8', timeout: 30_000 });

  it('runs where no sources are shipped: bin/riskwatch finds dist/, which knows its version', () => {
    const result = riskwatch(['--version']);
    expect(result.stderr).toBe('');
    expect(result.stdout).toMatch(new RegExp(`^riskwatch ${VERSION.replaceAll('.', '\\.')} `));
  });

  it('a reload whose sink module cannot be loaded (an upgrade in place) keeps the previous config running', { timeout: 60_000 }, async () => {
    const api = await FakeRiskApi.start({ auth: { token: 'cf-reload-token' } });
    const receiver = await Receiver.start();
    const app = path.join(tmp.dir, 'app');
    const teams = path.join(app, 'dist/src/notify/sinks/teams.js');
    const file = path.join(tmp.dir, 'reload.yaml');
    const write = (sinks: string) => writeDaemonConfig(file, { apiBaseUrl: api.baseUrl, sinks, state: path.join(tmp.dir, 'reload.db') });
    const hook = webhookSinkYaml('hook', receiver.url('/hook'));
    write(hook);
    api.account(ACCOUNT).users.set(user(1).user_id, user(1));
    const running = spawnRiskwatch(['run', '--config', file], { CF_TOKEN: 'cf-reload-token', TMPDIR: tmp.dir }, [], [path.join(app, 'bin', 'riskwatch')]);
    const moved = `${teams}.away`;
    try {
      await running.waitForLine(/"msg":"riskwatch started"/);
      await running.waitForLine(/"msg":"first poll of the account committed"/);
      fs.renameSync(teams, moved);
      write(`${hook}  - name: chat\n    type: teams\n    url: ${receiver.url('/teams')}\n`);
      running.child.kill('SIGHUP');
      await running.waitForLine(/reload failed, still running on the previous config: .*teams\.js/);
      // Still polling and delivering on the previous config.
      api.account(ACCOUNT).users.set(user(7).user_id, { ...user(7), max_risk_level: 'high' });
      for (let i = 0; i < 100 && !receiver.accepted.some((r) => r.body.includes(user(7).email)); i++) await new Promise((r) => setTimeout(r, 100));
      expect(receiver.accepted.some((r) => r.body.includes(user(7).email)), running.stdout.slice(-8).join('\n')).toBe(true);
    } finally {
      if (fs.existsSync(moved)) fs.renameSync(moved, teams);
      await killIfRunning(running);
      await Promise.all([api.close(), receiver.close()]);
    }
  });

  it('reads a config, loading each module from dist/ (a relative import left as .ts would fail here)', () => {
    const config = tmp.write('riskwatch.yaml', configYaml());
    const result = riskwatch(['check-config', '--config', config]);
    expect(result.stderr).toBe('');
    expect(result.status).toBe(0);
    expect(fs.existsSync(path.join(tmp.dir, 'app', 'src'))).toBe(false);
  });
});
