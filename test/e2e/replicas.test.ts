import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import pg from 'pg';
import { afterEach, describe, expect, it } from 'vitest';
import { LEVEL_RANK, RISK_LEVELS, type RiskLevel } from '../../src/model.ts';
import { type ApiRequest, FakeRiskApi } from '../../src/simulator/fake-api.ts';
import { checkAnnouncements, fromWebhook, reachedLevels } from '../support/announcements.ts';
import { user } from '../support/cloudflare.ts';
import { freshDatabase, type PostgresServer, startPostgres } from '../support/postgres.ts';
import { killIfRunning, type RiskwatchProcess, spawnRiskwatch } from '../support/process.ts';
import { mulberry32 } from '../support/random.ts';
import { Receiver } from '../support/receiver.ts';

/**
 * Replicas sharing one PostgreSQL store, as real processes against the fake
 * API on loopback: each account is polled by one replica at a time, a dead
 * replica's accounts are taken over within two poll intervals, a replica
 * paused past its lease commits nothing stale, and a database restart loses
 * nothing. The invariants on what reaches the webhook are crash.test.ts's:
 * every rise delivered, none under two ids, none that did not happen.
 */

const INTERVAL_MS = 2000;
/** An account's lease lasts min(poll_interval, 30 s) (src/store/open.ts). */
const LEASE_MS = INTERVAL_MS;

/** LeadershipLostError's message, and StaleSnapshotError's. */
const LEASE_LOST = /does not hold its lease/;
const STALE_SNAPSHOT = /another poll committed first/;
/** What the daemon logs after a poll's commit went through. */
const COMMITTED = /^(first poll of the account committed|poll committed)$/;

// ---------------------------------------------------------------------------
// Cleanup: every process, server and directory a test made goes, pass or fail.

const cleanups: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  // Last made, first gone: the replicas before the servers they talk to.
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup().catch(() => {});
});

// ---------------------------------------------------------------------------
// A cluster: the fake API, a webhook receiver, one config file, N replicas.

interface Account {
  readonly id: string;
  readonly label: string;
}

const accountsOf = (n: number): Account[] => Array.from({ length: n }, (_, i) => ({ id: `a11ce5${(i + 1).toString(16).padStart(26, '0')}`, label: `acct-${String(i + 1).padStart(2, '0')}` }));

interface Readyz {
  ready: boolean;
  accounts: { account: string; reason: string }[];
  store?: string;
  replica?: string;
  leads?: string[];
}

interface LogLine {
  level: number;
  time: number;
  msg: string;
  ms?: number;
  account?: string;
  replica?: string;
}

class Replica {
  readonly name: string;
  /** Its Cloudflare token: the fake API tells the replicas' requests apart by it. */
  readonly token: string;
  /** Its PostgreSQL application_name, to find its sessions in pg_stat_activity. */
  readonly appName: string;
  readonly proc: RiskwatchProcess;
  base = '';

  constructor(name: string, configFile: string, databaseUrl: string) {
    this.name = name;
    this.token = `cf-token-replica-${name}`;
    this.appName = `rw-replica-${name}`;
    const url = new URL(databaseUrl);
    url.searchParams.set('application_name', this.appName);
    this.proc = spawnRiskwatch(['run', '--config', configFile], { CF_TOKEN: this.token, RW_DATABASE_URL: url.toString() });
    cleanups.push(() => killIfRunning(this.proc));
  }

  get pid(): number {
    return this.proc.child.pid!;
  }

  get running(): boolean {
    return this.proc.child.exitCode === null && this.proc.child.signalCode === null;
  }

  async started(): Promise<this> {
    const line = await this.proc.waitForLine(/"msg":"riskwatch started"/, 30_000);
    this.base = `http://${(JSON.parse(line) as { http: string }).http}`;
    return this;
  }

  async readyz(): Promise<{ status: number; body: Readyz }> {
    const res = await fetch(`${this.base}/readyz`, { signal: AbortSignal.timeout(3000) });
    return { status: res.status, body: (await res.json()) as Readyz };
  }

  async metrics(): Promise<string> {
    return (await fetch(`${this.base}/metrics`, { signal: AbortSignal.timeout(3000) })).text();
  }

  /** Its JSON log lines, from line `from` of stdout on. */
  logs(from = 0): LogLine[] {
    return this.proc.stdout.slice(from).flatMap((line) => {
      try {
        const parsed = JSON.parse(line) as unknown;
        return typeof parsed === 'object' && parsed !== null && 'msg' in parsed ? [parsed as LogLine] : [];
      } catch {
        return [];
      }
    });
  }

  ownsRequest(request: ApiRequest): boolean {
    return request.headers.authorization === `Bearer ${this.token}`;
  }
}

