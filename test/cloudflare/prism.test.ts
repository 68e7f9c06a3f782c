import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { type Exchange, type PrismServer, RecordingProxy, startPrism } from '../support/prism.ts';
import { makeTempDir, type TempDir } from '../support/config-files.ts';
import { spawnRiskwatch } from '../support/process.ts';

/**
 * Contract test: riskwatch (the real CLI, `once`) against Prism serving
 * Cloudflare's published risk-scoring schema (vendored beside this file, see
 * schema/SOURCE.md). A recording proxy between the two keeps what Prism's
 * request validator said about each request (`sl-violations`).
 *
 * - Static Prism answers with the schema's examples: a summary that lists one
 *   user but claims 2000 over 100 pages, and answers page 2 with page 1.
 * - Dynamic Prism (`-d`) answers with random documents that follow the
 *   schema: every one of them must be accepted, nothing skipped as malformed.
 */

const SCHEMA_DIR = path.join(import.meta.dirname, 'schema');
const SPEC = path.join(SCHEMA_DIR, 'zt-risk-scoring.openapi.json');
const ACCOUNT_ID = '023e105f4ecef8ad9ca31a8372d0c353';
const API = `/accounts/${ACCOUNT_ID}/zt_risk_scoring`;
/** The one user of the schema's example summary. */
const EXAMPLE_USER = 'a169451c-8525-4352-b8ca-070dd449a1a5';

const TOKEN = 'cf-prism-token-5e0b9a7c31';
const EMAIL = 'secops@example.com';
const GLOBAL_KEY = '4f3c2b1a0d9e8f7a6b5c4d3e2f1a0b9c8d7e6';
/** The variables the configs refer to: their values are secrets by name, checked in every output. */
const ENV = { CF_TOKEN: TOKEN, CF_API_KEY: GLOBAL_KEY };

let staticPrism: PrismServer | undefined;
let dynamicPrism: PrismServer | undefined;
/**
 * A proxy of its own for each test (and for each poll of the dynamic test): a
 * request of an earlier `once` that Prism answers late, after that process has
 * exited, is then recorded by the earlier proxy, never among this test's exchanges.
 */
let staticProxy: RecordingProxy;
let tmp: TempDir;

beforeAll(async () => {
  // Both at once (Prism takes seconds to start); whichever started is stopped in afterAll even if the other failed.
  const probe = { probePath: `${API}/behaviors`, timeoutMs: 90_000 };
  const [statik, dynamic] = await Promise.allSettled([startPrism(SPEC, probe), startPrism(SPEC, { ...probe, dynamic: true })]);
  if (statik.status === 'fulfilled') staticPrism = statik.value;
  if (dynamic.status === 'fulfilled') dynamicPrism = dynamic.value;
  for (const outcome of [statik, dynamic]) if (outcome.status === 'rejected') throw outcome.reason;
}, 120_000);

afterAll(async () => {
  await Promise.all([staticPrism?.stop(), dynamicPrism?.stop()]);
}, 30_000);

beforeEach(async () => {
  tmp = makeTempDir();
  staticProxy = await RecordingProxy.start(staticPrism!.baseUrl);
});
afterEach(async () => {
  await staticProxy.close();
  tmp.remove();
});

interface ConfigOptions {
  readonly apiBaseUrl: string;
  readonly paging?: 'auto' | 'off';
  readonly credential?: 'token' | 'legacy';
  readonly enrich?: boolean;
}

