/**
 * An MSSP's shape (issue 28): many accounts of many users on one `run`
 * process, and the same accounts over replicas sharing one PostgreSQL. The
 * fake Cloudflare API runs here, in the bench's process, serving every account
 * the same users (one table shared by all, so that the fake costs little); each
 * riskwatch is `bin/riskwatch run` as a process of its own, so only its memory
 * is counted. No user changes level: what is measured is the cost of keeping
 * up, not of announcing.
 *
 * For each process: its resident memory (VmRSS from /proc, the median of
 * samples taken while the measured rounds run, and the peak, VmHWM, which
 * includes the first round that stores every user), MB per account (resident
 * memory over the accounts it polls), the CPU it spent per round, and the
 * time of a full round: from the start of the round's first poll to the
 * commit of its last, read from the daemon's own log (each poll's "poll
 * committed" line at debug, with its duration). A round is every account's
 * k-th poll; the first, which stores every user, is left out, and the median
 * of the next MSSP_ROUNDS is kept. /metrics is scraped once an interval, as
 * Prometheus would.
 *
 * Replicas: MSSP_REPLICAS `run` processes on one fresh PostgreSQL database
 * (RISKWATCH_TEST_DATABASE_URL's server when set, else a throwaway server
 * started by test/support/postgres.ts). Once the accounts are shared out
 * evenly, each replica is reloaded (SIGHUP), which starts its accounts' polls
 * together again, so that a round has a beginning and an end as on one
 * process; the round after the reload (which reads each account's state back
 * from the database) is left out.
 *
 *   npx node bench/mssp.ts      # prints one JSON line
 *   MSSP_ACCOUNTS=100 MSSP_USERS=1000 MSSP_REPLICAS=0 npx node bench/mssp.ts    # a quick run, one process only
 */