interface Cluster {
  readonly api: FakeRiskApi;
  readonly receiver: Receiver;
  readonly accounts: readonly Account[];
  readonly databaseUrl: string;
  start(name: string): Promise<Replica>;
  label(id: string): string;
  id(label: string): string;
}

async function cluster(accountCount: number, databaseUrl: string, logLevel: 'info' | 'debug' = 'info'): Promise<Cluster> {
  const api = await FakeRiskApi.start();
  cleanups.push(() => api.close());
  const receiver = await Receiver.start();
  cleanups.push(() => receiver.close());
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'rw-replicas-'));
  cleanups.push(async () => fs.rmSync(dir, { recursive: true, force: true }));
  const accounts = accountsOf(accountCount);
  for (const account of accounts) api.account(account.id);
  const configFile = path.join(dir, 'riskwatch.yaml');
  fs.writeFileSync(
    configFile,
    [
      'cloudflare:',
      `  api_base_url: ${api.baseUrl}`,
      '  api_token: ${CF_TOKEN}',
      'accounts:',
      ...accounts.flatMap((a) => [`  - id: ${a.id}`, `    name: ${a.label}`]),
      `poll_interval: ${INTERVAL_MS / 1000}s`,
      'first_run: notify',
      // One summary and one behaviors request per poll, nothing else: what the tests count.
      'notify:',
      '  enrich: false',
      'state:',
      '  postgres: ${RW_DATABASE_URL}',
      'sinks:',
      '  - name: hook',
      '    type: webhook',
      `    url: ${receiver.url('/hook')}`,
      'http:',
      '  listen: 127.0.0.1:0',
      'log:',
      `  level: ${logLevel}`,
      '',
    ].join('\n'),
  );
  const labels = new Map(accounts.map((a) => [a.id, a.label]));
  const ids = new Map(accounts.map((a) => [a.label, a.id]));
  return {
    api,
    receiver,
    accounts,
    databaseUrl,
    start: (name) => new Replica(name, configFile, databaseUrl).started(),
    label: (id) => labels.get(id)!,
    id: (label) => ids.get(label)!,
  };
}

/** Users in the fake API's accounts, and the level each is at now (by email, unique across accounts). */
class Population {
  readonly levels = new Map<string, RiskLevel>();
  readonly #api: FakeRiskApi;
  readonly #random: () => number;
  readonly #accountOf = new Map<number, string>();
  #next = 1;

  constructor(api: FakeRiskApi, random: () => number) {
    this.#api = api;
    this.#random = random;
  }

  set(n: number, level: RiskLevel): void {
    const u = { ...user(n), max_risk_level: level };
    this.#api.account(this.#accountOf.get(n)!).users.set(u.user_id, u);
    this.levels.set(u.email, level);
  }

  /** A new user at `level` in the account; returns its number. */
  add(accountId: string, level: RiskLevel = 'low'): number {
    const n = this.#next++;
    this.#accountOf.set(n, accountId);
    this.set(n, level);
    return n;
  }

