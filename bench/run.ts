/**
 * `npm run bench`: what riskwatch costs, measured the same way every time
 * against the repo's fake Cloudflare API on loopback. Prints a table with each
 * target met or missed and writes the same figures to bench/results.json.
 *
 *   BENCH_SIZES=10000,100000 npm run bench     # fewer sizes
 *   BENCH_MSSP=off npm run bench                # without the MSSP shape (bench/mssp.ts: a few minutes)
 */
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { RISK_LEVELS, type RiskUser } from '../src/model.ts';
import { HttpPool } from '../src/http.ts';
import { FakeRiskApi } from '../src/simulator/fake-api.ts';
import { DEMO_BEHAVIORS } from '../src/simulator/scenario.ts';
import { benchUser, EVENTS_PER_DAY, HISTORY_DAYS, measureHistory } from './history.ts';
import { BENCH_ACCOUNT, FLOOR_TOKEN, PAGE_CONCURRENCY, PAGE_SIZE } from './floor.ts';
import { measureIdle } from './idle.ts';
import { measureMssp, type MsspProcessResult, type MsspResult } from './mssp.ts';
import { measureStartup, shippedApp } from './startup.ts';
import { median, percentile } from './stats.ts';

const REPO = path.resolve(import.meta.dirname, '..');
const SIZES = (process.env.BENCH_SIZES ?? '10000,100000,1000000').split(',').filter(Boolean).map(Number);
/** Steady polls measured per size, alternating with as many floor polls. */
const POLLS = 9;
/** How `npm start` and the Docker image run Node (see docs/PERFORMANCE.md). */
const NODE_FLAGS = ['--max-semi-space-size=4', '--heap-growing-percent=100'];
const CHURN = 0.001;

interface Sample {
  wallMs: number;
  cpuMs: number;
  rowsWritten?: number;
  events?: number;
}

const user = benchUser;

/** A fake API holding `size` users; each poll (its first summary page) changes 0.1% of them. */
async function tenant(size: number, churn: boolean) {
  const api = await FakeRiskApi.start({ maxPerPage: PAGE_SIZE });
  const account = api.account(BENCH_ACCOUNT);
  for (let n = 1; n <= size; n++) account.users.set(user(n).user_id, user(n));
  for (const behavior of DEMO_BEHAVIORS) account.behaviors.set(behavior.id, behavior);
  let next = 1;
  api.fault = (request) => {
    // Each poll of the cycle (not the floor's, which reads with a token of its own) sees 0.1% change.
    if (churn && request.call === 'summary' && request.query.get('page') === '1' && request.headers.authorization !== `Bearer ${FLOOR_TOKEN}`) {
      for (let i = 0; i < Math.max(1, size * CHURN); i++) {
        const n = ((next++ * 7919) % size) + 1;
        const current = account.users.get(user(n).user_id) as RiskUser;
        account.users.set(current.user_id, { ...current, max_risk_level: RISK_LEVELS[(RISK_LEVELS.indexOf(current.max_risk_level) + 1) % 3]! });
      }
    }
    // Requests are recorded for tests; a benchmark of millions of them must not keep them.
    api.requests.length = 0;
    return undefined;
  };
  return api;
}

/** A benchmark child (bench/poll-cycle.ts) that answers each line sent with one JSON line. */
function child(args: string[]): {
  next: () => Promise<Record<string, unknown>>;
  send: (line: string) => Promise<Record<string, unknown>>;
  end: () => Promise<Record<string, unknown>>;
} {
  const proc = spawn(process.execPath, [...NODE_FLAGS, ...args], { cwd: REPO, stdio: ['pipe', 'pipe', 'inherit'] });
  const lines = createInterface({ input: proc.stdout! })[Symbol.asyncIterator]();
  const exited = new Promise<never>((_, reject) => proc.once('exit', (code) => reject(new Error(`${args.join(' ')} exited ${code}`))));
  exited.catch(() => {}); // an exit is only an error while an answer is awaited
  const next = async () => {
    const line = await Promise.race([lines.next(), exited]);
    if (line.done) throw new Error(`${args.join(' ')} ended early`);
    return JSON.parse(line.value) as Record<string, unknown>;
  };
  const send = (line: string) => {
    proc.stdin!.write(`${line}\n`);
    return next();
  };
  return {
    next,
    send,
    /** Its last word (the peak RSS), once it is gone. */
    end: async () => {
      const last = await send('end');
      proc.stdin!.end();
      await exited.catch(() => {});
      return last;
    },
  };
}