/** A config polling the one account through `apiBaseUrl` into a state file of the temp dir, events on the console. */
function writeConfig(options: ConfigOptions): string {
  const credential = options.credential === 'legacy' ? { api_email: EMAIL, api_key: '${CF_API_KEY}' } : { api_token: '${CF_TOKEN}' };
  const doc = {
    cloudflare: {
      api_base_url: options.apiBaseUrl,
      ...credential,
      ...(options.paging ? { summary_paging: options.paging } : {}),
    },
    accounts: [{ id: ACCOUNT_ID, name: 'production' }],
    first_run: 'notify',
    notify: { enrich: options.enrich ?? true },
    state: { sqlite: path.join(tmp.dir, 'state.sqlite') },
    sinks: [{ name: 'console', type: 'console' }],
    http: { listen: '127.0.0.1:0' },
  };
  return tmp.write('riskwatch.yaml', stringify(doc));
}

interface OnceResult {
  readonly code: number | string;
  readonly stdout: readonly string[];
  readonly stderr: readonly string[];
}

/** `riskwatch once --config file`; rejects if any secret of ENV was printed. */
async function once(file: string): Promise<OnceResult> {
  const proc = spawnRiskwatch(['once', '--config', file], ENV);
  return { code: await proc.exited, stdout: proc.stdout, stderr: proc.stderr };
}

type LogLine = Record<string, unknown> & { level: number; msg: string };

/** The pino JSON lines of stdout. */
const logLines = (lines: readonly string[]): LogLine[] => lines.filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as LogLine);

/** The console sink's lines: `<time> [production] <event type> …`. */
const eventLines = (lines: readonly string[]) => lines.filter((l) => /^\d{4}-\d\d-\d\dT\S+ \[production\] (user|behavior)\.\S+ /.test(l));

const describeRun = (result: OnceResult) => `exit ${result.code}\nstdout:\n${result.stdout.join('\n')}\nstderr:\n${result.stderr.join('\n')}`;

/** Prism's validator accepted every request riskwatch sent, and answered each with a success. */
function expectValidRequests(exchanges: readonly Exchange[]): void {
  expect(exchanges.length).toBeGreaterThan(0);
  const refused = exchanges.filter((e) => e.violations !== undefined || e.status === undefined || e.status >= 400).map((e) => `${e.method} ${e.url} -> ${e.status ?? e.error} ${e.violations ?? ''}`);
  expect(refused).toEqual([]);
}

const isSummary = (e: Exchange) => new URL(e.url, 'http://x').pathname === `${API}/summary`;
const isBehaviors = (e: Exchange) => new URL(e.url, 'http://x').pathname === `${API}/behaviors`;
const userDetailId = (e: Exchange) => new URL(e.url, 'http://x').pathname.match(/\/zt_risk_scoring\/([0-9a-fA-F-]{36})$/)?.[1];

/** Every request carried the API token, and only it. */
function expectBearer(exchanges: readonly Exchange[]): void {
  for (const e of exchanges) {
    expect(e.headers.authorization === `Bearer ${TOKEN}`, `${e.url}: Authorization: Bearer <the token>`).toBe(true);
    expect(e.headers['x-auth-email'], e.url).toBeUndefined();
    expect(e.headers['x-auth-key'], e.url).toBeUndefined();
  }
}

describe('the vendored schema', () => {
  it('is the file SOURCE.md describes (its sha256)', () => {
    const source = fs.readFileSync(path.join(SCHEMA_DIR, 'SOURCE.md'), 'utf8');
    const recorded = /sha256 of this file: ([0-9a-f]{64})/.exec(source)?.[1];
    expect(recorded, 'SOURCE.md names the sha256 of the schema').toBeDefined();
    const actual = createHash('sha256').update(fs.readFileSync(SPEC)).digest('hex');
    expect(actual, 'the vendored schema was edited: replace it only with a new extract, and update SOURCE.md').toBe(recorded);
  });

  it('is served with its request validator on: a request without credentials gets 401 and sl-violations', async () => {
    const response = await fetch(`${staticProxy.baseUrl}${API}/summary`);
    await response.arrayBuffer();
    expect(response.status).toBe(401);
    expect(staticProxy.exchanges).toHaveLength(1);
    expect(staticProxy.exchanges[0]!.violations).toMatch(/security/i);
  });
});