  /** New users appear in some of the accounts, at low; some existing users rise one step. Levels only ever rise. */
  rise(accountIds: readonly string[]): void {
    for (const id of accountIds) if (this.#random() < 0.5) this.add(id);
    for (const [n, accountId] of this.#accountOf) {
      if (!accountIds.includes(accountId)) continue;
      const level = this.levels.get(user(n).email)!;
      if (level !== 'high' && this.#random() < 0.25) this.set(n, RISK_LEVELS[LEVEL_RANK[level]]!);
    }
  }
}

/** Polls `probe` every 100 ms until it gives a value (not undefined/false); throws after `timeoutMs` saying what was awaited. */
async function until<T>(what: string | (() => string), probe: () => T | undefined | false | Promise<T | undefined | false>, timeoutMs: number): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined && value !== false) return value;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${typeof what === 'function' ? what() : what}`);
    await delay(100);
  }
}

/**
 * Waits until every replica answers /readyz 200 and their leads are disjoint,
 * cover every account, and each holds its fair share or one less. Returns the
 * leads (account labels) per replica.
 */
async function settled(c: Cluster, replicas: readonly Replica[], timeoutMs = 30_000): Promise<string[][]> {
  const share = Math.ceil(c.accounts.length / replicas.length);
  let seen = '';
  return until(
    () => `${replicas.length} replicas to be ready with disjoint leads covering ${c.accounts.length} accounts, ${share - 1} or ${share} each; last seen: ${seen}`,
    async () => {
      const states = await Promise.all(replicas.map((r) => r.readyz().catch((error: unknown) => ({ status: 0, body: { error: String(error) } as unknown as Readyz }))));
      seen = JSON.stringify(states.map((s) => ({ status: s.status, leads: s.body.leads, store: s.body.store, accounts: s.body.accounts })));
      const leads = states.map((s) => s.body.leads ?? []);
      const all = leads.flat();
      const ok = states.every((s) => s.status === 200) && new Set(all).size === all.length && all.length === c.accounts.length && leads.every((l) => l.length === share || l.length === share - 1);
      return ok ? leads : undefined;
    },
    timeoutMs,
  );
}

/** Waits until the webhook has accepted every user's current level. */
async function allDelivered(c: Cluster, population: Population, seed: number, timeoutMs = 30_000): Promise<void> {
  await until(
    () => {
      const top = new Map(fromWebhook(c.receiver.accepted).map((a) => [a.email, a.to]));
      const missing = [...population.levels].filter(([email, level]) => top.get(email) !== level);
      return `every rise to reach the webhook (seed ${seed}); ${missing.length} users not at their level yet, e.g. ${JSON.stringify(missing.slice(0, 5))}`;
    },
    () => reachedLevels(fromWebhook(c.receiver.accepted), population.levels),
    timeoutMs,
  );
}

/** Summary requests (page 1: one per poll) per account id. */
function pollsByAccount(requests: readonly ApiRequest[]): Map<string, ApiRequest[]> {
  const polls = new Map<string, ApiRequest[]>();
  for (const r of requests) {
    if (r.call !== 'summary' || r.accountId === undefined || (r.query.get('page') ?? '1') !== '1') continue;
    polls.set(r.accountId, [...(polls.get(r.accountId) ?? []), r]);
  }
  return polls;
}

/** What a replica printed on stderr besides Node's own warnings (those are reported, not failed on): nothing escaped its logger. */
function expectQuietStderr(replica: Replica): void {
  const other = replica.proc.stderr.filter((line) => !/^\(node:\d+\) \w*Warning: |^\(Use `node --trace-/.test(line));
  expect(other, `replica ${replica.name}'s stderr`).toEqual([]);
}

/** Log lines saying a poll was fenced off or raced another: never in a steady state. */
const troubles = (replica: Replica, from = 0) => replica.logs(from).filter((l) => LEASE_LOST.test(l.msg) || STALE_SNAPSHOT.test(l.msg));

async function query<R extends pg.QueryResultRow>(url: string, text: string, values: unknown[] = []): Promise<R[]> {
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 5_000 });
  await client.connect();
  try {
    return (await client.query<R>(text, values)).rows;
  } finally {
    await client.end();
  }
}

const seedOf = () => Number(process.env.RISKWATCH_REPLICAS_SEED ?? Date.now() % 100_000);

// ---------------------------------------------------------------------------

describe('3 replicas and 20 accounts: every account is polled by exactly one replica', () => {
  it('spreads the accounts 7/7/6 over replicas started one by one, with disjoint leads, polls each account about once per interval from one replica, and logs no lost lease or stale snapshot', {
    timeout: 60_000,
  }, async () => {
    const seed = seedOf();
    const c = await cluster(20, await freshDatabase());
    const population = new Population(c.api, mulberry32(seed));
    for (const account of c.accounts) population.add(account.id);
    // One after the other, as in a rolling start: the first leads all 20, then gives up its extras to each newcomer.
    const replicas: Replica[] = [];
    for (const name of ['a', 'b', 'c']) {
      replicas.push(await c.start(name));
      await settled(c, replicas);
    }
    const leads = await settled(c, replicas);
    expect(leads.map((l) => l.length).sort()).toEqual([6, 7, 7]);
    await allDelivered(c, population, seed);

    // A steady window of three intervals: each account polled ~3 times, all by the replica that leads it.
    const marks = replicas.map((r) => r.proc.stdout.length);
    const from = Date.now();
    await delay(3 * INTERVAL_MS); // an observation window, not a wait for a condition
    const to = Date.now();
    const polls = pollsByAccount(c.api.requests.filter((r) => r.receivedAt >= from && r.receivedAt < to));
    const windowIntervals = (to - from) / INTERVAL_MS;
    for (const account of c.accounts) {
      const seen = polls.get(account.id) ?? [];
      const leader = replicas[leads.findIndex((l) => l.includes(account.label))]!;
      // 2–4 in three intervals: once per interval give or take the window's edges; two replicas polling it would make ~6.
      expect(seen.length, `${account.label}: summary polls in ${windowIntervals.toFixed(1)} intervals`).toBeGreaterThanOrEqual(2);
      expect(seen.length, `${account.label}: summary polls in ${windowIntervals.toFixed(1)} intervals`).toBeLessThanOrEqual(4);
      expect(
        seen.filter((r) => !leader.ownsRequest(r)).map((r) => r.headers.authorization),
        `${account.label}: polled by someone other than its leader ${leader.name}`,
      ).toEqual([]);
      const gaps = seen.slice(1).map((r, i) => r.receivedAt - seen[i]!.receivedAt);
      expect(Math.min(...gaps), `${account.label}: gaps between polls ${gaps.join(', ')} ms`).toBeGreaterThan(INTERVAL_MS / 2);
    }
    const total = [...polls.values()].reduce((n, p) => n + p.length, 0);
    expect(total / (c.accounts.length * windowIntervals), 'summary polls per account per interval').toBeLessThan(1.25);

    // Still the same split, and the metrics agree: exactly one replica reports each account as led.
    const after = await Promise.all(replicas.map((r) => r.readyz()));
    expect(after.map((s) => s.body.leads)).toEqual(leads);
    const leaderGauges = await Promise.all(replicas.map((r) => r.metrics()));
    for (const account of c.accounts) {
      const values = leaderGauges.map((text) => new RegExp(`^riskwatch_account_leader\\{account="${account.label}"\\} (\\d)$`, 'm').exec(text)?.[1]);
      expect(
        values.filter((v) => v === '1'),
        `${account.label}: riskwatch_account_leader per replica ${values.join('/')}`,
      ).toHaveLength(1);
    }
    for (const [i, replica] of replicas.entries()) {
      expect(troubles(replica, marks[i]), `replica ${replica.name} in the steady window`).toEqual([]);
      // Two replicas committing over each other is never right, settling or not.
      expect(
        replica.logs().filter((l) => STALE_SNAPSHOT.test(l.msg)),
        `replica ${replica.name}`,
      ).toEqual([]);
      expectQuietStderr(replica);
    }
    console.info(
      `replicas: leads ${leads.map((l) => l.length).join('/')}; ${total} summary polls of 20 accounts in ${windowIntervals.toFixed(2)} intervals (${(total / (20 * windowIntervals)).toFixed(2)} per account per interval)`,
    );
  });
});