function configFile(dir: string, apiBaseUrl: string, extra: { sink?: string; pollInterval?: string; firstRun?: string; sqlite?: string } = {}) {
  const file = path.join(dir, `riskwatch-${Math.random().toString(36).slice(2)}.yaml`);
  fs.writeFileSync(
    file,
    `cloudflare:
  api_base_url: ${apiBaseUrl}
  api_token: bench-token
  requests_per_5min: 100000
accounts:
  - id: ${BENCH_ACCOUNT}
    name: bench
poll_interval: ${extra.pollInterval ?? '1h'}
first_run: ${extra.firstRun ?? 'baseline'}
notify:
  enrich: false
state:
  sqlite: ${extra.sqlite ?? path.join(dir, 'bench.db')}
sinks:
${extra.sink ?? '  - name: hook\n    type: webhook\n    url: http://127.0.0.1:9/'}
http:
  listen: 127.0.0.1:0
log:
  level: info
`,
  );
  return file;
}

/** Spawns `run` and resolves with the ms from spawn to the first log line matching `msg`, then stops it. */
function timeToLine(config: string, msg: RegExp): Promise<number> {
  return new Promise((resolve, reject) => {
    const start = performance.now();
    const proc = spawn(process.execPath, [...NODE_FLAGS, 'src/main.ts', 'run', '--config', config], { cwd: REPO, stdio: ['ignore', 'pipe', 'inherit'] });
    // A log line renamed must fail the bench, not hang it.
    const timer = setTimeout(() => {
      proc.kill('SIGKILL');
      reject(new Error(`run printed no line matching ${msg} within 2 minutes`));
    }, 120_000);
    createInterface({ input: proc.stdout }).on('line', (line) => {
      if (msg.test(line)) {
        clearTimeout(timer);
        resolve(performance.now() - start);
        proc.kill('SIGKILL');
      }
    });
    proc.on('exit', (code, signal) => signal !== 'SIGKILL' && reject(new Error(`run exited ${code ?? signal} before "${msg}"`)));
  });
}

interface SizeResult {
  users: number;
  pagesPerPoll: number;
  requestsPerPoll: number;
  cycle: { wallMs: number; cpuMs: number; rowsWritten: number; changes: number; peakRssMb: number };
  baseline: { wallMs: number; rowsWritten: number; peakRssMb: number };
  floor: { wallMs: number; cpuMs: number; peakRssMb: number };
  cycleOverFloor: number;
  coldStartMs?: number;
  /** A whole `bin/riskwatch once` process against a whole process that only reads the pages (bench/floor.ts). */
  /** stateMs: of it, reading the account's stored levels (its log's figure), which the floor does not do. */
  once?: { ms: number; floorMs: number; overFloor: number; stateMs: number; shipped: { ms: number; overFloor: number } };
}

/** Wall time of a process from spawn to exit, and the lines it printed. */
function processMs(command: string, args: readonly string[], env: NodeJS.ProcessEnv = process.env): Promise<{ ms: number; lines: string[] }> {
  return new Promise((resolve, reject) => {
    const start = performance.now();
    const proc = spawn(command, args, { cwd: REPO, stdio: ['ignore', 'pipe', 'inherit'], env });
    const lines: string[] = [];
    createInterface({ input: proc.stdout! }).on('line', (line) => lines.push(line));
    proc.once('error', reject);
    proc.once('close', (code) => (code === 0 ? resolve({ ms: performance.now() - start, lines }) : reject(new Error(`${command} ${args.join(' ')} exited ${code}`))));
  });
}

/**
 * `once` as cron runs it, at a steady state (0.1% of the users changed per
 * run), from a clone (the sources) and as shipped (the bundle), each run
 * followed by a process that only reads the same pages; all use a compile
 * cache, filled by a first run that is left out.
 */