describe('against the static examples', () => {
  it('default paging: the poll fails with one line naming cloudflare.summary_paging, and `once` exits 1', async () => {
    const result = await once(writeConfig({ apiBaseUrl: staticProxy.baseUrl }));
    expect(result.code, describeRun(result)).toBe(1);

    const output = [...result.stdout, ...result.stderr];
    const naming = output.filter((line) => line.includes('cloudflare.summary_paging'));
    expect(naming, describeRun(result)).toHaveLength(1);
    const [line] = logLines(naming);
    expect(line?.level, naming[0]).toBe(50);
    expect(line?.account).toBe('production');
    // One line: no newline inside it, no stack trace anywhere.
    expect(JSON.stringify(line)).not.toMatch(/\\n/);
    expect(output.filter((l) => /^\s+at /.test(l) || /"stack"/.test(l))).toEqual([]);

    // A failed poll commits and announces nothing.
    expect(eventLines(result.stdout)).toEqual([]);

    // It did ask for page 2 (that is how it noticed), but did not read all 100 claimed pages.
    const summaries = staticProxy.exchanges.filter(isSummary);
    expect(summaries.some((e) => new URL(e.url, 'http://x').searchParams.get('page') === '2')).toBe(true);
    expect(summaries.length).toBeLessThan(100);
    expectValidRequests(staticProxy.exchanges);
    expectBearer(staticProxy.exchanges);
  });

  it('summary_paging off: one summary request without paging parameters; `once` announces the example user and behaviors', async () => {
    const result = await once(writeConfig({ apiBaseUrl: staticProxy.baseUrl, paging: 'off' }));
    expect(result.code, describeRun(result)).toBe(0);

    const events = eventLines(result.stdout);
    // The example: user "string" <string> at low (enriched with its one risk event, also named "string");
    // behaviors property1 and property2, both "string", enabled, low.
    expect(events, describeRun(result)).toHaveLength(3);
    expect(events.filter((l) => / user\.risk_level_raised string <string> none -> low( \(string\))? \(event /.test(l))).toHaveLength(1);
    expect(events.filter((l) => / behavior\.added string \[property1\] enabled, low \(event /.test(l))).toHaveLength(1);
    expect(events.filter((l) => / behavior\.added string \[property2\] enabled, low \(event /.test(l))).toHaveLength(1);

    // The raised user is the example's: its risk events were asked for, and it is in the state.
    expect(staticProxy.exchanges.map(userDetailId).filter(Boolean)).toEqual([EXAMPLE_USER]);
    const db = new DatabaseSync(path.join(tmp.dir, 'state.sqlite'), { readOnly: true });
    try {
      expect(db.prepare('SELECT user_id FROM users').all()).toEqual([{ user_id: EXAMPLE_USER }]);
    } finally {
      db.close();
    }

    // One request, as the schema has it (no query parameters), taken as the whole summary ...
    const summaries = staticProxy.exchanges.filter(isSummary);
    expect(summaries.map((e) => e.url)).toEqual([`${API}/summary`]);
    // ... and what result_info claimed (2000 users, 100 pages) said once.
    const logs = logLines(result.stdout);
    expect(
      logs.filter((l) => /result_info/.test(l.msg) && /2000/.test(l.msg)),
      describeRun(result),
    ).toHaveLength(1);
    expect(logs.filter((l) => l.level >= 50 || /malformed|could not enrich/.test(l.msg))).toEqual([]);

    expectValidRequests(staticProxy.exchanges);
    expectBearer(staticProxy.exchanges);
  });

  it('the legacy X-Auth-Email + X-Auth-Key credential passes the validator too', async () => {
    const result = await once(writeConfig({ apiBaseUrl: staticProxy.baseUrl, paging: 'off', credential: 'legacy' }));
    expect(result.code, describeRun(result)).toBe(0);
    expect(eventLines(result.stdout)).toHaveLength(3);
    expectValidRequests(staticProxy.exchanges);
    for (const e of staticProxy.exchanges) {
      expect(e.headers['x-auth-email'], e.url).toBe(EMAIL);
      expect(e.headers['x-auth-key'] === GLOBAL_KEY, `${e.url}: X-Auth-Key: <the key>`).toBe(true);
      expect(e.headers.authorization, e.url).toBeUndefined();
    }
  });
});

describe('against random schema-following answers (prism -d)', () => {
  /** At least this many polls; more (up to MAX_POLLS) while no answer has listed a user yet (an empty list is a valid answer). */
  const POLLS = 4;
  const MAX_POLLS = 8;

  it(`accepts every answer over ${POLLS} polls with enrichment on: nothing skipped as malformed`, { timeout: 120_000 }, async () => {
    let usersSeen = 0;
    let enrichedSeen = 0;
    for (let poll = 1; poll <= POLLS || (usersSeen === 0 && poll <= MAX_POLLS); poll++) {
      const dynamicProxy = await RecordingProxy.start(dynamicPrism!.baseUrl);
      const result = await once(writeConfig({ apiBaseUrl: dynamicProxy.baseUrl, paging: 'off', enrich: true })).finally(() => dynamicProxy.close());
      const exchanges = [...dynamicProxy.exchanges];
      // On failure: what Prism answered, to see which field riskwatch refused.
      const context = `poll ${poll}: ${describeRun(result)}\nanswers:\n${exchanges.map((e) => `${e.method} ${e.url} -> ${e.status}\n${e.body}`).join('\n')}`;
      expect(result.code, context).toBe(0);

      const logs = logLines(result.stdout);
      // The one warning expected: with paging off, a result_info that claims more than the answer lists (random numbers).
      const unexpected = logs.filter((l) => l.level >= 40 && !/^cloudflare\.summary_paging is off: /.test(l.msg));
      expect(
        unexpected.map((l) => JSON.stringify(l)),
        context,
      ).toEqual([]);

      // One summary request, without paging parameters; every request valid.
      const summaries = exchanges.filter(isSummary);
      expect(
        summaries.map((e) => e.url),
        context,
      ).toEqual([`${API}/summary`]);
      expect(exchanges.filter(isBehaviors), context).toHaveLength(1);
      expectValidRequests(exchanges);
      expectBearer(exchanges);

      // Every user of the answer is announced (each poll's random users are new: raised from none) ...
      const users = (JSON.parse(summaries[0]!.body) as { result: { users: { user_id: string }[] } }).result.users;
      const distinct = new Set(users.map((u) => u.user_id.toLowerCase()));
      const events = eventLines(result.stdout);
      expect(
        events.filter((l) => / user\.risk_level_raised .* none -> (low|medium|high)\b/.test(l)),
        context,
      ).toHaveLength(distinct.size);
      // ... and on the first poll every behavior is added.
      if (poll === 1) {
        const behaviors = (JSON.parse(exchanges.find(isBehaviors)!.body) as { result: { behaviors: Record<string, unknown> } }).result.behaviors;
        expect(
          events.filter((l) => / behavior\.added /.test(l)),
          context,
        ).toHaveLength(Object.keys(behaviors).length);
      }
      // Raised users are enriched: their risk events asked for, each answer used (no "could not enrich" above).
      const enriched = exchanges.map(userDetailId).filter((id): id is string => id !== undefined);
      expect(enriched.length, context).toBe(Math.min(distinct.size, 10));
      for (const id of enriched) expect(distinct.has(id.toLowerCase()), `${id} was raised in poll ${poll}`).toBe(true);
      usersSeen += distinct.size;
      enrichedSeen += enriched.length;
    }
    // Not vacuous: some random users went through the whole way, enrichment included.
    expect(usersSeen).toBeGreaterThan(0);
    expect(enrichedSeen).toBeGreaterThan(0);
  });
});