describe('a replica joining, then one leaving', () => {
  it('moves only the share that changes hands, never has two replicas poll an account at once, and polls every account within 2 × poll_interval', { timeout: 60_000 }, async () => {
    // At debug every poll's commit is logged with its duration: when each replica's polls ran, to the millisecond.
    const c = await cluster(12, await freshDatabase(), 'debug');
    for (const account of c.accounts) c.api.account(account.id).users.set(user(1).user_id, user(1));
    const replicas = await Promise.all(['a', 'b', 'c'].map((name) => c.start(name)));
    const three = await settled(c, replicas);
    expect(three.map((l) => l.length)).toEqual([4, 4, 4]);

    // Joining: d's share (3) comes from the others' extras, one each; nobody else's accounts move.
    const from = Date.now();
    const d = await c.start('d');
    const four = await settled(c, [...replicas, d]);
    for (const [i, leads] of three.entries()) expect(four[i], `replica ${replicas[i]!.name} after d joined`).toEqual(leads.filter((l) => four[i]!.includes(l)));
    expect(four.slice(0, 3).map((l) => l.length)).toEqual([3, 3, 3]);
    expect(four[3]).toHaveLength(3);

    // Leaving (SIGTERM, as a rolling update does): only a's accounts move, and the rest stay where they were.
    const [a, b, cc] = replicas as [Replica, Replica, Replica];
    const leftAt = Date.now();
    a.proc.child.kill('SIGTERM');
    expect(await a.proc.exited).toBe(0);
    const left = await settled(c, [b, cc, d]);
    for (const [i, leads] of [four[1]!, four[2]!, four[3]!].entries())
      expect(
        left[i]!.filter((l) => leads.includes(l)),
        'kept through a leaving',
      ).toEqual(leads);
    expect(
      left
        .flat()
        .filter((l) => !four.slice(1).flat().includes(l))
        .sort(),
    ).toEqual([...four[0]!].sort());
    // Two intervals more, so that every account moved has been polled by its new leader since.
    await delay(2 * INTERVAL_MS); // an observation window, not a wait for a condition
    const to = Date.now();

    const everyone = [a, b, cc, d];
    let slowest = 0;
    for (const account of c.accounts) {
      // Each poll, start to commit, by replica, from the logs (from the last before d came); none may overlap another replica's.
      const polls = everyone
        .flatMap((r) =>
          r
            .logs()
            .filter((l) => l.account === account.label && COMMITTED.test(l.msg) && l.time >= from - INTERVAL_MS)
            .map((l) => ({ by: r.name, start: l.time - (l.ms ?? 0), end: l.time })),
        )
        .sort((x, y) => x.start - y.start);
      expect(polls.length, `${account.label}: polls committed from an interval before d started`).toBeGreaterThanOrEqual(2);
      // An account that changed hands was polled by both sides of the handover: the check below compares them.
      if (four[3]!.includes(account.label) || four[0]!.includes(account.label)) {
        expect(
          new Set(polls.map((p) => p.by)).size,
          `${account.label}: replicas that polled it: ${JSON.stringify(polls.map((p) => [p.by, p.start - from, p.end - from]))}; a left at ${leftAt - from}`,
        ).toBeGreaterThanOrEqual(2);
      }
      for (const [i, poll] of polls.entries()) {
        const overlapping = polls.slice(i + 1).filter((other) => other.by !== poll.by && other.start < poll.end);
        expect(overlapping, `${account.label}: a poll by ${poll.by} from ${poll.start} to ${poll.end} overlapped`).toEqual([]);
      }
      // And never left unpolled for more than two intervals, across the handovers.
      const times = (pollsByAccount(c.api.requests.filter((r) => r.receivedAt >= from && r.receivedAt < to)).get(account.id) ?? []).map((r) => r.receivedAt);
      const gaps = [times[0]! - from, ...times.slice(1).map((t, i) => t - times[i]!), to - times.at(-1)!];
      slowest = Math.max(slowest, ...gaps);
      expect(Math.max(...gaps), `${account.label}: polled at ${times.map((t) => t - from).join(', ')} ms after d started`).toBeLessThanOrEqual(2 * INTERVAL_MS);
    }
    for (const replica of everyone) {
      expect(troubles(replica), `replica ${replica.name}`).toEqual([]);
      expectQuietStderr(replica);
    }
    console.info(
      `replicas: leads 4/4/4, then ${four.map((l) => l.length).join('/')} with d, then ${left.map((l) => l.length).join('/')} without a; the longest an account went unpolled: ${slowest} ms (bound ${2 * INTERVAL_MS} ms)`,
    );
  });
});

