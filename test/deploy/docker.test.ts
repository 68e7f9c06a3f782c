import { spawnSync } from 'node:child_process';
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

  it('builds the bundle (npm run build) and ships it, not the sources', () => {
    expect(dockerfile).toMatch(/^RUN npm run build$/m);
    expect(dockerfile).toMatch(/^COPY --from=build \/app\/dist \.\/dist$/m);
    const runtime = dockerfile.slice(dockerfile.lastIndexOf('\nFROM '));
    expect(runtime).not.toMatch(/^COPY src /m);
    // The bundle holds every dependency: the image needs no node_modules.
    expect(runtime.split('\n').filter((line) => !line.startsWith('#') && line.includes('node_modules'))).toEqual([]);
  });
});

describe('npm run build', () => {
  it('empties dist/ first: no chunk of an earlier build is left beside the new ones', () => {
    const dist = path.join(REPO, 'dist');
    fs.mkdirSync(dist, { recursive: true });
    fs.writeFileSync(path.join(dist, 'stale-OLDHASH.mjs'), 'throw new Error("an old chunk");\n');
    const built = spawnSync('npm', ['run', 'build'], { cwd: REPO, encoding: 'utf8', timeout: 100_000 });
    expect(built.status, built.stderr).toBe(0);
    const files = fs.readdirSync(dist);
    expect(files).toContain('main.mjs');
    expect(files).not.toContain('stale-OLDHASH.mjs');
  }, 120_000);
});

