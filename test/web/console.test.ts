import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { Config } from '../../src/config/config.ts';
import { parseConfig } from '../../src/config/load.ts';
import { Secret } from '../../src/config/secret.ts';
import { startHttp } from '../../src/daemon/http.ts';
import { Metrics } from '../../src/daemon/metrics.ts';
import { PostgresStore } from '../../src/store/postgres.ts';
import { SqliteStore } from '../../src/store/sqlite.ts';
import type { StateStore } from '../../src/store/store.ts';
import { Access } from '../../src/web/access.ts';
import { createConsole } from '../../src/web/console.ts';
import { type ConfigDoc, configYaml, ENV, makeTempDir, type TempDir } from '../support/config-files.ts';
import { freshDatabase } from '../support/postgres.ts';
import { ACCOUNT, behavior, behaviorEvent, delta, OTHER_ACCOUNT, planned, pollCommit, riskUser, userEvent } from '../support/store-fixtures.ts';

/**
 * The web console and /api/ (SPEC §10) over real HTTP: a config parsed as the
 * daemon parses it, a real store seeded as polls leave it, startHttp with the
 * console as the daemon starts it, and fetch. The clock the console reads is
 * the test's own (fixed per test, moved only where a test says so).
 */

const TOKEN = 'rwtok-3f9a1c7e5b2d4086e1a9c3f7b5';
const OTHER_TOKEN = 'rwtok-0000000000000000000000000';
const XSS = '<img src=x onerror=alert(1)>';
const XSS_SHOWN = '&lt;img src=x onerror=alert(1)&gt;';
const BIDI_NAME = 'Mallory \u202egnp.exe';
const DEAD_ERROR = 'HTTP 404 from https://hooks.example.com/in/****: <script>alert(2)</script>';
const POLL_ERROR = 'HTTP 403: <b>the token lacks Zero Trust Read</b>';
const HOUR = 3_600_000;
const SESSION_MS = 12 * HOUR;

const iso = (ms: number) => new Date(ms).toISOString().replace(/\.\d{3}Z$/, 'Z');

/** What a few polls leave (times `at`): production users 1 (high, named XSS), 2 (medium, a bidi name), 3 (low); staging user 4 (high) and a failed poll. */
async function seed(store: StateStore, at: number) {
  const [u1, u2, u3, u4] = [riskUser(1, 'high', { name: XSS }), riskUser(2, 'medium', { name: BIDI_NAME }), riskUser(3, 'low'), riskUser(4, 'high')];
  const e1 = userEvent('evt-1', u1, null, 'high', at);
  const e2 = userEvent('evt-2', u2, null, 'medium', at);
  const b1 = behavior('b1', { enabled: false });
  const e3 = behaviorEvent('evt-3', b1, 'behavior.disabled', { enabled: true, risk_level: 'medium' }, at);
  const e4base = userEvent('evt-4', u4, null, 'high', at);
  const e4 = { ...e4base, data: { ...e4base.data, account: { ...OTHER_ACCOUNT } } };
  expect(await store.lead([ACCOUNT.id, OTHER_ACCOUNT.id])).toEqual(new Set([ACCOUNT.id, OTHER_ACCOUNT.id]));
  await store.commitPoll(
    pollCommit({
      polledAt: at,
      delta: delta({ upsertUsers: [u1, u2, u3], upsertBehaviors: [b1] }),
      events: [e1, e2, e3],
      deliveries: [planned('secops', [e1, e2]), planned('incidents', [e1]), planned('incidents', [e3])],
    }),
  );
  await store.commitPoll(pollCommit({ accountId: OTHER_ACCOUNT.id, polledAt: at, delta: delta({ upsertUsers: [u4] }), events: [e4] }));
  await store.recordPollFailure(OTHER_ACCOUNT.id, POLL_ERROR, at + 60_000);
  const dead = await store.claimDue('incidents', at + 1, 10);
  expect(dead).toHaveLength(2);
  await store.recordOutcomes(dead.map((d) => ({ deliveryId: d.id, outcome: { kind: 'dead', at: at + 2, error: DEAD_ERROR } as const })));
  const deadIds = Object.fromEntries(dead.map((d) => [d.events[0]!.id, d.id])) as Record<'evt-1' | 'evt-3', number>;
  return { users: { u1, u2, u3, u4 }, events: { e1, e2, e3, e4 }, dead: deadIds };
}

interface Reply {
  readonly status: number;
  readonly headers: Headers;
  readonly text: string;
  /** The body as JSON (throws when it is not). */
  // biome-ignore lint/suspicious/noExplicitAny: the tests read into the answers freely; toEqual checks their shape.
  json(): any;
}

interface CallInit {
  readonly method?: string;
  readonly headers?: Record<string, string>;
  /** Sent as application/json. */
  readonly json?: unknown;
  /** Sent as application/x-www-form-urlencoded. */
  readonly form?: Record<string, string>;
  /** Sent as it is, with the headers given. */
  readonly body?: string;
  readonly bearer?: string;
  readonly cookie?: string;
}

/** A console served over HTTP the way the daemon serves it, on a store of its own. */
interface Served {
  readonly store: StateStore;
  readonly config: Config;
  readonly port: number;
  readonly origin: string;
  /** What the console's clock says; a test may move it. */
  now: number;
  call(pathname: string, init?: CallInit): Promise<Reply>;
  /** A GET with exactly these headers (Host included), through node:http: fetch does not let a caller set Host. */
  raw(pathname: string, headers: Record<string, string>): Promise<{ status: number; headers: Record<string, string | string[] | undefined>; text: string }>;
}

type StoreKind = 'sqlite' | 'postgres';

let tmp: TempDir;
const cleanups: (() => Promise<void>)[] = [];
/** Every response any test received: none may carry the token. */
const seen: string[] = [];

beforeEach(() => {
  tmp = makeTempDir();
});
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
  tmp.remove();
  for (const text of seen.splice(0)) expect(text).not.toContain(TOKEN);
});

function makeConfig(kind: StoreKind, url: string | undefined, http: Record<string, unknown>, edit?: (doc: ConfigDoc) => void): Config {
  const yaml = configYaml((doc) => {
    doc.accounts.push({ id: OTHER_ACCOUNT.id, name: OTHER_ACCOUNT.name });
    doc.state = kind === 'sqlite' ? { sqlite: './state.db' } : { postgres: url };
    doc.http = http;
    edit?.(doc);
  });
  return parseConfig(yaml, path.join(tmp.dir, 'riskwatch.yaml'), ENV);
}