import { type ChildProcess, spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import type { RiskUser } from '../src/model.ts';
import { FakeRiskApi, UserTable } from '../src/simulator/fake-api.ts';
import { DEMO_BEHAVIORS } from '../src/simulator/scenario.ts';
import { RUN_CONFIG_TAIL } from './floor.ts';
import { benchUser } from './history.ts';
import { median, percentile, statusMb } from './stats.ts';

const REPO = path.resolve(import.meta.dirname, '..');
const BIN = process.env.RISKWATCH_BIN ?? path.join(REPO, 'bin', 'riskwatch');

export const MSSP_ACCOUNTS = Number(process.env.MSSP_ACCOUNTS ?? 1000);
export const MSSP_USERS = Number(process.env.MSSP_USERS ?? 1000);
export const MSSP_INTERVAL_S = Number(process.env.MSSP_INTERVAL_S ?? 20);
/** Rounds measured after the first (which stores every user). */
const ROUNDS = Number(process.env.MSSP_ROUNDS ?? 3);
/** Replicas on PostgreSQL; 0 leaves that part out. */
const REPLICAS = Number(process.env.MSSP_REPLICAS ?? 3);
/** The first round stores a million users: allow it time on a busy machine. */
const BASELINE_TIMEOUT_MS = 15 * 60_000;

/** What one riskwatch process held and how fast it went round its accounts. */
export interface MsspProcessResult {
  /** Accounts it polled in the measured rounds. */
  readonly accounts: number;
  /** Median of VmRSS samples over the measured rounds. */
  readonly rssMb: number;
  /** RssAnon at the same moments: what the process allocated, without Node's binary and libraries. */
  readonly anonMb: number;
  /** VmHWM at the end: the peak, first round included. */
  readonly peakRssMb: number;
  /** From its /metrics (median of the scrapes): V8's heap as reserved and as used, and the memory outside it that V8 knows of (typed arrays' storage). */
  readonly heapTotalMb: number;
  readonly heapUsedMb: number;
  readonly externalMb: number;
  readonly mbPerAccount: number;
  /** Median of the measured rounds: the first poll's start to the last poll's commit. */
  readonly roundMs: number;
  readonly roundsMs: readonly number[];
  /** CPU time (user + system) per interval over the measured rounds. */
  readonly cpuSPerRound: number;
  /** One poll's time, start to commit, over the measured rounds. */
  readonly pollMs: { readonly p50: number; readonly p99: number };
  /** Polls that failed during the whole run. */
  readonly failedPolls: number;
}

export interface MsspResult {
  readonly accounts: number;
  readonly usersPerAccount: number;
  readonly intervalS: number;
  readonly rounds: number;
  /** Every account on one process, SQLite state. */
  readonly one: MsspProcessResult & { readonly firstRoundMs: number };
  /** The same accounts over replicas on one PostgreSQL, or why not measured. */
  readonly replicas: readonly MsspProcessResult[] | { readonly skipped: string };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function accountId(i: number): string {
  return `a55e7${i.toString(16).padStart(27, '0')}`;
}
const label = (i: number) => `mssp-${String(i).padStart(5, '0')}`;

/** VmRSS, RssAnon and VmHWM in MB, and CPU seconds (user + system) so far. */
function usage(pid: number): { rss: number; anon: number; hwm: number; cpuS: number } {
  const mb = statusMb(pid);
  const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  // utime and stime (fields 14 and 15 of stat, counted from the state as 3) in clock ticks, 100 a second on Linux.
  const cpuS = (Number(fields[11]) + Number(fields[12])) / 100;
  return { rss: mb('VmRSS'), anon: mb('RssAnon'), hwm: mb('VmHWM'), cpuS };
}

/** One poll as the daemon logged it: when it committed (or failed) and how long it took. */
interface Poll {
  readonly end: number;
  readonly ms: number;
  readonly failed: boolean;
}

/** A `bin/riskwatch run` child, its polls collected from its log per account. */
class Riskwatch {
  readonly proc: ChildProcess;
  /** Each account's polls, by label, in order. */
  readonly polls = new Map<string, Poll[]>();
  failed = 0;
  #http: string | undefined;
  readonly #waiters = new Set<() => void>();
  readonly #exited: Promise<never>;

  constructor(config: string, env: NodeJS.ProcessEnv = {}) {
    this.proc = spawn(BIN, ['run', '--config', config], { stdio: ['ignore', 'pipe', 'inherit'], env: { ...process.env, ...env } });
    this.#exited = new Promise((_, reject) => this.proc.once('exit', (code, signal) => reject(new Error(`riskwatch exited ${code ?? signal}`))));
    this.#exited.catch(() => {});
    createInterface({ input: this.proc.stdout! }).on('line', (line) => this.#line(line));
  }

  #line(line: string): void {
    if (!line.startsWith('{')) return;
    // Only the lines this bench reads are parsed: a thousand polls an interval otherwise.
    if (!line.includes('committed') && !line.includes('poll failed') && !line.includes('riskwatch started') && !line.includes('config reloaded')) return;
    const entry = JSON.parse(line) as { msg: string; time: number; account?: string; ms?: number; http?: string };
    if (entry.msg === 'riskwatch started') this.#http = entry.http;
    else if (entry.msg === 'config reloaded') this.reloadedAt = entry.time;
    else if (entry.account !== undefined && (entry.msg === 'poll committed' || entry.msg === 'first poll of the account committed' || entry.msg.startsWith('poll failed'))) {
      const failed = entry.msg.startsWith('poll failed');
      if (failed) this.failed++;
      const list = this.polls.get(entry.account) ?? [];
      this.polls.set(entry.account, list);
      list.push({ end: entry.time, ms: entry.ms ?? 0, failed });
    }
    for (const check of this.#waiters) check();
  }

  reloadedAt: number | undefined;

  get pid(): number {
    return this.proc.pid!;
  }

  get base(): string {
    return `http://${this.#http}`;
  }

  /** Resolves once `ready()` holds, checked at every line the bench reads (and every second). */
  until(ready: () => boolean, timeoutMs: number, what: string): Promise<void> {
    return new Promise((resolve, reject) => {
      const check = () => {
        if (!ready()) return;
        this.#waiters.delete(check);
        clearInterval(ticker);
        clearTimeout(timer);
        resolve();
      };
      const ticker = setInterval(check, 1000);
      const timer = setTimeout(() => {
        this.#waiters.delete(check);
        clearInterval(ticker);
        reject(new Error(`riskwatch (pid ${this.pid}): ${what} not within ${timeoutMs / 1000} s`));
      }, timeoutMs);
      this.#waiters.add(check);
      this.#exited.catch((error: unknown) => {
        this.#waiters.delete(check);
        clearInterval(ticker);
        clearTimeout(timer);
        reject(error);
      });
      check();
    });
  }

  started(): Promise<void> {
    return this.until(() => this.#http !== undefined, 120_000, 'start');
  }

  /** Accounts this process leads, from /readyz (every account when it is not a replica). */
  async leads(): Promise<string[] | undefined> {
    const body = (await (await fetch(`${this.base}/readyz`)).json()) as { leads?: string[] };
    return body.leads;
  }

  /** /metrics, as Prometheus scrapes it; the process's own memory figures from it, in MB. */
  async scrape(): Promise<{ heapTotal: number; heapUsed: number; external: number }> {
    const text = await (await fetch(`${this.base}/metrics`)).text();
    const value = (name: string) => Number(new RegExp(`^riskwatch_${name} (\\S+)$`, 'm').exec(text)?.[1] ?? NaN) / 1024 / 1024;
    return { heapTotal: value('nodejs_heap_size_total_bytes'), heapUsed: value('nodejs_heap_size_used_bytes'), external: value('nodejs_external_memory_bytes') };
  }

  async stop(): Promise<void> {
    if (this.proc.exitCode !== null || this.proc.signalCode !== null) return;
    const gone = new Promise((r) => this.proc.once('exit', r));
    this.proc.kill('SIGTERM');
    await gone;
  }
}

/** The polls of `accounts` that ended after `since`, by account. */
function pollsSince(rw: Riskwatch, accounts: readonly string[], since: number): Poll[][] {
  return accounts.map((account) => (rw.polls.get(account) ?? []).filter((p) => p.end > since));
}

/** Round k of these accounts: every account's k-th poll, from the first one's start to the last one's end. */
function roundMs(polls: readonly (readonly Poll[])[], k: number): number {
  const round = polls.map((list) => list[k]!);
  return Math.max(...round.map((p) => p.end)) - Math.min(...round.map((p) => p.end - p.ms));
}

/**
 * Measures `rw` from the moment each of `accounts` has polled `skip` times since `since`: the next
 * `ROUNDS` rounds, memory sampled while they run, /metrics scraped once an interval.
 */
async function measureRounds(rw: Riskwatch, accounts: readonly string[], since: number, skip: number): Promise<MsspProcessResult> {
  const done = (n: number) => () => pollsSince(rw, accounts, since).every((list) => list.length >= n);
  await rw.until(done(skip), BASELINE_TIMEOUT_MS, `${skip} polls of every account`);
  const cpuAtStart = usage(rw.pid).cpuS;
  const samples: ReturnType<typeof usage>[] = [];
  const scrapes: Awaited<ReturnType<Riskwatch['scrape']>>[] = [];
  let finished = false;
  const finishing = rw.until(done(skip + ROUNDS), (ROUNDS + 2) * MSSP_INTERVAL_S * 4000, `${ROUNDS} more rounds`).finally(() => (finished = true));
  // Memory is read from the second measured round on (the first may still carry the one before's garbage).
  await rw.until(done(skip + 1), (MSSP_INTERVAL_S + 5) * 4000, 'a round').catch(() => {});
  let lastScrape = 0;
  while (!finished) {
    if (Date.now() - lastScrape >= MSSP_INTERVAL_S * 1000) {
      lastScrape = Date.now();
      const scraped = await rw.scrape().catch(() => undefined);
      if (scraped) scrapes.push(scraped);
    }
    samples.push(usage(rw.pid));
    await Promise.race([sleep(3000), finishing.catch(() => {})]);
  }
  await finishing;
  const end = usage(rw.pid);
  const polls = pollsSince(rw, accounts, since);
  const roundsMs = Array.from({ length: ROUNDS }, (_, i) => roundMs(polls, skip + i));
  const measured = polls.flatMap((list) => list.slice(skip, skip + ROUNDS).map((p) => p.ms));
  const rssMb = median(samples.map((s) => s.rss));
  return {
    accounts: accounts.length,
    rssMb,
    anonMb: median(samples.map((s) => s.anon)),
    peakRssMb: end.hwm,
    heapTotalMb: median(scrapes.map((m) => m.heapTotal)),
    heapUsedMb: median(scrapes.map((m) => m.heapUsed)),
    externalMb: median(scrapes.map((m) => m.external)),
    mbPerAccount: rssMb / accounts.length,
    roundMs: median(roundsMs),
    roundsMs,
    cpuSPerRound: (end.cpuS - cpuAtStart) / ROUNDS,
    pollMs: { p50: percentile(measured, 50), p99: percentile(measured, 99) },
    failedPolls: rw.failed,
  };
}

function configText(api: FakeRiskApi, state: string): string {
  const accounts = Array.from({ length: MSSP_ACCOUNTS }, (_, i) => `  - id: ${accountId(i + 1)}\n    name: ${label(i + 1)}\n`).join('');
  return `cloudflare:
  api_base_url: ${api.baseUrl}
  api_token: bench-token
  requests_per_5min: 100000
accounts:
${accounts}poll_interval: ${MSSP_INTERVAL_S}s
first_run: baseline
notify:
  enrich: false
state:
${state}
${RUN_CONFIG_TAIL}log:
  level: debug
`;
}

/** Every account on one process with SQLite state. */
async function measureOne(api: FakeRiskApi, dir: string): Promise<MsspResult['one']> {
  const config = path.join(dir, 'one.yaml');
  fs.writeFileSync(config, configText(api, `  sqlite: ${path.join(dir, 'state.db')}`));
  const rw = new Riskwatch(config);
  try {
    await rw.started();
    const labels = Array.from({ length: MSSP_ACCOUNTS }, (_, i) => label(i + 1));
    const result = await measureRounds(rw, labels, 0, 1);
    return { ...result, firstRoundMs: roundMs(pollsSince(rw, labels, 0), 0) };
  } finally {
    await rw.stop();
  }
}

/** A fresh database for the replicas, and how to be rid of it (and of the server, when started here). */
async function database(): Promise<{ url: string; drop: () => Promise<void> }> {
  const { default: pg } = await import('pg');
  const support = await import('../test/support/postgres.ts');
  const shared = process.env[support.TEST_DATABASE_URL_ENV];
  const server = shared ? undefined : await support.startPostgres();
  const serverUrl = shared ?? server!.url;
  const name = `riskwatch_mssp_${process.pid}_${Date.now()}`;
  const admin = new pg.Client({ connectionString: serverUrl });
  await admin.connect();
  await admin.query(`CREATE DATABASE ${name}`);
  await admin.end();
  const url = new URL(serverUrl);
  url.pathname = `/${name}`;
  return {
    url: url.toString(),
    drop: async () => {
      if (server) return server.stop();
      const again = new pg.Client({ connectionString: serverUrl });
      await again.connect();
      await again.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
      await again.end();
    },
  };
}

/** The same accounts over REPLICAS `run` processes on one PostgreSQL. */
async function measureReplicas(api: FakeRiskApi, dir: string): Promise<MsspResult['replicas']> {
  let db: Awaited<ReturnType<typeof database>>;
  try {
    db = await database();
  } catch (error) {
    return { skipped: `no PostgreSQL: ${(error as Error).message.split('\n')[0]}` };
  }
  const config = path.join(dir, 'replicas.yaml');
  fs.writeFileSync(config, configText(api, '  postgres: ${RW_DATABASE_URL}'));
  const replicas: Riskwatch[] = [];
  try {
    for (let i = 0; i < REPLICAS; i++) {
      const url = new URL(db.url);
      url.searchParams.set('application_name', `rw-mssp-${i + 1}`);
      replicas.push(new Riskwatch(config, { RW_DATABASE_URL: url.toString() }));
    }
    await Promise.all(replicas.map((r) => r.started()));
    // Shared out: every account led by one replica, none leading more than its share, twice in a row.
    const share = Math.ceil(MSSP_ACCOUNTS / REPLICAS);
    const deadline = Date.now() + BASELINE_TIMEOUT_MS;
    let leads: string[][] = [];
    for (let settled = 0; settled < 2; ) {
      if (Date.now() > deadline) throw new Error(`the replicas did not share out the accounts within ${BASELINE_TIMEOUT_MS / 1000} s`);
      await sleep(MSSP_INTERVAL_S * 250);
      leads = await Promise.all(replicas.map(async (r) => (await r.leads()) ?? []));
      const polled = new Set(replicas.flatMap((r) => [...r.polls.keys()]));
      const even = leads.reduce((n, l) => n + l.length, 0) === MSSP_ACCOUNTS && leads.every((l) => l.length <= share) && polled.size === MSSP_ACCOUNTS;
      settled = even ? settled + 1 : 0;
    }
    // A reload starts each replica's polls together again (it keeps its leases, so the same accounts);
    // its first round reads the state back, and is left out.
    const since = Date.now();
    for (const r of replicas) r.proc.kill('SIGHUP');
    await Promise.all(replicas.map((r) => r.until(() => r.reloadedAt !== undefined, 60_000, 'the reload')));
    return await Promise.all(replicas.map((r, i) => measureRounds(r, leads[i]!, Math.max(since, r.reloadedAt! - 1), 1)));
  } finally {
    await Promise.all(replicas.map((r) => r.stop()));
    await db.drop().catch(() => {});
  }
}

export async function measureMssp(): Promise<MsspResult> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'rw-bench-mssp-'));
  const api = await FakeRiskApi.start({ maxPerPage: 1000 });
  // One table of users served for every account: the fake's memory and time are not what is measured.
  const users = new UserTable();
  for (let n = 1; n <= MSSP_USERS; n++) users.set(benchUser(n).user_id, benchUser(n) as RiskUser);
  const shared = { users, behaviors: new Map(DEMO_BEHAVIORS.map((b) => [b.id, b])), events: new Map() };
  for (let i = 1; i <= MSSP_ACCOUNTS; i++) api.accounts.set(accountId(i), shared);
  api.fault = () => {
    // Requests are recorded for tests; a million of them must not be kept here.
    api.requests.length = 0;
    return undefined;
  };
  try {
    process.stderr.write(`mssp: ${MSSP_ACCOUNTS} accounts of ${MSSP_USERS} users on one process…\n`);
    const one = await measureOne(api, dir);
    process.stderr.write(`mssp: ${JSON.stringify(one)}\n`);
    if (REPLICAS > 0) process.stderr.write(`mssp: the same over ${REPLICAS} replicas on PostgreSQL…\n`);
    const replicas = REPLICAS > 0 ? await measureReplicas(api, dir) : { skipped: 'MSSP_REPLICAS=0' };
    return { accounts: MSSP_ACCOUNTS, usersPerAccount: MSSP_USERS, intervalS: MSSP_INTERVAL_S, rounds: ROUNDS, one, replicas };
  } finally {
    await api.close();
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

if (import.meta.main) console.log(JSON.stringify(await measureMssp()));