describe('kill -9 of a leader while users rise', () => {
  it('has its accounts taken over within 2 × poll_interval, and every rise delivered, never under two ids, none spurious', { timeout: 60_000 }, async () => {
    const seed = seedOf();
    const random = mulberry32(seed);
    const c = await cluster(20, await freshDatabase());
    const population = new Population(c.api, random);
    for (const account of c.accounts) population.add(account.id);
    const replicas = await Promise.all(['a', 'b', 'c'].map((name) => c.start(name)));
    await settled(c, replicas);
    await allDelivered(c, population, seed);

    // Users rise every few hundred ms, in every account, until told to stop.
    const ids = c.accounts.map((a) => a.id);
    let rising = true;
    const riser = (async () => {
      while (rising) {
        population.rise(ids);
        await delay(200 + random() * 500);
      }
    })();
    cleanups.push(async () => {
      rising = false;
      await riser;
    });
    const before = c.receiver.accepted.length;
    await until('rises to flow to the webhook', () => c.receiver.accepted.length >= before + 10, 15_000);

    const victim = replicas[Math.floor(random() * replicas.length)]!;
    const survivors = replicas.filter((r) => r !== victim);
    const victimLeads = (await victim.readyz()).body.leads!.map((label) => c.id(label));
    expect(victimLeads.length).toBeGreaterThanOrEqual(6);
    // The kill comes while the victim sends alerts it claimed: every answer is held back 2 s (then
    // refused) until the store shows a delivery claimed by the victim that reached the receiver.
    // Those must go out again, from a survivor, under the same ids.
    const victimName = (await victim.readyz()).body.replica!;
    c.receiver.answer = () => ({ status: 503, delayMs: 2000 });
    const inFlight = await until(
      'the victim to send an alert it claimed',
      async () => {
        const claimed = await query<{ id: number; event_ids: string[] }>(
          c.databaseUrl,
          "SELECT id, event_ids FROM riskwatch.deliveries WHERE state = 'pending' AND leased_by = $1 AND leased_until > $2",
          [victimName, Date.now()],
        );
        const sent = new Set(c.receiver.requests.map((r) => r.headers['webhook-id']));
        const rows = claimed.filter((row) => row.event_ids.some((id) => sent.has(id)));
        return rows.length > 0 ? rows : undefined;
      },
      15_000,
    );
    const killedAt = Date.now();
    victim.proc.child.kill('SIGKILL');
    c.receiver.answer = () => ({ status: 200, body: 'ok' });
    expect(await victim.proc.exited).toBe('SIGKILL');
    // Its accounts really were its own: the last poll of each before the kill came from it.
    const beforeKill = pollsByAccount(c.api.requests.filter((r) => r.receivedAt < killedAt));
    for (const id of victimLeads) expect(victim.ownsRequest(beforeKill.get(id)!.at(-1)!), c.label(id)).toBe(true);

    // Taken over: the first poll of each of its accounts by a survivor, counted from the kill.
    const takeover = await until(
      () => {
        const polled = new Set(c.api.requests.filter((r) => r.call === 'summary' && r.receivedAt >= killedAt && !victim.ownsRequest(r)).map((r) => r.accountId));
        return `survivors to poll the victim's accounts; not yet: ${victimLeads
          .filter((id) => !polled.has(id))
          .map((id) => c.label(id))
          .join(', ')}`;
      },
      () => {
        const after = pollsByAccount(c.api.requests.filter((r) => r.receivedAt >= killedAt && !victim.ownsRequest(r)));
        const firsts = victimLeads.map((id) => after.get(id)?.[0]);
        return firsts.every((r) => r !== undefined) ? new Map(victimLeads.map((id, i) => [c.label(id), firsts[i]!.receivedAt - killedAt])) : undefined;
      },
      15_000,
    );
    const slowest = Math.max(...takeover.values());
    console.info(
      `replicas: kill -9 of replica ${victim.name} (${victimLeads.length} accounts, seed ${seed}); taken over after ${[...takeover.values()].sort((a, b) => a - b).join(', ')} ms (bound ${2 * INTERVAL_MS} ms)`,
    );
    expect(slowest, `takeover times per account: ${JSON.stringify(Object.fromEntries(takeover))}`).toBeLessThanOrEqual(2 * INTERVAL_MS);

    // The survivors share all 20 now, and keep polling them.
    await settled(c, survivors, 15_000);
    rising = false;
    await riser;
    population.rise(ids);
    await allDelivered(c, population, seed);

    checkAnnouncements('webhook', fromWebhook(c.receiver.accepted), population.levels, seed);
    checkAnnouncements('webhook (all attempts)', fromWebhook(c.receiver.requests), population.levels, seed);
    const accepted = new Set(c.receiver.accepted.map((r) => r.headers['webhook-id']));
    expect(
      inFlight.flatMap((row) => row.event_ids).filter((id) => !accepted.has(id)),
      'alerts in flight at the kill, not delivered since',
    ).toEqual([]);
    const settledRows = await query<{ state: string; leased_by: string }>(c.databaseUrl, 'SELECT state, leased_by FROM riskwatch.deliveries WHERE id = ANY($1::bigint[])', [
      inFlight.map((row) => row.id),
    ]);
    expect(
      settledRows.filter((row) => row.state !== 'delivered' || row.leased_by === victimName),
      'deliveries in flight at the kill, as stored now',
    ).toEqual([]);
    for (const replica of survivors) {
      expect(
        replica.logs().filter((l) => STALE_SNAPSHOT.test(l.msg)),
        `replica ${replica.name}`,
      ).toEqual([]);
      expectQuietStderr(replica);
    }
  });
});