describe('the bundle the image ships (npm run build)', () => {
  let tmp: TempDir;
  let app: string;
  /** What the build printed on stderr: esbuild's warnings, if any. */
  let buildLog: string;
  beforeAll(() => {
    // The image's /app: bin/ and dist/, nothing else (no src/, no node_modules). dist/ is built by the
    // build script itself (esbuild takes the last --outdir given), so the test and the image cannot drift.
    tmp = makeTempDir();
    app = path.join(tmp.dir, 'app');
    const built = spawnSync('npm', ['run', 'build', '--', `--outdir=${path.join(app, 'dist')}`], { cwd: REPO, encoding: 'utf8', timeout: 100_000 });
    if (built.status !== 0) throw new Error(`npm run build exited ${built.status ?? built.signal}: ${built.error?.message ?? ''}${built.stderr}`);
    buildLog = built.stderr;
    fs.cpSync(path.join(REPO, 'bin'), path.join(app, 'bin'), { recursive: true });
  }, 120_000);
  afterAll(() => tmp.remove());

  // With no node_modules beside it, bin/riskwatch runs the `node` on PATH, as in the image (whose Node is 24): here, the pinned one.
  const PATH = `${path.join(REPO, 'node_modules', '.bin')}:${process.env.PATH ?? ''}`;
  const riskwatch = (args: readonly string[]) => spawnSync(path.join(app, 'bin', 'riskwatch'), args, { env: { PATH, TMPDIR: tmp.dir, ...ENV }, encoding: 'utf8', timeout: 30_000 });
  /** The one chunk of dist/ whose name starts with `name-` (esbuild adds a hash of its content). */
  const chunk = (name: string) => {
    const found = fs.readdirSync(path.join(app, 'dist')).filter((file) => new RegExp(`^${name}-[A-Z0-9]+\\.mjs$`).test(file));
    expect(found, `dist/ should hold one ${name}-<hash>.mjs chunk`).toHaveLength(1);
    return path.join(app, 'dist', found[0]!);
  };

  it('is built without a warning: one entry, dist/main.mjs, and a chunk per lazily loaded module, each of which loads', () => {
    expect(buildLog).not.toMatch(/\[(WARNING|ERROR)\]/);
    const files = fs.readdirSync(path.join(app, 'dist'));
    expect(files).toContain('main.mjs');
    expect(
      files.every((file) => file.endsWith('.mjs')),
      files.join(' '),
    ).toBe(true);
    // Every chunk evaluates in this Node (a bundled CommonJS dependency's require of a built-in goes through the banner's require).
    const load = spawnSync(
      path.join(REPO, 'node_modules/.bin/node'),
      ['--input-type=module', '-e', `for (const file of ${JSON.stringify(files)}) await import(${JSON.stringify(`${path.join(app, 'dist')}/`)} + file);`],
      { encoding: 'utf8', timeout: 30_000 },
    );
    expect(load.stderr).toBe('');
    expect(load.status).toBe(0);
  });

  it('runs where no sources are shipped: bin/riskwatch finds dist/main.mjs, which knows its version', () => {
    const result = riskwatch(['--version']);
    expect(result.stderr).toBe('');
    expect(result.stdout).toMatch(new RegExp(`^riskwatch ${VERSION.replaceAll('.', '\\.')} `));
  });

  it('a reload whose sink module cannot be loaded (an upgrade in place) keeps the previous config running', { timeout: 60_000 }, async () => {
    const api = await FakeRiskApi.start({ auth: { token: 'cf-reload-token' } });
    const receiver = await Receiver.start();
    const teams = chunk('teams');
    const file = path.join(tmp.dir, 'reload.yaml');
    const write = (sinks: string) => writeDaemonConfig(file, { apiBaseUrl: api.baseUrl, sinks, state: path.join(tmp.dir, 'reload.db') });
    const hook = webhookSinkYaml('hook', receiver.url('/hook'));
    write(hook);
    api.account(ACCOUNT).users.set(user(1).user_id, user(1));
    const running = spawnRiskwatch(['run', '--config', file], { CF_TOKEN: 'cf-reload-token', TMPDIR: tmp.dir, PATH }, [], [path.join(app, 'bin', 'riskwatch')]);
    const moved = `${teams}.away`;
    try {
      await running.waitForLine(/"msg":"riskwatch started"/);
      await running.waitForLine(/"msg":"first poll of the account committed"/);
      fs.renameSync(teams, moved);
      write(`${hook}  - name: chat\n    type: teams\n    url: ${receiver.url('/teams')}\n`);
      running.child.kill('SIGHUP');
      await running.waitForLine(/reload failed, still running on the previous config: .*teams-[A-Z0-9]+\.mjs/);
      // Still polling and delivering on the previous config.
      api.account(ACCOUNT).users.set(user(7).user_id, { ...user(7), max_risk_level: 'high' });
      for (let i = 0; i < 100 && !receiver.accepted.some((r) => r.body.includes(user(7).email)); i++) await new Promise((r) => setTimeout(r, 100));
      expect(
        receiver.accepted.some((r) => r.body.includes(user(7).email)),
        running.stdout.slice(-8).join('\n'),
      ).toBe(true);
    } finally {
      if (fs.existsSync(moved)) fs.renameSync(moved, teams);
      await killIfRunning(running);
      await Promise.all([api.close(), receiver.close()]);
    }
  });

  it('logs pretty lines from the bundle alone (pino-pretty is a chunk of it, not a node_modules lookup)', { timeout: 60_000 }, async () => {
    const api = await FakeRiskApi.start({ auth: { token: 'cf-pretty-token' } });
    const file = writeDaemonConfig(path.join(tmp.dir, 'pretty.yaml'), { apiBaseUrl: api.baseUrl, sinks: '  - name: screen\n    type: console\n', state: path.join(tmp.dir, 'pretty.db') });
    fs.appendFileSync(file, '  format: pretty\n');
    api.account(ACCOUNT).users.set(user(1).user_id, user(1));
    try {
      const once = spawnRiskwatch(['once', '--config', file], { CF_TOKEN: 'cf-pretty-token', TMPDIR: tmp.dir, PATH }, [], [path.join(app, 'bin', 'riskwatch')]);
      expect(await once.exited, [...once.stdout, ...once.stderr].join('\n')).toBe(0);
      expect(
        once.stdout.some((line) => /INFO.*no state yet: this is the first poll of the account/.test(line)),
        once.stdout.join('\n'),
      ).toBe(true);
      expect(once.stdout.filter((line) => line.startsWith('{'))).toEqual([]);
    } finally {
      await api.close();
    }
  });

  it('reads a config from dist/ alone (no src/ beside it)', () => {
    const config = tmp.write('riskwatch.yaml', configYaml());
    const result = riskwatch(['check-config', '--config', config]);
    expect(result.stderr).toBe('');
    expect(result.status).toBe(0);
    expect(fs.readdirSync(app).sort()).toEqual(['bin', 'dist']);
  });

  it('takes a config naming every sink type, and once --dry-run builds each sink from its chunk and sends nothing', { timeout: 60_000 }, async () => {
    const api = await FakeRiskApi.start({ auth: { token: 'cf-sinks-token' } });
    const receiver = await Receiver.start();
    const env = { CF_TOKEN: 'cf-sinks-token', PD_ROUTING_KEY: 'R0UT1NGKEYbundlepagerduty0000042', GENIE_KEY: 'genie-bundle-key-8e1f', TMPDIR: tmp.dir, PATH };
    const file = writeDaemonConfig(path.join(tmp.dir, 'sinks.yaml'), {
      apiBaseUrl: api.baseUrl,
      state: path.join(tmp.dir, 'sinks.db'),
      firstRun: 'notify',
      logLevel: 'warn',
      sinks: `${webhookSinkYaml('hook', receiver.url('/hook'))}  - name: chat
    type: slack
    url: ${receiver.url('/slack')}
  - name: oncall
    type: pagerduty
    routing_key: \${PD_ROUTING_KEY}
    url: ${receiver.url('')}
  - name: genie
    type: opsgenie
    api_key: \${GENIE_KEY}
    url: ${receiver.url('')}
  - name: channel
    type: teams
    url: ${receiver.url('/teams')}
  - name: mail
    type: email
    smtp: smtp://127.0.0.1:9
    from: riskwatch@example.com
    to: secops@example.com
  - name: screen
    type: console
`,
    });
    api.account(ACCOUNT).users.set(user(3).user_id, user(3, 'high'));
    const sinks = ['hook', 'chat', 'oncall', 'genie', 'channel', 'mail', 'screen'];
    try {
      const check = spawnRiskwatch(['check-config', '--config', file], env, [], [path.join(app, 'bin', 'riskwatch')]);
      expect(await check.exited, check.stderr.join('\n')).toBe(0);
      for (const sink of sinks) expect(check.stdout.join('\n')).toContain(sink);
      // check-config only validates; a sink's module is loaded when the sink is built, as once --dry-run does.
      const dry = spawnRiskwatch(['once', '--dry-run', '--config', file], env, [], [path.join(app, 'bin', 'riskwatch')]);
      expect(await dry.exited, [...dry.stdout, ...dry.stderr].join('\n')).toBe(0);
      expect(dry.stderr).toEqual([]);
      expect(dry.stdout.filter((line) => !line.startsWith('{'))).toEqual([
        expect.stringMatching(new RegExp(`\\[production\\] user\\.risk_level_raised .*<${user(3).email}> .* -> to ${sinks.join(', ')}$`)),
        'dry run: 1 event in 1 account polled; nothing committed, nothing sent',
      ]);
      expect(receiver.requests).toEqual([]);
    } finally {
      await Promise.all([api.close(), receiver.close()]);
    }
  });
});
