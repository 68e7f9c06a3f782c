import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { FakeRiskApi } from '../../src/simulator/fake-api.ts';
import { SqliteStore } from '../../src/store/sqlite.ts';
import pkg from '../../package.json' with { type: 'json' };
import { webhookSinkYaml, writeDaemonConfig } from '../support/daemon-config.ts';
import { killIfRunning, REPO, type RiskwatchProcess, spawnRiskwatch } from '../support/process.ts';
import { Receiver } from '../support/receiver.ts';

/**
 * The documented entry points (issue 18): `bin/riskwatch` is riskwatch itself,
 * so a service manager's SIGTERM stops it and SIGHUP reloads it; `npm start`
 * hands SIGTERM on and leaves no orphan holding the state file's lock.
 */

const BIN = path.join(REPO, 'bin/riskwatch');
const TOKEN = 'cf-entry-token-5d1e';
let api: FakeRiskApi;
let receiver: Receiver;
let dir: string;
let running: RiskwatchProcess | undefined;

beforeAll(async () => {
  api = await FakeRiskApi.start({ auth: { token: TOKEN } });
  receiver = await Receiver.start();
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'rw-entry-'));
});
afterEach(async () => {
  await killIfRunning(running);
  running = undefined;
});
afterAll(async () => {
  await Promise.all([api.close(), receiver.close()]);
  fs.rmSync(dir, { recursive: true, force: true });
});

const env = { CF_TOKEN: TOKEN };

function config(name: string): { file: string; state: string } {
  const file = writeDaemonConfig(path.join(dir, `${name}.yaml`), { apiBaseUrl: api.baseUrl, sinks: webhookSinkYaml('hook', receiver.url('/hook')), state: path.join(dir, `${name}.db`) });
  return { file, state: path.join(dir, `${name}.db`) };
}

/** The pid riskwatch says it runs as, from its start-up line. */
async function startedPid(proc: RiskwatchProcess): Promise<number> {
  return (JSON.parse(await proc.waitForLine(/"msg":"riskwatch started"/)) as { pid: number }).pid;
}

const alive = (pid: number) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

/** The file's lock is free: a daemon could start on it now. */
async function lockIsFree(state: string): Promise<void> {
  const store = SqliteStore.open(state);
  await store.close();
}

describe('bin/riskwatch', () => {
  it('is the riskwatch process itself: SIGHUP reloads it, SIGTERM stops it with 0 and frees the state file', { timeout: 30_000 }, async () => {
    const { file, state } = config('bin');
    running = spawnRiskwatch(['run', '--config', file], env, [], [BIN]);
    expect(await startedPid(running)).toBe(running.child.pid);
    running.child.kill('SIGHUP');
    await running.waitForLine(/"msg":"config reloaded"/);
    running.child.kill('SIGTERM');
    expect(await running.exited).toBe(0);
    await lockIsFree(state);
  });

  it('runs the pinned Node from anywhere, through a symlink (npm link, /usr/local/bin)', () => {
    const link = path.join(dir, 'riskwatch');
    fs.symlinkSync(BIN, link);
    const out = execFileSync(link, ['--version'], { cwd: os.tmpdir(), encoding: 'utf8', env: { PATH: '/usr/bin:/bin' } });
    // The pinned runtime (the `node` devDependency), not whatever Node the PATH holds.
    expect(out.trim()).toBe(`riskwatch ${pkg.version} (Node ${process.versions.node})`);
  });
});

describe('a closed stdout (`riskwatch events | head -1`)', () => {
  it('ends a command quietly with 0: no EPIPE stack trace', async () => {
    const { file } = config('epipe');
    for (const argv of [['--help'], ['check-config', '--config', file]]) {
      const proc = spawnRiskwatch(argv, env, [], [BIN]);
      // The reader is gone before riskwatch writes its first line.
      proc.child.stdout!.destroy();
      expect(await proc.exited, argv.join(' ')).toBe(0);
      expect(proc.stderr, argv.join(' ')).toEqual([]);
    }
  });
});

describe("bin/riskwatch turns on Node's compile cache", () => {
  it('in a directory of its own per user (mode 700), filled by the first command', () => {
    const tmp = fs.mkdtempSync(path.join(dir, 'tmp-'));
    execFileSync(BIN, ['--version'], { env: { PATH: process.env.PATH ?? '', TMPDIR: tmp } });
    const cache = path.join(tmp, `riskwatch-compile-cache-${process.getuid!()}`);
    expect(fs.statSync(cache).mode & 0o777).toBe(0o700);
    expect(fs.readdirSync(cache).length).toBeGreaterThan(0);
  });

  it.skipIf(process.getuid?.() !== 0)('never one another user made in a shared directory', () => {
    const tmp = fs.mkdtempSync(path.join(dir, 'tmp-'));
    const planted = path.join(tmp, `riskwatch-compile-cache-${process.getuid!()}`);
    fs.mkdirSync(planted, { mode: 0o777 });
    fs.chmodSync(planted, 0o777);
    fs.chownSync(planted, 65534, 65534);
    const out = execFileSync(BIN, ['--version'], { env: { PATH: process.env.PATH ?? '', TMPDIR: tmp }, encoding: 'utf8' });
    expect(out).toMatch(/^riskwatch /);
    expect(fs.readdirSync(planted)).toEqual([]);
  });
});

describe('npm start', () => {
  it('SIGTERM to npm reaches riskwatch: it stops, no orphan keeps the state file locked', { timeout: 40_000 }, async () => {
    const { file, state } = config('npm');
    running = spawnRiskwatch(['--silent', 'start', '--', 'run', '--config', file], env, [], ['npm']);
    const pid = await startedPid(running);
    expect(pid).not.toBe(running.child.pid);
    running.child.kill('SIGTERM');
    try {
      await expect.poll(() => alive(pid), { timeout: 15_000 }).toBe(false);
    } finally {
      if (alive(pid)) process.kill(pid, 'SIGKILL');
    }
    await running.exited;
    await lockIsFree(state);
  });
});