describe('a replica paused (SIGSTOP) past its lease, then resumed', () => {
  it('does not commit the poll it had in flight: it logs the lost lease, and no transition is announced twice or spuriously', { timeout: 60_000 }, async () => {
    const seed = seedOf();
    const c = await cluster(2, await freshDatabase());
    const population = new Population(c.api, mulberry32(seed));
    const [a, b] = await Promise.all([c.start('a'), c.start('b')]);
    const leads = await settled(c, [a, b]);
    const aReplica = (await a.readyz()).body.replica!;
    // The account A leads; u is a user of it, announced at low.
    const x = c.id(leads[0]![0]!);
    const label = c.label(x);
    const u = population.add(x, 'low');
    await allDelivered(c, population, seed);

    // A's leadership check (lead(), every third of a lease) and its poll race when A resumes: had the
    // check run first, A would learn it leads x no more and abandon the poll before its commit (safe
    // too, but the fencing would go untested). So A's heartbeat, the check's first statement, is held
    // back by a row lock on A's row in riskwatch.replicas (the commit touches nothing there), taken a
    // little before A's next poll is due, so that A is stopped with no check half done, and kept
    // until the poll in flight has ended.
    const heartbeatLock = new pg.Client({ connectionString: c.databaseUrl, connectionTimeoutMillis: 5_000 });
    await heartbeatLock.connect();
    cleanups.push(() => heartbeatLock.end());
    const lastPoll = Math.max(...c.api.requests.filter((r) => r.call === 'summary' && r.accountId === x && a.ownsRequest(r)).map((r) => r.receivedAt));
    let lockAt = lastPoll + INTERVAL_MS - 400;
    while (lockAt < Date.now() + 50) lockAt += INTERVAL_MS;
    await delay(lockAt - Date.now()); // the moment is A's poll schedule's, no condition to wait for
    await heartbeatLock.query('BEGIN');
    const locked = await heartbeatLock.query('SELECT 1 FROM riskwatch.replicas WHERE replica = $1 FOR UPDATE', [aReplica]);
    expect(locked.rowCount, `A's row in riskwatch.replicas`).toBe(1);

    // u rises to medium. A's next summary request for x sees it: A is stopped the moment the fake API
    // has received both reads of that poll, its poll in flight (the answers, u at medium, wait in the
    // socket for A to read them). Both: when A's batch of the fleet budget runs out between the two
    // reads, the second waits for a grant from the database, and stopped then, A asks for it after its
    // lease lapsed; the budget grants nothing for an account another replica polls, so the poll waited
    // until A learned it leads x no more and ended unlogged (CI, once: no lost lease in A's log).
    population.set(u, 'medium');
    let pausedAt = 0;
    const sent = new Set<string>();
    c.api.fault = (request) => {
      if (pausedAt === 0 && (request.call === 'summary' || request.call === 'behaviors') && request.accountId === x && a.ownsRequest(request)) {
        sent.add(request.call);
        if (sent.size === 2) {
          process.kill(a.pid, 'SIGSTOP');
          pausedAt = Date.now();
        }
      }
      return undefined;
    };
    await until(`A's next reads of ${label}`, () => pausedAt > 0, 3 * INTERVAL_MS);
    const aMark = a.proc.stdout.length;
    const bMark = b.proc.stdout.length;
    // Stopped between two transactions, or inside one (the server ends that after its idle timeout): both happen.
    await delay(100);
    const openTransactions = (
      await query<{ n: number }>(c.databaseUrl, "SELECT count(*)::int AS n FROM pg_stat_activity WHERE application_name = $1 AND state = 'idle in transaction'", [a.appName])
    )[0]!.n;

    // B takes x over once A's lease lapses, and announces low -> medium, then medium -> high.
    await until(`B to lead ${label}`, () => b.logs(bMark).some((l) => l.msg === 'leads this account now' && l.account === label), 4 * LEASE_MS);
    const announced = (to: RiskLevel) => fromWebhook(c.receiver.accepted).some((an) => an.email === user(u).email && an.to === to);
    await until('B to announce u low -> medium', () => announced('medium'), 15_000);
    population.set(u, 'high');
    await until('B to announce u medium -> high', () => announced('high'), 15_000);
    expect(Date.now() - pausedAt, 'A stayed paused past its lease').toBeGreaterThan(LEASE_MS);
    expect(
      c.api.requests.filter((r) => r.call === 'summary' && a.ownsRequest(r) && r.receivedAt > pausedAt),
      'A sent nothing while stopped',
    ).toEqual([]);

    // A resumes with the stale answer (u at medium, over its stored low) and must not commit it.
    const resumedAt = Date.now();
    process.kill(a.pid, 'SIGCONT');
    const pollEnded = (l: LogLine) => l.account === label && (LEASE_LOST.test(l.msg) || STALE_SNAPSHOT.test(l.msg) || COMMITTED.test(l.msg) || l.msg.startsWith('poll failed'));
    await until(`A's poll of ${label} to end`, () => a.logs(aMark).some(pollEnded), 10_000).catch(() => {}); // what it said is checked below
    await heartbeatLock.query('ROLLBACK');
    await until(`A to see it leads ${label} no more`, () => a.logs(aMark).some((l) => l.msg === 'no longer leads this account' && l.account === label), 10_000);

    // Whatever A could have committed would be in the store by now; let a poll after resuming and the outbox settle too.
    await until('a poll of x by a replica after A resumed', () => c.api.requests.some((r) => r.call === 'summary' && r.accountId === x && r.receivedAt > resumedAt + 500), 10_000);
    await until('the outbox to drain', async () => (await query<{ n: number }>(c.databaseUrl, "SELECT count(*)::int AS n FROM riskwatch.deliveries WHERE state <> 'delivered'"))[0]!.n === 0, 15_000);
    await allDelivered(c, population, seed);

    // In the store: each of u's transitions is one event, one id; and none beyond none -> low -> medium -> high.
    const stored = (await query<{ id: string; body: string }>(c.databaseUrl, 'SELECT id, body FROM riskwatch.events WHERE account_id = $1', [x])).map((row) => {
      const event = JSON.parse(row.body) as { data: { user: { email: string }; previous_level: string | null; current_level: string } };
      return { email: event.data.user.email, from: event.data.previous_level ?? 'none', to: event.data.current_level, id: row.id };
    });
    expect(stored.map((e) => `${e.from}->${e.to}`).sort()).toEqual(['low->medium', 'medium->high', 'none->low']);
    checkAnnouncements('stored events', stored, population.levels, seed);
    checkAnnouncements('webhook', fromWebhook(c.receiver.accepted), population.levels, seed);
    checkAnnouncements('webhook (all attempts)', fromWebhook(c.receiver.requests), population.levels, seed);
    // And A says why: its commit found the lease gone.
    const aboutX = a.logs(aMark).filter((l) => l.account === label);
    expect(
      aboutX.filter((l) => COMMITTED.test(l.msg) || STALE_SNAPSHOT.test(l.msg)),
      'A committed, or tried against a stale snapshot, after resuming',
    ).toEqual([]);
    const lost = aboutX.find((l) => LEASE_LOST.test(l.msg));
    expect(lost, `A's log about ${label} after resuming: ${JSON.stringify(aboutX)}`).toMatchObject({ level: 40, account: label });
    expect(a.running && b.running, 'both replicas still run').toBe(true);
    for (const replica of [a, b]) expectQuietStderr(replica);
    console.info(`replicas: A paused ${resumedAt - pausedAt} ms (lease ${LEASE_MS} ms) with a poll in flight and ${openTransactions} transaction(s) open; on resuming it logged: ${lost!.msg}`);
  });
});