async function measureOnce(dir: string, apiBaseUrl: string, pages: number): Promise<NonNullable<SizeResult['once']>> {
  const config = configFile(dir, apiBaseUrl, { sink: '  - name: console\n    type: console' });
  const env = { ...process.env, NODE_COMPILE_CACHE: path.join(dir, 'compile-cache') };
  const shipped = shippedApp(dir);
  // Its own log says how long reading the stored levels took: the part of once that the floor has no share of.
  const once = async (bin: string) => {
    const { ms, lines } = await processMs(bin, ['once', '--config', config], env);
    const read = lines
      .filter((line) => line.startsWith('{'))
      .map((line) => JSON.parse(line) as { msg?: string; ms?: number })
      .find((line) => line.msg?.startsWith('the last committed poll of the account was read'));
    return { ms, stateMs: read?.ms ?? NaN };
  };
  const floor = async () => (await processMs(process.execPath, [...NODE_FLAGS, 'bench/floor.ts', apiBaseUrl, String(pages)], env)).ms;
  const ways = { clone: path.join(REPO, 'bin', 'riskwatch'), shipped };
  for (const bin of Object.values(ways)) await once(bin);
  await floor();
  type Run = { once: number; stateMs: number; floor: number };
  const runs = { clone: [] as Run[], shipped: [] as Run[] };
  for (let i = 0; i < 7; i++) {
    for (const [way, bin] of Object.entries(ways)) {
      const { ms, stateMs } = await once(bin);
      runs[way as keyof typeof ways].push({ once: ms, stateMs, floor: await floor() });
    }
  }
  const summary = (r: Run[]) => ({ ms: median(r.map((x) => x.once)), overFloor: median(r.map((x) => x.once / x.floor)) });
  const all = [...runs.clone, ...runs.shipped];
  return { ...summary(runs.clone), floorMs: median(all.map((r) => r.floor)), stateMs: median(all.map((r) => r.stateMs)), shipped: summary(runs.shipped) };
}