async function openStore(kind: StoreKind): Promise<{ store: StateStore; url: string | undefined }> {
  if (kind === 'sqlite') {
    const store = SqliteStore.open(path.join(tmp.dir, 'state.db'), { warn: () => {} });
    cleanups.push(() => store.close());
    return { store, url: undefined };
  }
  const url = await freshDatabase();
  const store = await PostgresStore.open(url, { warn: () => {} });
  cleanups.push(() => store.close());
  return { store, url };
}

async function serve(kind: StoreKind, options: { token?: string | undefined; at?: (now: number) => number } = {}): Promise<Served & { seeded: Awaited<ReturnType<typeof seed>>; at: number }> {
  const { store, url } = await openStore(kind);
  const http: Record<string, unknown> = { listen: '127.0.0.1:0', console: true };
  if (options.token !== undefined) http.token = options.token;
  const config = makeConfig(kind, url, http);
  // Whole seconds: the API shows times to the second.
  const now = Math.floor(Date.now() / 1000) * 1000;
  const at = now - 2 * HOUR;
  const seeded = await seed(store, at);
  const served = { now } as Served & { seeded: typeof seeded; at: number };
  const server: Server = await startHttp(config.http.listen, () => ({ ready: true, accounts: [] }), new Metrics(), {
    console: createConsole({ config: () => config, store, now: () => served.now }),
  });
  cleanups.push(async () => {
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
  });
  const port = (server.address() as AddressInfo).port;
  const origin = `http://127.0.0.1:${port}`;
  return Object.assign(served, {
    store,
    config,
    port,
    origin,
    seeded,
    at,
    async call(pathname: string, init: CallInit = {}): Promise<Reply> {
      const headers: Record<string, string> = { ...init.headers };
      let body: string | undefined = init.body;
      if (init.json !== undefined) {
        headers['content-type'] ??= 'application/json';
        body = JSON.stringify(init.json);
      }
      if (init.form !== undefined) {
        headers['content-type'] ??= 'application/x-www-form-urlencoded';
        body = new URLSearchParams(init.form).toString();
      }
      if (init.bearer !== undefined) headers.authorization = `Bearer ${init.bearer}`;
      if (init.cookie !== undefined) headers.cookie = init.cookie;
      const response = await fetch(`${origin}${pathname}`, { method: init.method ?? (body === undefined ? 'GET' : 'POST'), headers, body, redirect: 'manual' });
      const text = await response.text();
      seen.push(text, JSON.stringify([...response.headers]));
      return { status: response.status, headers: response.headers, text, json: () => JSON.parse(text) };
    },
    raw(pathname: string, headers: Record<string, string>) {
      return new Promise<{ status: number; headers: Record<string, string | string[] | undefined>; text: string }>((resolve, reject) => {
        const request = process.getBuiltinModule('node:http').request({ host: '127.0.0.1', port, path: pathname, headers, agent: false }, (response) => {
          let text = '';
          response.setEncoding('utf8');
          response.on('data', (chunk: string) => (text += chunk));
          response.on('end', () => {
            seen.push(text, JSON.stringify(response.headers));
            resolve({ status: response.statusCode!, headers: response.headers, text });
          });
        });
        request.on('error', reject);
        request.end();
      });
    },
  });
}

/** The CSRF token a page's forms carry. */
function csrfOf(page: string): string {
  const match = /name="csrf" value="([^"]+)"/.exec(page);
  if (!match) throw new Error('no csrf field on the page');
  return match[1]!;
}

/** Logs in through /login and returns the `riskwatch_session=…` pair to send back. */
async function login(served: Served, extra: Record<string, string> = {}): Promise<string> {
  const reply = await served.call('/login', { form: { token: TOKEN, next: '/' }, headers: extra });
  expect(reply.status).toBe(303);
  const cookie = reply.headers.get('set-cookie');
  expect(cookie).toMatch(/^riskwatch_session=[^;]+;/);
  return cookie!.split(';', 1)[0]!;
}

function expectSecurityHeaders(reply: { headers: Headers }): void {
  const csp = reply.headers.get('content-security-policy') ?? '';
  expect(csp).toContain("frame-ancestors 'none'");
  expect(csp).toContain("default-src 'none'");
  expect(csp).not.toContain('unsafe-inline');
  expect(csp).not.toMatch(/script-src/);
  expect(reply.headers.get('x-content-type-options')).toBe('nosniff');
  expect(reply.headers.get('referrer-policy')).toBe('no-referrer');
}

// ---------------------------------------------------------------------------
// What each store serves alike: the API's shapes and the pages' escaping.

const KINDS: readonly StoreKind[] = ['sqlite', 'postgres'];