describe('the database restarted mid-run', () => {
  it('does not crash the replicas, loses nothing, reports 503 naming the store while it is down, and resumes polling by itself', { timeout: 60_000 }, async () => {
    const seed = seedOf();
    const random = mulberry32(seed);
    // A private server: the shared one serves other test files in parallel.
    const server: PostgresServer = await startPostgres();
    cleanups.push(() => server.stop());
    const c = await cluster(4, server.url);
    const population = new Population(c.api, random);
    const ids = c.accounts.map((a) => a.id);
    for (const id of ids) population.add(id);
    const replicas = await Promise.all(['a', 'b'].map((name) => c.start(name)));
    await settled(c, replicas);
    await allDelivered(c, population, seed);
    const alive = () =>
      expect(
        replicas.filter((r) => !r.running).map((r) => `${r.name}: ${r.proc.child.exitCode ?? r.proc.child.signalCode}`),
        'replicas that exited',
      ).toEqual([]);

    // Down: rises just before and during the outage.
    population.rise(ids);
    const marks = replicas.map((r) => r.proc.stdout.length);
    await server.pause();
    const downAt = Date.now();
    population.rise(ids);
    const whileDown = await Promise.all(
      replicas.map((r) =>
        until(
          `replica ${r.name} to answer /readyz 503 naming the store`,
          async () => {
            alive();
            const { status, body } = await r.readyz();
            return status === 503 && body.store !== undefined ? body : undefined;
          },
          15_000,
        ),
      ),
    );
    for (const body of whileDown) {
      expect(body.store).toContain(`state database postgres://riskwatch@127.0.0.1:${server.port}/postgres`);
      expect(body.ready).toBe(false);
    }
    for (const r of replicas) {
      await r.proc.waitForLine((line) => line.includes('the state store cannot be reached: polling pauses until it answers'), 10_000);
      expect((await fetch(`${r.base}/healthz`, { signal: AbortSignal.timeout(3000) })).status).toBe(200);
    }
    // Down for three poll intervals in all, users still rising.
    while (Date.now() - downAt < 3 * INTERVAL_MS) {
      population.rise(ids);
      alive();
      await delay(1000);
    }
    population.rise(ids);
    alive();
    expect(
      (await Promise.all(replicas.map((r) => r.readyz()))).map((s) => s.status),
      'still 503 at the end of the outage',
    ).toEqual([503, 503]);

    // Back: polling resumes by itself, and everything from around the outage comes out.
    await server.resume();
    const upAt = Date.now();
    for (const [i, r] of replicas.entries()) {
      await r.proc.waitForLine((line) => line.includes('the state store answers again: polling resumes'), 30_000);
      expect(r.logs(marks[i]).some((l) => l.msg === 'the state store cannot be reached: polling pauses until it answers')).toBe(true);
    }
    await settled(c, replicas, 30_000);
    const readyAt = Date.now();
    await allDelivered(c, population, seed);
    alive();

    // A restart (connections dropped under the replicas' feet), with rises on both sides of it.
    population.rise(ids);
    await server.restart();
    population.rise(ids);
    await settled(c, replicas, 30_000);
    await allDelivered(c, population, seed);
    alive();

    checkAnnouncements('webhook', fromWebhook(c.receiver.accepted), population.levels, seed);
    checkAnnouncements('webhook (all attempts)', fromWebhook(c.receiver.requests), population.levels, seed);
    for (const replica of replicas) {
      expect(
        replica.logs().filter((l) => STALE_SNAPSHOT.test(l.msg)),
        `replica ${replica.name}`,
      ).toEqual([]);
      // Nothing escaped the logger: no unhandled rejection, no stack trace.
      expectQuietStderr(replica);
    }
    console.info(
      `replicas: database down ${upAt - downAt} ms (plus pg_ctl's own stop/start), replicas ready again ${readyAt - upAt} ms after it was back; ${population.levels.size} users, seed ${seed}`,
    );
  });
});