async function measureSize(size: number): Promise<SizeResult> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), `riskwatch-bench-${size}-`));
  const api = await tenant(size, true);
  try {
    const pages = Math.ceil(size / PAGE_SIZE);
    const baseline = (await child(['bench/poll-cycle.ts', 'baseline', api.baseUrl, dir]).next()) as unknown as { baseline: Sample; maxRssMb: number };
    // Both children wait, warmed up, and take turns: a cycle poll, then a floor poll, and so on.
    const cycleChild = child(['bench/poll-cycle.ts', 'cycle', api.baseUrl, dir]);
    const floorChild = child(['bench/poll-cycle.ts', 'floor', api.baseUrl, String(pages)]);
    await Promise.all([cycleChild.next(), floorChild.next()]);
    const cycle: Sample[] = [];
    const floor: Sample[] = [];
    for (let i = 0; i < POLLS; i++) {
      cycle.push((await cycleChild.send('poll')) as unknown as Sample);
      floor.push((await floorChild.send('poll')) as unknown as Sample);
    }
    const cycleRss = (await cycleChild.end()).maxRssMb as number;
    const floorRss = (await floorChild.end()).maxRssMb as number;
    const result: SizeResult = {
      users: size,
      pagesPerPoll: pages,
      requestsPerPoll: pages + 1,
      cycle: {
        wallMs: median(cycle.map((s) => s.wallMs)),
        cpuMs: median(cycle.map((s) => s.cpuMs)),
        rowsWritten: median(cycle.map((s) => s.rowsWritten ?? 0)),
        changes: Math.max(1, size * CHURN),
        peakRssMb: cycleRss,
      },
      baseline: { wallMs: baseline.baseline.wallMs, rowsWritten: baseline.baseline.rowsWritten ?? 0, peakRssMb: baseline.maxRssMb },
      floor: { wallMs: median(floor.map((s) => s.wallMs)), cpuMs: median(floor.map((s) => s.cpuMs)), peakRssMb: floorRss },
      // The median of each cycle poll over the floor poll that followed it: drift cancels out.
      cycleOverFloor: median(cycle.map((c, i) => c.wallMs / floor[i]!.wallMs)),
    };
    if (size === 100_000) result.once = await measureOnce(dir, api.baseUrl, pages);
    if (size === Math.max(...SIZES)) {
      // Cold start: process start until the state of `size` users is loaded and the first poll can diff.
      const starts: number[] = [];
      for (let i = 0; i < 3; i++) starts.push(await timeToLine(configFile(dir, api.baseUrl), /"msg":"the last committed poll of the account was read/));
      result.coldStartMs = median(starts);
    }
    return result;
  } finally {
    await api.close();
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

/** 10k events to a loopback webhook receiver (a process of its own): a burst for throughput, then a steady flow for latency. */
/**
 * The floor of the steady flow: a bare client (Node's HTTP client through the same HttpPool, 16 requests in
 * flight as the worker's window) posting 100 webhook-sized bodies a round to the same receiver, a round every
 * 300 ms, after one that opens the connections; each request's time from its round's start to its answer,
 * as an event's from its poll's commit.
 * No store, no rendering, no signing: what the daemon's sends cannot beat on this machine.
 */
async function deliveryFloor(url: string, rounds: number): Promise<{ p50Ms: number; p99Ms: number }> {
  const http = new HttpPool();
  const body = JSON.stringify({ type: 'user.risk_level_raised', timestamp: new Date().toISOString(), data: { padding: 'x'.repeat(1200) } });
  const times: number[] = [];
  let id = 0;
  try {
    // Round 0 opens the connections (the daemon's are open by its steady flow) and is not counted.
    for (let round = 0; round <= rounds; round++) {
      const start = performance.now();
      if (round === 1) times.length = 0;
      let sent = 0;
      const lane = async () => {
        for (; sent < 100; sent++) {
          const headers = { 'content-type': 'application/json', 'webhook-id': `floor-${id++}` };
          const response = await http.request(url, { method: 'POST', headers, body, signal: AbortSignal.timeout(30_000) });
          for await (const _ of response.body) void _;
          times.push(performance.now() - start);
        }
      };
      await Promise.all(Array.from({ length: 16 }, lane));
      await new Promise((r) => setTimeout(r, 300));
    }
  } finally {
    http.close();
  }
  return { p50Ms: percentile(times, 50), p99Ms: percentile(times, 99) };
}

async function measureDelivery(): Promise<{ events: number; eventsPerSecond: number; latency: { events: number; p50Ms: number; p99Ms: number }; floor: { p50Ms: number; p99Ms: number } }> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'riskwatch-bench-delivery-'));
  const receiver = child(['bench/receiver.ts']);
  const url = (await receiver.next()).url as string;
  const total = 10_000;
  const api = await tenant(total, false);
  try {
    // Burst: the first poll announces all 10,000 users (first_run: notify) at once, and the tenant's behaviors.
    const config = configFile(dir, api.baseUrl, { sink: `  - name: hook\n    type: webhook\n    url: ${url}`, pollInterval: '1s', firstRun: 'notify' });
    const proc = spawn(process.execPath, [...NODE_FLAGS, 'src/main.ts', 'run', '--config', config], { cwd: REPO, stdio: ['ignore', 'ignore', 'inherit'] });
    const deadline = Date.now() + 120_000;
    let burst = (await receiver.send('count')) as { count: number; first: number; last: number };
    while (burst.count < total + DEMO_BEHAVIORS.length && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 50));
      burst = (await receiver.send('count')) as { count: number; first: number; last: number };
    }
    const eventsPerSecond = (burst.count / (burst.last - burst.first)) * 1000;

    // Steady flow: 100 users rise each second for 20 s; latency from detection (the event's timestamp) to receipt.
    await receiver.send('latencies');
    const account = api.account(BENCH_ACCOUNT);
    for (let second = 0; second < 20; second++) {
      for (let i = 0; i < 100; i++) {
        // Users 3, 6, 9, … start low: each rises to high once.
        const n = (second * 100 + i + 1) * 3;
        account.users.set(user(n).user_id, { ...user(n), max_risk_level: 'high' });
      }
      await new Promise((r) => setTimeout(r, 1000));
    }
    await new Promise((r) => setTimeout(r, 2000));
    const latencies = (await receiver.send('latencies')).latencies as number[];
    proc.kill('SIGTERM');
    await new Promise((r) => proc.once('exit', r));
    const floor = await deliveryFloor(url, 20);
    return { events: total, eventsPerSecond, latency: { events: latencies.length, p50Ms: percentile(latencies, 50), p99Ms: percentile(latencies, 99) }, floor };
  } finally {
    await receiver.end();
    await api.close();
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

const sizes: SizeResult[] = [];
for (const size of SIZES) {
  process.stderr.write(`measuring a poll cycle at ${size.toLocaleString('en')} users…\n`);
  sizes.push(await measureSize(size));
}
process.stderr.write('measuring delivery…\n');
const delivery = await measureDelivery();
process.stderr.write(`measuring the operator commands' queries on ${HISTORY_DAYS} days of history (about a minute to build)…\n`);
const history = await measureHistory();
process.stderr.write('measuring how fast the operator commands start…\n');
const startup = await measureStartup();
process.stderr.write('measuring what run holds while idle…\n');
const idle = await measureIdle();
let mssp: MsspResult | undefined;
if (process.env.BENCH_MSSP !== 'off') {
  process.stderr.write('measuring the MSSP shape: many accounts on one process, then over replicas (a few minutes)…\n');
  mssp = await measureMssp();
}

const mark = (ok: boolean) => (ok ? 'met' : 'MISSED');
const fmt = (n: number, digits = 0) => n.toLocaleString('en', { maximumFractionDigits: digits, minimumFractionDigits: digits });
const rows: string[][] = [['users', 'cycle wall', 'cycle CPU', 'floor wall', 'cycle/floor', 'peak RSS', 'rows written (changes)', 'requests/poll', 'first poll', 'its RSS']];
const targets: { what: string; value: string; ok: boolean }[] = [];
for (const s of sizes) {
  rows.push([
    fmt(s.users),
    `${fmt(s.cycle.wallMs)} ms`,
    `${fmt(s.cycle.cpuMs)} ms`,
    `${fmt(s.floor.wallMs)} ms`,
    fmt(s.cycleOverFloor, 2),
    `${fmt(s.cycle.peakRssMb)} MB`,
    `${fmt(s.cycle.rowsWritten)} (${fmt(s.cycle.changes)})`,
    fmt(s.requestsPerPoll),
    `${fmt(s.baseline.wallMs)} ms`,
    `${fmt(s.baseline.peakRssMb)} MB`,
  ]);
  if (s.users >= 100_000) targets.push({ what: `cycle/floor ≤ 1.3 at ${fmt(s.users)}`, value: fmt(s.cycleOverFloor, 2), ok: s.cycleOverFloor <= 1.3 });
  if (s.users === 100_000) targets.push({ what: 'peak RSS ≤ 150 MB at 100,000', value: `${fmt(s.cycle.peakRssMb)} MB`, ok: s.cycle.peakRssMb <= 150 });
  if (s.users === 1_000_000) targets.push({ what: 'peak RSS ≤ 250 MB at 1,000,000', value: `${fmt(s.cycle.peakRssMb)} MB`, ok: s.cycle.peakRssMb <= 250 });
  // Proportional: every change writes its user row, and the events, deliveries and version add a few more per change.
  targets.push({ what: `rows written ∝ changes at ${fmt(s.users)}`, value: `${fmt(s.cycle.rowsWritten)} for ${fmt(s.cycle.changes)}`, ok: s.cycle.rowsWritten <= 3 * s.cycle.changes + 10 });
  if (s.once) {
    targets.push({
      what: `once ≤ 1.4× a process that only reads the pages, at ${fmt(s.users)} (as shipped: the bundle)`,
      value: `${fmt(s.once.shipped.overFloor, 2)}× (${fmt(s.once.shipped.ms)} ms against ${fmt(s.once.floorMs)} ms; reading the stored levels alone: ${fmt(s.once.stateMs)} ms, ${fmt(s.once.stateMs / s.once.floorMs, 2)}× the floor)`,
      ok: s.once.shipped.overFloor <= 1.4,
    });
    targets.push({
      what: `once ≤ 1.4× a process that only reads the pages, at ${fmt(s.users)} (from a clone's sources)`,
      value: `${fmt(s.once.overFloor, 2)}× (${fmt(s.once.ms)} ms against ${fmt(s.once.floorMs)} ms)`,
      ok: s.once.overFloor <= 1.4,
    });
  }
  if (s.coldStartMs !== undefined) targets.push({ what: `cold start ≤ 3 s at ${fmt(s.users)}`, value: `${fmt(s.coldStartMs)} ms`, ok: s.coldStartMs <= 3000 });
}
targets.push({
  what: `run idle RSS ≤ 95 MB (one ${fmt(idle.users)}-user account)`,
  value: `${fmt(idle.rssMb)} MB (${fmt(idle.anonMb)} MB its own, ${fmt(idle.fileMb)} MB of Node's binary and libraries)`,
  ok: idle.rssMb <= 95,
});
targets.push({
  what: `run idle RSS ≤ 95 MB (one ${fmt(idle.users)}-user account; as shipped, first start in a fresh container)`,
  value: `${fmt(idle.shipped.rssMb)} MB (${fmt(idle.shipped.anonMb)} MB its own, ${fmt(idle.shipped.fileMb)} MB of Node's binary and libraries)`,
  ok: idle.shipped.rssMb <= 95,
});
targets.push({ what: 'webhook delivery ≥ 2,000 events/s', value: fmt(delivery.eventsPerSecond), ok: delivery.eventsPerSecond >= 2000 });
targets.push({
  what: 'delivery p99 ≤ 50 ms (detection to receipt)',
  value: `${fmt(delivery.latency.p99Ms)} ms (p50 ${fmt(delivery.latency.p50Ms)} ms; a bare client's 100 sends to the same receiver: p99 ${fmt(delivery.floor.p99Ms)} ms, p50 ${fmt(delivery.floor.p50Ms)} ms)`,
  ok: delivery.latency.p99Ms <= 50,
});

// The operator commands answer at once on a busy account's year of history (issue 16).
targets.push({
  what: 'events --user ≤ 20 ms (a year of history)',
  value: `${fmt(history.queries['events --user (a year, 100 newest)']!.ms, 1)} ms`,
  ok: history.queries['events --user (a year, 100 newest)']!.ms <= 20,
});
targets.push({
  what: 'users --level high ≤ 1 s (100,000 users)',
  value: `${fmt(history.queries['users --level high (with since)']!.ms)} ms`,
  ok: history.queries['users --level high (with since)']!.ms <= 1000,
});
// The web console (issue 27): every page within 50 ms on that 100,000-user account, and a few MB at most.
const slowest = Object.entries(history.pages).sort((a, b) => b[1].ms - a[1].ms)[0]!;
targets.push({
  what: 'console page ≤ 50 ms (100,000 users, a year of history)',
  value: `${fmt(slowest[1].ms, 1)} ms at most (${slowest[0]}); ${Object.entries(history.pages)
    .map(([name, p]) => `${name} ${fmt(p.ms, 1)}`)
    .join(', ')}`,
  ok: slowest[1].ms <= 50,
});
targets.push({
  what: 'console on adds ≤ 5 MB to run idle',
  value: `${fmt(idle.console.rssMb - idle.rssMb, 1)} MB (${fmt(idle.console.rssMb)} MB with it on, serving pages, against ${fmt(idle.rssMb)} MB off)`,
  ok: idle.console.rssMb - idle.rssMb <= 5,
});
// A CLI command costs little more than starting Node (issue 17): median of runs alternating with `node -e 0`,
// from a clone (the sources) and as the Docker image ships it (the bundle).
for (const [way, measured] of [
  ["from a clone's sources", startup.commands],
  ['as shipped: the bundle', startup.shipped],
] as const) {
  for (const [command, { ms, ratio, peakRssMb }] of Object.entries(measured)) {
    targets.push({ what: `${command} ≤ 3× a bare Node start (${way})`, value: `${fmt(ratio, 2)}× (${fmt(ms)} ms against ${fmt(startup.bareMs)} ms; ${fmt(peakRssMb)} MB)`, ok: ratio <= 3 });
  }
}
targets.push({ what: 'status ≤ 100 ms', value: `${fmt(history.queries.status!.ms, 1)} ms`, ok: history.queries.status!.ms <= 100 });

// An MSSP (issue 28): 1,000 accounts of 1,000 users on one process, and over replicas: each process within
// MSSP_MAX_MB, each of its rounds of polls within half its interval.
if (mssp) {
  const { one } = mssp;
  const shape = `${fmt(mssp.accounts)} × ${fmt(mssp.usersPerAccount)}`;
  const MSSP_MAX_MB = 300;
  const maxRoundMs = (mssp.intervalS * 1000) / 2;
  targets.push({
    what: `MSSP ${shape} on one process ≤ ${MSSP_MAX_MB} MB`,
    value: `${fmt(one.rssMb)} MB (${fmt(one.mbPerAccount, 3)} MB an account; peak ${fmt(one.peakRssMb)} MB; V8's heap ${fmt(one.heapTotalMb)} MB of which ${fmt(one.heapUsedMb)} in use, ${fmt(one.externalMb)} MB outside it)`,
    ok: one.rssMb <= MSSP_MAX_MB,
  });
  targets.push({
    what: `MSSP round ≤ ${fmt(maxRoundMs / 1000)} s at a ${fmt(mssp.intervalS)} s interval`,
    value: `${fmt(one.roundMs / 1000, 1)} s (${fmt(one.cpuSPerRound, 1)} s of CPU a round; a poll p50 ${fmt(one.pollMs.p50, 1)} ms, p99 ${fmt(one.pollMs.p99)} ms)`,
    ok: one.roundMs <= maxRoundMs,
  });
  if (!('skipped' in mssp.replicas)) {
    const replicas = mssp.replicas;
    targets.push({
      what: `MSSP ${shape} over ${replicas.length} replicas: each ≤ ${MSSP_MAX_MB} MB, each round ≤ ${fmt(maxRoundMs / 1000)} s`,
      value: replicas.map((p) => `${fmt(p.rssMb)} MB, ${fmt(p.roundMs / 1000, 1)} s`).join('; '),
      ok: replicas.every((p) => p.rssMb <= MSSP_MAX_MB && p.roundMs <= maxRoundMs),
    });
  }
}
const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
const line = (r: string[]) => r.map((c, i) => c.padStart(widths[i]!)).join('  ');
console.log(
  `\nriskwatch benchmark — ${os.cpus().length} cores, Node ${process.version} ${NODE_FLAGS.join(' ')}, page size ${PAGE_SIZE}, ${PAGE_CONCURRENCY} pages in flight, ${CHURN * 100}% of users changing per poll, median of ${POLLS} polls, cycle and floor polls alternating`,
);
console.log('cycle: a daemon started on stored state, steady polls; floor: the same pages only downloaded and parsed; first poll: the baseline that stores every user, in a process of its own\n');
console.log(line(rows[0]!));
for (const r of rows.slice(1)) console.log(line(r));
console.log(
  `\ndelivery: ${fmt(delivery.events)} events at ${fmt(delivery.eventsPerSecond)} events/s; steady flow of ${fmt(delivery.latency.events)} events: p50 ${fmt(delivery.latency.p50Ms)} ms, p99 ${fmt(delivery.latency.p99Ms)} ms; its floor (a bare client's rounds of 100 sends, 16 at a time, to the same receiver): p50 ${fmt(delivery.floor.p50Ms)} ms, p99 ${fmt(delivery.floor.p99Ms)} ms\n`,
);
console.log(`history: ${fmt(history.users)} users, ${fmt(history.events)} events over ${HISTORY_DAYS} days (${fmt(EVENTS_PER_DAY)} a day), a ${fmt(history.fileMb)} MB state file; median of 7:`);
for (const [query, { ms, rows: n }] of Object.entries(history.queries)) console.log(`  ${query.padEnd(40)} ${fmt(ms, 1).padStart(8)} ms  (${fmt(n)} rows)`);
if (mssp) {
  console.log(`\nMSSP: ${fmt(mssp.accounts)} accounts of ${fmt(mssp.usersPerAccount)} users, polled every ${fmt(mssp.intervalS)} s; median of ${mssp.rounds} rounds after the first:`);
  const show = (who: string, p: MsspProcessResult) =>
    console.log(
      `  ${who.padEnd(12)} ${fmt(p.accounts).padStart(5)} accounts  ${fmt(p.rssMb).padStart(4)} MB (${fmt(p.mbPerAccount, 3)} MB an account, peak ${fmt(p.peakRssMb)} MB)  round ${fmt(p.roundMs / 1000, 1)} s  CPU ${fmt(p.cpuSPerRound, 1)} s a round`,
    );
  show('one process', mssp.one);
  if ('skipped' in mssp.replicas) console.log(`  replicas: not measured (${mssp.replicas.skipped})`);
  else for (const [i, replica] of mssp.replicas.entries()) show(`replica ${i + 1}`, replica);
}
console.log('');
for (const t of targets) console.log(`${mark(t.ok).padEnd(6)}  ${t.what}: ${t.value}`);

const results = {
  date: new Date().toISOString(),
  machine: { cores: os.cpus().length, node: process.version },
  pageSize: PAGE_SIZE,
  pageConcurrency: PAGE_CONCURRENCY,
  churn: CHURN,
  polls: POLLS,
  sizes,
  delivery,
  history,
  startup,
  idle,
  mssp,
  targets,
};
fs.writeFileSync(path.join(REPO, 'bench', 'results.json'), `${JSON.stringify(results, null, 2)}\n`);
console.log('\nwritten to bench/results.json');