describe.each(KINDS)('the console on %s', (kind) => {
  let served: Awaited<ReturnType<typeof serve>>;
  beforeEach(async () => {
    served = await serve(kind, { token: TOKEN });
  });

  /** A call with the bearer token. */
  const api = (pathname: string, init: CallInit = {}) => served.call(pathname, { bearer: TOKEN, ...init });

  describe('pages', () => {
    it('GET / is the overview: HTML with the security headers, every stored string shown as text', async () => {
      const reply = await api('/');
      expect(reply.status).toBe(200);
      expect(reply.headers.get('content-type')).toMatch(/^text\/html; charset=utf-8$/);
      expectSecurityHeaders(reply);
      expect(reply.text).toContain('production');
      expect(reply.text).toContain('staging');
      expect(reply.text).toContain('HTTP 403: &lt;b&gt;the token lacks Zero Trust Read&lt;/b&gt;');
      expect(reply.text).not.toContain('<b>the token');
      expect(reply.text).not.toMatch(/<script/i);
    });

    it('/console.css is the stylesheet', async () => {
      const reply = await api('/console.css');
      expect(reply.status).toBe(200);
      expect(reply.headers.get('content-type')).toMatch(/^text\/css/);
      expect(reply.text.length).toBeGreaterThan(0);
    });

    it('a user named <img src=x onerror=alert(1)> is shown escaped on /users?level=high and on their timeline, never raw', async () => {
      const { u1 } = served.seeded.users;
      const users = await api('/users?level=high');
      expect(users.status).toBe(200);
      expectSecurityHeaders(users);
      expect(users.text).toContain(XSS_SHOWN);
      expect(users.text).not.toContain('<img');
      expect(users.text).toContain(`href="/users/${ACCOUNT.id}/${u1.user_id}"`);

      const timeline = await api(`/users/${ACCOUNT.id}/${u1.user_id}`);
      expect(timeline.status).toBe(200);
      expectSecurityHeaders(timeline);
      expect(timeline.text).toContain(`<title>${XSS_SHOWN} · riskwatch</title>`);
      expect(timeline.text).toContain(XSS_SHOWN);
      expect(timeline.text).not.toContain('<img');
      // The dead letter's error, which carries markup too.
      expect(timeline.text).toContain('&lt;script&gt;alert(2)&lt;/script&gt;');
      expect(timeline.text).not.toMatch(/<script/i);
    });

    it('a bidi override in a name is shown as its code', async () => {
      const reply = await api('/users?level=medium');
      expect(reply.status).toBe(200);
      expect(reply.text).toContain('Mallory ⟨U+202E⟩gnp.exe');
      expect(reply.text).not.toContain('\u202e');
    });

    it('/deliveries?state=dead lists the dead letters with their errors as text, and /silences answers', async () => {
      const dead = await api('/deliveries?state=dead');
      expect(dead.status).toBe(200);
      expect(dead.text).toContain('&lt;script&gt;alert(2)&lt;/script&gt;');
      expect(dead.text).not.toMatch(/<script/i);
      for (const id of Object.values(served.seeded.dead)) expect(dead.text).toContain(`name="id" value="${id}"`);
      const silences = await api('/silences');
      expect(silences.status).toBe(200);
      expect(silences.text).toContain('No active silences.');
    });

    it('an unknown account in a timeline path is a 404 page, with the headers', async () => {
      const reply = await api('/users/nope/someone');
      expect(reply.status).toBe(404);
      expectSecurityHeaders(reply);
    });

    it('a path segment that is not valid percent-encoding is a 400, not a server error', async () => {
      for (const pathname of [`/users/${ACCOUNT.id}/%E0%A4%A`, '/users/%/x']) {
        const reply = await api(pathname);
        expect(reply.status, pathname).toBe(400);
        expectSecurityHeaders(reply);
      }
      for (const pathname of [`/api/users/${ACCOUNT.id}/%E0%A4%A`, '/api/silences/%ZZ']) {
        const reply = await api(pathname);
        expect(reply.status, pathname).toBe(400);
        expect(reply.json()).toEqual({ error: expect.any(String) });
      }
      const expire = await api('/api/silences/%ZZ/expire', { json: {} });
      expect(expire.status).toBe(400);
      const form = await api('/silences/%ZZ/expire', { form: {} });
      expect(form.status).toBe(400);
    });
  });

  describe('GET /api/ in the shapes of SPEC §8', () => {
    it('/api/status', async () => {
      const reply = await api('/api/status');
      expect(reply.status).toBe(200);
      expect(reply.headers.get('content-type')).toBe('application/json');
      expectSecurityHeaders(reply);
      const status = reply.json();
      expect(Object.keys(status)).toEqual(expect.arrayContaining(['accounts', 'sinks', 'silences']));
      expect(status.accounts).toHaveLength(2);
      const [production, staging] = status.accounts;
      const leader = kind === 'sqlite' ? null : expect.any(String);
      expect(production).toMatchObject({ id: ACCOUNT.id, name: 'production', last_success_at: iso(served.at), last_error: null, users: { low: 1, medium: 1, high: 1 } });
      expect(staging).toMatchObject({ id: OTHER_ACCOUNT.id, name: 'staging', last_success_at: iso(served.at), last_error: POLL_ERROR, users: { low: 0, medium: 0, high: 1 } });
      for (const account of status.accounts) {
        expect(account).toHaveProperty('leader');
        if (kind === 'sqlite') expect(account.leader).toBe(leader);
        else expect(account.leader === null || typeof account.leader === 'string').toBe(true);
      }
      expect(status.sinks).toEqual([
        expect.objectContaining({ name: 'secops', type: 'slack', pending: 1, dead: 0, held_until: null }),
        expect.objectContaining({ name: 'incidents', type: 'webhook', pending: 0, dead: 2, held_until: null }),
      ]);
      expect(status.silences).toBe(0);
    });

    it('/api/users?level=high', async () => {
      const { u1, u4 } = served.seeded.users;
      const reply = await api('/api/users?level=high');
      expect(reply.status).toBe(200);
      expect(reply.json()).toEqual([
        { account: { id: ACCOUNT.id, name: 'production' }, user_id: u1.user_id, email: u1.email, name: XSS, level: 'high', since: iso(served.at), flapping: false },
        { account: { id: OTHER_ACCOUNT.id, name: 'staging' }, user_id: u4.user_id, email: u4.email, name: 'User 4', level: 'high', since: iso(served.at), flapping: false },
      ]);
      expect((await api('/api/users?level=high&account=staging')).json().map((u: { user_id: string }) => u.user_id)).toEqual([u4.user_id]);
      expect((await api('/api/users')).json()).toHaveLength(4);
    });

    it('/api/users: a bad level or account is a 400 naming it', async () => {
      for (const [query, named] of [
        ['level=extreme', 'level extreme'],
        ['account=nope', 'account nope'],
        ['limit=0', 'limit 0'],
      ] as const) {
        const reply = await api(`/api/users?${query}`);
        expect(reply.status, query).toBe(400);
        expect(reply.json().error, query).toContain(named);
      }
    });

    it('/api/events?user=…&since=24h: the webhook payload with its id and silenced', async () => {
      const { e1 } = served.seeded.events;
      const { u1 } = served.seeded.users;
      const byEmail = await api(`/api/events?user=${encodeURIComponent(u1.email)}&since=24h`);
      expect(byEmail.status).toBe(200);
      expect(byEmail.json()).toEqual([{ type: e1.type, timestamp: e1.timestamp, data: e1.data, id: 'evt-1', silenced: null, flapping: false }]);
      expect((await api(`/api/events?user=${u1.user_id}&since=24h`)).json()).toEqual(byEmail.json());
      // Newer than the events: none.
      expect((await api(`/api/events?user=${u1.user_id}&since=1h`)).json()).toEqual([]);
      expect(
        (await api(`/api/events?since=${iso(served.at - 1000)}`))
          .json()
          .map((e: { id: string }) => e.id)
          .sort(),
      ).toEqual(['evt-1', 'evt-2', 'evt-3', 'evt-4']);
      const bad = await api('/api/events?since=forever');
      expect(bad.status).toBe(400);
      expect(bad.json().error).toMatch(/^since forever: /);
    });

    it('/api/deliveries?state=dead', async () => {
      const reply = await api('/api/deliveries?state=dead');
      expect(reply.status).toBe(200);
      const rows = reply.json();
      expect(rows).toHaveLength(2);
      for (const row of rows) {
        expect(row).toMatchObject({ sink: 'incidents', account: ACCOUNT.id, state: 'dead', attempts: 1, last_error: DEAD_ERROR, created_at: iso(served.at) });
        expect(Object.keys(row)).toEqual(expect.arrayContaining(['id', 'sink', 'account', 'state', 'event_ids', 'types', 'attempts', 'last_error', 'next_attempt_at', 'created_at']));
      }
      expect(rows.map((r: { id: number; event_ids: string[]; types: string[] }) => [r.id, r.event_ids, r.types]).sort()).toEqual(
        [
          [served.seeded.dead['evt-1'], ['evt-1'], ['user.risk_level_raised']],
          [served.seeded.dead['evt-3'], ['evt-3'], ['behavior.disabled']],
        ].sort(),
      );
      expect((await api('/api/deliveries?state=pending')).json()).toEqual([expect.objectContaining({ sink: 'secops', state: 'pending', event_ids: ['evt-1', 'evt-2'] })]);
      const bad = await api('/api/deliveries?state=gone');
      expect(bad.status).toBe(400);
      expect(bad.json().error).toContain('state gone');
    });

    it('/api/silences is empty at first; /api/users/{account}/{user_id} is the timeline', async () => {
      expect((await api('/api/silences')).json()).toEqual([]);
      const { u1 } = served.seeded.users;
      const timeline = (await api(`/api/users/${ACCOUNT.id}/${u1.user_id}`)).json();
      expect(timeline.user).toMatchObject({ user_id: u1.user_id, name: XSS, level: 'high' });
      expect(timeline.events.map((e: { id: string }) => e.id)).toEqual(['evt-1']);
      expect(timeline.deliveries.map((d: { sink: string; state: string }) => [d.sink, d.state]).sort()).toEqual([
        ['incidents', 'dead'],
        ['secops', 'pending'],
      ]);
      expect((await api(`/api/users/${ACCOUNT.id}/nobody`)).status).toBe(404);
    });

    it('an unknown /api/ path is a 404 in JSON; a write to a read is a 405', async () => {
      const unknown = await api('/api/nope');
      expect(unknown.status).toBe(404);
      expect(unknown.json()).toEqual({ error: expect.any(String) });
      expect((await api('/api/status', { json: {} })).status).toBe(405);
    });
  });

  describe('paging', () => {
    it('/api/deliveries pages with limit and after, in id order', async () => {
      const all = (await api('/api/deliveries')).json() as { id: number }[];
      expect(all.length).toBeGreaterThan(1);
      expect((await api('/api/deliveries?limit=1')).json()).toEqual([all[0]]);
      expect((await api(`/api/deliveries?after=${all[0]!.id}`)).json()).toEqual(all.slice(1));
      expect((await api('/api/deliveries?limit=0')).status).toBe(400);
    });
  });

  describe('POST /api/silences', () => {
    it('answers 201 with the silence and where it is; it is listed, counted, and mutes the next matching event', async () => {
      const reply = await api('/api/silences', { json: { user: 'User3@Example.com', for: '1h', reason: 'investigating <b>it</b>' } });
      expect(reply.status).toBe(201);
      const silence = reply.json();
      expect(silence).toEqual({
        id: expect.stringMatching(/^sil_[0-9a-f]+$/),
        user: 'user3@example.com',
        behavior: null,
        account: null,
        starts_at: iso(served.now),
        ends_at: iso(served.now + HOUR),
        reason: 'investigating <b>it</b>',
        by: expect.stringMatching(/^console \(/),
        active: true,
      });
      expect(reply.headers.get('location')).toBe(`/api/silences/${silence.id}`);
      const there = await api(reply.headers.get('location')!);
      expect(there.status).toBe(200);
      expect(there.json()).toEqual(silence);
      expect((await api('/api/silences')).json()).toEqual([silence]);
      expect((await api('/api/status')).json().silences).toBe(1);
      // On the page, the reason is text.
      const page = await api('/silences');
      expect(page.text).toContain('investigating &lt;b&gt;it&lt;/b&gt;');
      expect(page.text).toContain(silence.id);

      // The next poll's event for that user is recorded as silenced, and sent nowhere.
      const u3 = served.seeded.users.u3;
      const e5 = userEvent('evt-5', { ...u3, max_risk_level: 'high' }, 'low', 'high', served.now + 1000);
      await served.store.commitPoll(
        pollCommit({ expectedVersion: 1, polledAt: served.now + 1000, delta: delta({ upsertUsers: [{ ...u3, max_risk_level: 'high' }] }), events: [e5], deliveries: [planned('secops', [e5])] }),
      );
      const events = (await api(`/api/events?user=${u3.user_id}`)).json();
      expect(events).toEqual([expect.objectContaining({ id: 'evt-5', silenced: silence.id })]);
      expect((await api(`/api/users/${ACCOUNT.id}/${u3.user_id}`)).json().deliveries).toEqual([]);
    });

    it('by a behavior, in one account, until a time, by someone', async () => {
      const until = iso(served.now + 3 * HOUR);
      const reply = await api('/api/silences', { json: { behavior: 'b1', account: 'staging', until, reason: 'rework', by: 'jane' } });
      expect(reply.status).toBe(201);
      expect(reply.json()).toMatchObject({ user: null, behavior: 'b1', account: OTHER_ACCOUNT.id, ends_at: until, by: 'jane', active: true });
    });

    it.each([
      ['a missing reason', { user: 'a@example.com', for: '1h' }, /^reason: /],
      ['an empty reason', { user: 'a@example.com', for: '1h', reason: '  ' }, /^reason: /],
      ['both user and behavior', { user: 'a@example.com', behavior: 'b1', for: '1h', reason: 'r' }, /give user or behavior/],
      ['neither user nor behavior', { for: '1h', reason: 'r' }, /give user or behavior/],
      ['for: forever', { user: 'a@example.com', for: 'forever', reason: 'r' }, /^for forever: not a duration/],
      ['no end', { user: 'a@example.com', reason: 'r' }, /give for .* or until/],
      ['until in the past', { user: 'a@example.com', until: '2020-01-01T00:00:00Z', reason: 'r' }, /^until 2020-01-01T00:00:00Z: is not in the future/],
      ['a field that is not a string', { user: 42, for: '1h', reason: 'r' }, /^user: must be a string/],
      ['an unknown account', { user: 'a@example.com', account: 'nope', for: '1h', reason: 'r' }, /^account nope: /],
      ['a body that is a list', [1, 2], /^body: /],
    ])('%s is a 400 naming the field', async (_, body, error) => {
      const reply = await api('/api/silences', { json: body });
      expect(reply.status).toBe(400);
      expect(reply.headers.get('content-type')).toBe('application/json');
      expect(reply.json()).toEqual({ error: expect.stringMatching(error) });
      expect((await api('/api/silences')).json()).toEqual([]);
    });

    it('a body that is not JSON is a 400; one not sent as JSON is a 415; one over 16 KB is a 413', async () => {
      const notJson = await api('/api/silences', { body: '{user:', headers: { 'content-type': 'application/json' } });
      expect(notJson.status).toBe(400);
      expect(notJson.json().error).toMatch(/^body: /);
      const form = await api('/api/silences', { form: { user: 'a@example.com', for: '1h', reason: 'r' } });
      expect(form.status).toBe(415);
      expect(form.json().error).toContain('content-type');
      const plain = await api('/api/silences', { body: '{}', headers: { 'content-type': 'text/plain' } });
      expect(plain.status).toBe(415);
      const big = await api('/api/silences', { json: { user: 'a@example.com', for: '1h', reason: 'r'.repeat(17 * 1024) } });
      expect(big.status).toBe(413);
      expect(big.json()).toEqual({ error: expect.any(String) });
      expect((await api('/api/silences')).json()).toEqual([]);
    });
  });

  describe('POST /api/silences/{id}/expire', () => {
    it('ends it (200, active false); again is a 409; an unknown id a 404', async () => {
      const { id } = (await api('/api/silences', { json: { user: 'a@example.com', for: '1h', reason: 'r' } })).json();
      const expired = await api(`/api/silences/${id}/expire`, { json: {} });
      expect(expired.status).toBe(200);
      expect(expired.json()).toMatchObject({ id, active: false, ends_at: iso(served.now) });
      expect((await api('/api/silences')).json()).toEqual([]);
      expect((await api('/api/silences?all=true')).json()).toEqual([expect.objectContaining({ id, active: false })]);
      // As `curl -X POST` sends it: no body, no content-type.
      const again = await api(`/api/silences/${id}/expire`, { method: 'POST' });
      expect(again.status).toBe(409);
      expect(again.json().error).toContain(id);
      const unknown = await api('/api/silences/sil_nope/expire', { json: {} });
      expect(unknown.status).toBe(404);
      expect(unknown.json().error).toContain('sil_nope');
    });
  });

  describe('POST /api/deliveries/retry', () => {
    it('{id} revives that dead letter (200 {revived: 1, dropped: 0}); again is a 404', async () => {
      const id = served.seeded.dead['evt-1'];
      const retried = await api('/api/deliveries/retry', { json: { id } });
      expect(retried.status).toBe(200);
      expect(retried.json()).toEqual({ revived: 1, dropped: 0 });
      expect((await api('/api/deliveries?state=dead')).json().map((d: { id: number }) => d.id)).toEqual([served.seeded.dead['evt-3']]);
      expect((await api('/api/deliveries?state=pending')).json().map((d: { id: number; event_ids: string[] }) => d.event_ids)).toContainEqual(['evt-1']);
      const again = await api('/api/deliveries/retry', { json: { id } });
      expect(again.status).toBe(404);
      expect(again.json()).toEqual({ error: expect.any(String) });
    });

    it('{sink} revives every dead letter of the sink', async () => {
      const retried = await api('/api/deliveries/retry', { json: { sink: 'incidents' } });
      expect(retried.status).toBe(200);
      expect(retried.json()).toEqual({ revived: 2, dropped: 0 });
      expect((await api('/api/deliveries?state=dead')).json()).toEqual([]);
    });

    it.each([
      ['an unknown sink', { sink: 'nope' }, /^sink nope: /],
      ['neither sink nor id', {}, /give sink S or id N/],
      ['both', { sink: 'incidents', id: 1 }, /give sink S or id N/],
      ['an id that is not a whole number', { id: 'x1' }, /^id x1: /],
    ])('%s is a 400 naming the field', async (_, body, error) => {
      const reply = await api('/api/deliveries/retry', { json: body });
      expect(reply.status).toBe(400);
      expect(reply.json()).toEqual({ error: expect.stringMatching(error) });
    });
  });
});

// ---------------------------------------------------------------------------
// Who may come in: the same whatever the store, so tested on SQLite alone.

describe('access with http.token', () => {
  let served: Awaited<ReturnType<typeof serve>>;
  beforeEach(async () => {
    served = await serve('sqlite', { token: TOKEN });
  });

  describe('without the token', () => {
    it('a page redirects to /login with where it was going; /api/ is a 401 in JSON with WWW-Authenticate: Bearer', async () => {
      const page = await served.call('/');
      expect(page.status).toBe(303);
      expect(page.headers.get('location')).toBe('/login?next=%2F');
      expectSecurityHeaders(page);
      const deep = await served.call('/users?level=high');
      expect(deep.headers.get('location')).toBe(`/login?next=${encodeURIComponent('/users?level=high')}`);

      const status = await served.call('/api/status');
      expect(status.status).toBe(401);
      expect(status.headers.get('www-authenticate')).toMatch(/^Bearer\b/);
      expect(status.headers.get('content-type')).toBe('application/json');
      expect(status.json()).toEqual({ error: expect.any(String) });
      expectSecurityHeaders(status);
    });

    it('a wrong token is a 401 (and no page); so is another scheme', async () => {
      const wrong = await served.call('/api/status', { bearer: OTHER_TOKEN });
      expect(wrong.status).toBe(401);
      expect(wrong.json()).toEqual({ error: expect.any(String) });
      expect((await served.call('/api/status', { bearer: `${TOKEN}x` })).status).toBe(401);
      expect((await served.call('/api/status', { headers: { authorization: `Basic ${Buffer.from(`x:${TOKEN}`).toString('base64')}` } })).status).toBe(401);
      const page = await served.call('/', { bearer: OTHER_TOKEN });
      expect(page.status).toBe(303);
      expect(page.headers.get('location')).toMatch(/^\/login\?/);
    });

    it('a write is refused: 401, nothing changed', async () => {
      const api = await served.call('/api/silences', { json: { user: 'a@example.com', for: '1h', reason: 'r' } });
      expect(api.status).toBe(401);
      const form = await served.call('/silences', { form: { user: 'a@example.com', for: '1h', reason: 'r' } });
      expect(form.status).toBe(401);
      expect((await served.call('/api/silences', { bearer: TOKEN })).json()).toEqual([]);
    });

    it('/healthz, /readyz and /metrics stay open', async () => {
      for (const probe of ['/healthz', '/readyz', '/metrics']) expect((await served.call(probe)).status, probe).toBe(200);
    });
  });

  describe('with the bearer token', () => {
    it('every page answers with the security headers', async () => {
      for (const page of ['/', '/users?level=high', '/silences', '/deliveries?state=dead', '/deliveries?state=pending']) {
        const reply = await served.call(page, { bearer: TOKEN });
        expect(reply.status, page).toBe(200);
        expect(reply.headers.get('content-type'), page).toMatch(/^text\/html/);
        expectSecurityHeaders(reply);
      }
    });

    it('writes need no CSRF token and no same-origin header', async () => {
      const form = await served.call('/silences', { bearer: TOKEN, form: { user: 'a@example.com', for: '1h', reason: 'r' }, headers: { 'sec-fetch-site': 'cross-site' } });
      expect(form.status).toBe(303);
      expect(form.headers.get('location')).toMatch(/^\/silences\?added=sil_/);
      const json = await served.call('/api/silences', { bearer: TOKEN, json: { user: 'b@example.com', for: '1h', reason: 'r' }, headers: { origin: 'http://evil.example' } });
      expect(json.status).toBe(201);
      expect((await served.call('/api/silences', { bearer: TOKEN })).json()).toHaveLength(2);
    });
  });

  describe('/login', () => {
    it('GET shows the form, carrying `next` re-encoded as a path of ours', async () => {
      const reply = await served.call(`/login?next=${encodeURIComponent('/users?"><script>alert(1)</script>')}`);
      expect(reply.status).toBe(200);
      expectSecurityHeaders(reply);
      expect(reply.text).toContain('name="next" value="/users?%22%3E%3Cscript%3Ealert(1)%3C/script%3E"');
      expect(reply.text).not.toMatch(/<script/i);
    });

    it('a wrong token is a 401 page and no cookie', async () => {
      const reply = await served.call('/login', { form: { token: OTHER_TOKEN, next: '/users' } });
      expect(reply.status).toBe(401);
      expect(reply.headers.get('content-type')).toMatch(/^text\/html/);
      expect(reply.headers.get('set-cookie')).toBeNull();
      expect(reply.text).toContain('That is not the token.');
    });

    it('the right token: 303 to next, with a session cookie HttpOnly, SameSite=Strict, not Secure over plain HTTP', async () => {
      const reply = await served.call('/login', { form: { token: TOKEN, next: '/users' } });
      expect(reply.status).toBe(303);
      expect(reply.headers.get('location')).toBe('/users');
      const cookie = reply.headers.get('set-cookie')!;
      expect(cookie).toMatch(/^riskwatch_session=\d+\.[\w-]+;/);
      expect(cookie).toContain('HttpOnly');
      expect(cookie).toContain('SameSite=Strict');
      expect(cookie).toContain('Path=/');
      expect(cookie).toContain(`Max-Age=${SESSION_MS / 1000}`);
      expect(cookie).not.toContain('Secure');
    });

    it('Secure when a proxy says the request came over TLS', async () => {
      const reply = await served.call('/login', { form: { token: TOKEN, next: '/' }, headers: { 'x-forwarded-proto': 'https' } });
      expect(reply.status).toBe(303);
      expect(reply.headers.get('set-cookie')).toMatch(/; Secure$/);
    });

    it.each(['//evil.example', '/\\evil.example', 'https://evil.example/', 'javascript:alert(1)', '', '/\t/evil.example/x', '\t//evil.example', '/\n/evil.example'])(
      'next=%j goes to / instead',
      async (next) => {
        const reply = await served.call('/login', { form: { token: TOKEN, next } });
        expect(reply.status).toBe(303);
        expect(reply.headers.get('location')).toBe('/');
      },
    );

    it('a next with characters a header cannot hold goes there percent-encoded, not to a 500', async () => {
      const reply = await served.call('/login', { form: { token: TOKEN, next: '/users?level=high&x=€\r\nSet-Cookie: a=b' } });
      expect(reply.status).toBe(303);
      // As a browser reads it: line breaks dropped, the rest percent-encoded; never a header of its own.
      expect(reply.headers.get('location')).toBe('/users?level=high&x=%E2%82%ACSet-Cookie:%20a=b');
    });

    it('a login posted from another site is refused', async () => {
      const reply = await served.call('/login', { form: { token: TOKEN, next: '/' }, headers: { 'sec-fetch-site': 'cross-site' } });
      expect(reply.status).toBe(403);
      expect(reply.headers.get('set-cookie')).toBeNull();
    });
  });

  describe('with the session cookie', () => {
    let cookie: string;
    let csrf: string;
    beforeEach(async () => {
      cookie = await login(served);
      const page = await served.call('/silences', { cookie });
      expect(page.status).toBe(200);
      csrf = csrfOf(page.text);
    });

    const silence = { user: 'a@example.com', for: '1h', reason: 'from the form' };
    const silencesNow = async () => (await served.call('/api/silences', { bearer: TOKEN })).json() as { id: string; reason: string }[];

    it('pages and /api/ reads answer', async () => {
      const page = await served.call('/', { cookie });
      expect(page.status).toBe(200);
      expect(page.text).toContain('action="/logout"');
      expect((await served.call('/api/status', { cookie })).status).toBe(200);
    });

    it('a form write without the CSRF token, or with a wrong one, is a 403', async () => {
      const without = await served.call('/silences', { cookie, form: silence, headers: { 'sec-fetch-site': 'same-origin' } });
      expect(without.status).toBe(403);
      expectSecurityHeaders(without);
      const wrong = await served.call('/silences', { cookie, form: { ...silence, csrf: `${csrf.slice(0, -2)}AA` }, headers: { 'sec-fetch-site': 'same-origin' } });
      expect(wrong.status).toBe(403);
      const short = await served.call('/silences', { cookie, form: { ...silence, csrf: 'x' }, headers: { 'sec-fetch-site': 'same-origin' } });
      expect(short.status).toBe(403);
      expect(await silencesNow()).toEqual([]);
    });

    it('with the right CSRF token from the same origin: 303 and the silence exists', async () => {
      const reply = await served.call('/silences', { cookie, form: { ...silence, csrf }, headers: { 'sec-fetch-site': 'same-origin' } });
      expect(reply.status).toBe(303);
      const added = /^\/silences\?added=(sil_[0-9a-f]+)$/.exec(reply.headers.get('location') ?? '');
      expect(added).not.toBeNull();
      expect(await silencesNow()).toEqual([expect.objectContaining({ id: added![1], reason: 'from the form' })]);
      // The page it goes to says so, in its own words.
      const after = await served.call(reply.headers.get('location')!, { cookie });
      expect(after.text).toContain(`Silence ${added![1]} added`);
    });

    it('an invalid form is a 400 page that keeps what was typed, as text', async () => {
      const reply = await served.call('/silences', { cookie, form: { user: '"><script>x</script>', for: 'forever', reason: 'r', csrf }, headers: { 'sec-fetch-site': 'same-origin' } });
      expect(reply.status).toBe(400);
      expect(reply.text).toContain('for forever: not a duration');
      expect(reply.text).toContain('value="&quot;&gt;&lt;script&gt;x&lt;/script&gt;"');
      expect(reply.text).not.toMatch(/<script/i);
      expect(await silencesNow()).toEqual([]);
    });

    it('the right CSRF token from another site is a 403: Sec-Fetch-Site cross-site, or an Origin that is not the Host', async () => {
      const foreign: Record<string, string>[] = [
        { 'sec-fetch-site': 'cross-site' },
        { 'sec-fetch-site': 'same-site' },
        { origin: 'http://evil.example' },
        { origin: 'null' },
        { origin: `http://127.0.0.1:${served.port + 1}` },
      ];
      for (const headers of foreign) {
        const reply = await served.call('/silences', { cookie, form: { ...silence, csrf }, headers });
        expect(reply.status, JSON.stringify(headers)).toBe(403);
      }
      // Sec-Fetch-Site is asked first: a same-origin one with Origin: null (what no-referrer makes browsers send) is ours.
      expect(await silencesNow()).toEqual([]);
      const ours = await served.call('/silences', { cookie, form: { ...silence, csrf }, headers: { 'sec-fetch-site': 'same-origin', origin: 'null' } });
      expect(ours.status).toBe(303);
    });

    it('an Origin that names the Host is accepted', async () => {
      const reply = await served.call('/silences', { cookie, form: { ...silence, csrf }, headers: { origin: served.origin } });
      expect(reply.status).toBe(303);
      expect(await silencesNow()).toHaveLength(1);
    });

    it('expire and retry through the forms', async () => {
      const added = await served.call('/silences', { cookie, form: { ...silence, csrf }, headers: { 'sec-fetch-site': 'same-origin' } });
      const id = /added=(sil_[0-9a-f]+)/.exec(added.headers.get('location')!)![1]!;
      const expired = await served.call(`/silences/${id}/expire`, { cookie, form: { csrf }, headers: { 'sec-fetch-site': 'same-origin' } });
      expect(expired.status).toBe(303);
      expect(expired.headers.get('location')).toBe(`/silences?expired=${id}`);
      expect(await silencesNow()).toEqual([]);
      const retried = await served.call('/deliveries/retry', { cookie, form: { csrf, id: String(served.seeded.dead['evt-3']) }, headers: { 'sec-fetch-site': 'same-origin' } });
      expect(retried.status).toBe(303);
      expect(retried.headers.get('location')).toBe('/deliveries?state=dead&revived=1&dropped=0');
      expect((await served.call(retried.headers.get('location')!, { cookie })).text).toContain('1 delivery made pending again.');
    });

    it('an /api/ write with the cookie from another site is a 403', async () => {
      const foreign: Record<string, string>[] = [{ 'sec-fetch-site': 'cross-site' }, { origin: 'http://evil.example' }];
      for (const headers of foreign) {
        const reply = await served.call('/api/silences', { cookie, json: silence, headers });
        expect(reply.status, JSON.stringify(headers)).toBe(403);
        expect(reply.json()).toEqual({ error: expect.any(String) });
      }
      expect(await silencesNow()).toEqual([]);
    });

    it('an /api/ write with the cookie from this console needs the CSRF token in X-CSRF-Token', async () => {
      const same = { 'sec-fetch-site': 'same-origin' };
      const without = await served.call('/api/silences', { cookie, json: silence, headers: same });
      expect(without.status).toBe(403);
      expect(without.json()).toEqual({ error: expect.stringContaining('X-CSRF-Token') });
      const wrong = await served.call('/api/silences', { cookie, json: silence, headers: { ...same, 'x-csrf-token': `${csrf.slice(1)}x` } });
      expect(wrong.status).toBe(403);
      expect(await silencesNow()).toEqual([]);
      const right = await served.call('/api/silences', { cookie, json: silence, headers: { ...same, 'x-csrf-token': csrf } });
      expect(right.status).toBe(201);
    });

    it('the CSRF token is bound to the session: another session’s does not pass', async () => {
      served.now += 1000;
      const other = await login(served);
      expect(other).not.toBe(cookie);
      const reply = await served.call('/silences', { cookie: other, form: { ...silence, csrf }, headers: { 'sec-fetch-site': 'same-origin' } });
      expect(reply.status).toBe(403);
    });

    it('POST /logout with the CSRF token clears the cookie (Max-Age=0)', async () => {
      const without = await served.call('/logout', { cookie, form: {}, headers: { 'sec-fetch-site': 'same-origin' } });
      expect(without.status).toBe(403);
      const reply = await served.call('/logout', { cookie, form: { csrf }, headers: { 'sec-fetch-site': 'same-origin' } });
      expect(reply.status).toBe(303);
      expect(reply.headers.get('location')).toBe('/login');
      const cleared = reply.headers.get('set-cookie')!;
      expect(cleared).toMatch(/^riskwatch_session=;/);
      expect(cleared).toContain('Max-Age=0');
    });

    it('a cookie whose MAC was changed, or that another token signed, is refused', async () => {
      const [name, value] = cookie.split('=', 2) as [string, string];
      const tampered = `${name}=${value.slice(0, -1)}${value.endsWith('A') ? 'B' : 'A'}`;
      const longer = `${name}=${String(Number(value.split('.')[0]) + SESSION_MS)}.${value.split('.')[1]}`;
      const foreign = `${name}=${new Access(new Secret(OTHER_TOKEN)).newSession(served.now)}`;
      for (const bad of [tampered, longer, foreign, `${name}=`, `${name}=garbage`, `${name}=${value.split('.')[0]}`]) {
        expect((await served.call('/api/status', { cookie: bad })).status, bad).toBe(401);
        const page = await served.call('/', { cookie: bad });
        expect(page.status, bad).toBe(303);
        expect(page.headers.get('location')).toBe('/login?next=%2F');
      }
    });

    it('an expired session is refused', async () => {
      served.now += SESSION_MS - 1;
      expect((await served.call('/api/status', { cookie })).status).toBe(200);
      served.now += 1;
      expect((await served.call('/api/status', { cookie })).status).toBe(401);
      expect((await served.call('/', { cookie })).status).toBe(303);
    });
  });

  it('the token appears in no answer, not even on the login page after a wrong or right attempt', async () => {
    // afterEach checks every answer any test here received; this one makes a few more where a leak would show.
    await served.call('/login', { form: { token: TOKEN.slice(0, -1), next: '/' } });
    await served.call('/login', { form: { token: TOKEN, next: `/?t=${TOKEN.slice(0, 8)}` } });
    await served.call('/api/nope', { bearer: TOKEN });
    await served.call('/api/silences', { bearer: TOKEN, json: { user: TOKEN.slice(0, 10), for: '1h', reason: 'r' } });
    expect(seen.length).toBeGreaterThan(0);
  });
});

describe('access without http.token, on a loopback listen', () => {
  let served: Awaited<ReturnType<typeof serve>>;
  beforeEach(async () => {
    served = await serve('sqlite');
  });

  it('answers a loopback Host name: 127.0.0.1, localhost, [::1]', async () => {
    for (const host of [`127.0.0.1:${served.port}`, `localhost:${served.port}`, `[::1]:${served.port}`, 'localhost']) {
      const page = await served.raw('/', { host });
      expect(page.status, host).toBe(200);
      expect(page.headers['content-security-policy']).toContain("frame-ancestors 'none'");
      expect((await served.raw('/api/status', { host })).status, host).toBe(200);
    }
    expect((await served.call('/')).status).toBe(200);
  });

  it('refuses any other Host (DNS rebinding) with a 401, pages and /api/ alike', async () => {
    for (const host of ['evil.example', `evil.example:${served.port}`, '127.0.0.1.nip.io', 'localhost.evil.example', '10.0.0.1']) {
      for (const pathname of ['/', '/api/status', '/users?level=high']) {
        const reply = await served.raw(pathname, { host });
        expect(reply.status, `${host} ${pathname}`).toBe(401);
        expect(reply.text).not.toContain('production');
        expect(reply.headers['www-authenticate']).toBeUndefined();
      }
    }
    expect((await served.raw('/healthz', { host: 'evil.example' })).status).toBe(200);
  });

  it('refuses what a reverse proxy forwarded: without a token, the console is for this host only', async () => {
    const proxied: Record<string, string>[] = [{ 'x-forwarded-for': '203.0.113.9' }, { forwarded: 'for=203.0.113.9' }, { 'x-real-ip': '203.0.113.9' }, { 'x-forwarded-host': 'riskwatch.example' }];
    for (const forwarded of proxied) {
      const reply = await served.raw('/api/status', { host: `127.0.0.1:${served.port}`, ...forwarded });
      expect(reply.status, JSON.stringify(forwarded)).toBe(401);
    }
  });

  it("a notice comes only from riskwatch's own words and a silence id: a crafted link shows nothing", async () => {
    const crafted = await served.call(`/silences?added=${encodeURIComponent('x. Your session expired: log in again at evil.example')}`);
    expect(crafted.text).not.toContain('evil.example');
    expect(crafted.text).not.toContain('role="status"');
    expect((await served.call('/silences?added=sil_0123abcd')).text).toContain('Silence sil_0123abcd added');
  });

  it('/login has nothing to ask: it goes to next', async () => {
    const reply = await served.call('/login?next=%2Fsilences');
    expect(reply.status).toBe(303);
    expect(reply.headers.get('location')).toBe('/silences');
  });

  it('form writes still need the CSRF token and the same origin', async () => {
    const page = await served.call('/silences');
    const csrf = csrfOf(page.text);
    const form = { user: 'a@example.com', for: '1h', reason: 'r' };
    expect((await served.call('/silences', { form, headers: { 'sec-fetch-site': 'same-origin' } })).status).toBe(403);
    expect((await served.call('/silences', { form: { ...form, csrf }, headers: { 'sec-fetch-site': 'cross-site' } })).status).toBe(403);
    expect((await served.call('/api/silences', { json: form, headers: { 'sec-fetch-site': 'cross-site' } })).status).toBe(403);
    expect((await served.call('/silences', { form: { ...form, csrf }, headers: { 'sec-fetch-site': 'same-origin' } })).status).toBe(303);
    expect((await served.call('/api/silences')).json()).toHaveLength(1);
  });
});
