import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Config } from '../config/config.ts';
import type { Logger } from '../log.ts';
import { UsageError } from '../errors.ts';
import type { RiskLevel } from '../model.ts';
import { accountInput, countInput, durationInput, eventTypeInput, fieldLabel, levelInput, retryInput, SILENCE_FIELDS, type SilenceRequest, silenceInput, timeInput } from '../operate/input.ts';
import { deliveriesView, eventsView, silencesView, statusView, timelineView, usersView } from '../operate/views.ts';
import type { OperatorStore } from '../store/store.ts';
import { Access, type Caller, overTls, sameOrigin } from './access.ts';
import { type Html, query } from './html.ts';
import { deliveriesPage, errorPage, loginPage, overviewPage, type PageContext, silencesPage, timelinePage, usersPage } from './pages.ts';
import { STYLESHEET } from './style.ts';

/** What the console reads: the config as loaded now (a reload changes it), the daemon's store, the clock. */
export interface ConsoleDeps {
  readonly config: () => Config;
  readonly store: OperatorStore;
  readonly now: () => number;
  /** Told of what failed on our side (a store that cannot answer), not of what a caller got wrong. */
  readonly log?: Pick<Logger, 'error'>;
}

/**
 * Headers on every console page and /api/ answer (SPEC §10): no script runs
 * at all (the pages have none), only our own stylesheet loads, no frame may
 * hold a page, nothing leaks a URL to another site, and nothing is cached.
 */
export const SECURITY_HEADERS = {
  'content-security-policy': "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'no-referrer',
  'x-frame-options': 'DENY',
  'cache-control': 'no-store',
};

/** Largest request body taken (a silence is a few hundred bytes). */
const MAX_BODY = 16 * 1024;
/** Users per page of /users. */
const PAGE_SIZE = 100;
const DAY = 86_400_000;

/** A request refused with a status and one line saying why. */
class Refused extends Error {
  readonly status: number;
  constructor(status: number, message: string) {
    super(message);
    this.status = status;
  }
}

/**
 * The web console and /api/ (SPEC §10), served beside /healthz and /metrics
 * when `http.console` is on: pages rendered on the server from the same views
 * as the commands (operate/views.ts), and the same data as JSON. Returns
 * false for a path that is not its own.
 */
export function createConsole(deps: ConsoleDeps): (req: IncomingMessage, res: ServerResponse) => Promise<boolean> {
  // The token as configured at start; a reload that changes it takes a restart (like http.listen).
  const access = new Access(deps.config().http.token);
  return async (req, res) => {
    const url = new URL(req.url ?? '/', 'http://console.invalid');
    const path = url.pathname;
    const api = path === '/api' || path.startsWith('/api/');
    if (!api && !isPagePath(path)) return false;
    try {
      if (path === '/favicon.ico') {
        // Browsers ask for it on their own: nothing, rather than a 404 in their console.
        res.writeHead(204, SECURITY_HEADERS).end();
        return true;
      }
      if (path === '/console.css') {
        send(res, 200, 'text/css; charset=utf-8', STYLESHEET, { 'cache-control': 'public, max-age=3600' });
        return true;
      }
      if (path === '/login') {
        await login(req, res, url, access, deps.now());
        return true;
      }
      const caller = access.caller(req, deps.now());
      if (caller === undefined) {
        if (api || req.method !== 'GET')
          throw new Refused(401, access.required ? 'give the token (Authorization: Bearer …) or log in at /login' : 'use a loopback address (localhost) to reach this console');
        if (!access.required) throw new Refused(401, 'use a loopback address (localhost) to reach this console');
        redirect(res, `/login?next=${encodeURIComponent(url.pathname + url.search)}`);
        return true;
      }
      const write = req.method === 'POST';
      if (write && caller.by !== 'bearer' && !sameOrigin(req)) throw new Refused(403, 'refused: this write did not come from a page of this console (cross-site request)');
      // The pages' forms carry their CSRF token in the body; an /api/ write made with the session cookie, in a header.
      if (write && api && caller.by === 'cookie' && !access.csrfMatches(caller, header(req, 'x-csrf-token'))) {
        throw new Refused(403, 'refused: an /api/ write made with the session cookie needs the X-CSRF-Token header (or use the bearer token)');
      }
      if (api) await serveApi(req, res, url, deps);
      else await servePage(req, res, url, deps, access, caller);
    } catch (error) {
      const status = error instanceof Refused ? error.status : error instanceof UsageError ? 400 : 500;
      const message = (error as Error).message;
      if (status >= 500) deps.log?.error({ err: message, path }, 'the console could not answer');
      if (api || status === 401 || status === 403) {
        const headers: Record<string, string> = status === 401 && access.required ? { 'www-authenticate': 'Bearer realm="riskwatch"' } : {};
        if (api) sendJson(res, status, { error: message }, headers);
        else send(res, status, 'text/plain; charset=utf-8', `${message}\n`, headers);
      } else {
        sendHtml(res, status, errorPage(status, message));
      }
    }
    return true;
  };
}

const PAGES = /^\/(|users|users\/[^/]+\/[^/]+|silences|silences\/[^/]+\/expire|deliveries|deliveries\/retry|login|logout|console\.css|favicon\.ico)$/;

function isPagePath(path: string): boolean {
  return PAGES.test(path);
}

async function login(req: IncomingMessage, res: ServerResponse, url: URL, access: Access, now: number): Promise<void> {
  const next = safeNext(url.searchParams.get('next'));
  if (!access.required) return redirect(res, next);
  if (req.method === 'GET') return sendHtml(res, 200, loginPage(next, undefined));
  if (req.method !== 'POST') throw new Refused(405, 'use GET or POST');
  if (!sameOrigin(req)) throw new Refused(403, 'refused: this login did not come from this console (cross-site request)');
  const form = await readForm(req);
  if (!access.tokenMatches(form.get('token') ?? '')) return sendHtml(res, 401, loginPage(safeNext(form.get('next')), 'That is not the token.'));
  res.setHeader('set-cookie', access.sessionCookie(access.newSession(now), overTls(req)));
  redirect(res, safeNext(form.get('next')));
}

/**
 * Where /login may send a browser next: a path of ours, re-serialised, never another site. Read as
 * a browser reads it (`//evil`, `/\\evil`, a tab a browser drops), and sent back percent-encoded,
 * so that no character can break the Location header either.
 */
function safeNext(next: string | null | undefined): string {
  const base = 'http://console.invalid';
  const url = next ? URL.parse(next, base) : null;
  return url !== null && url.origin === base && next!.startsWith('/') ? `${url.pathname}${url.search}` : '/';
}

async function servePage(req: IncomingMessage, res: ServerResponse, url: URL, deps: ConsoleDeps, access: Access, caller: Caller): Promise<void> {
  const config = deps.config();
  const now = deps.now();
  const context: PageContext = { csrf: access.csrfToken(caller), loggedIn: caller.by === 'cookie', said: said(url) };
  const path = url.pathname;
  const params = url.searchParams;
  if (req.method === 'POST') {
    const form = await readForm(req);
    if (caller.by !== 'bearer' && !access.csrfMatches(caller, form.get('csrf') ?? undefined))
      throw new Refused(403, 'refused: the form is stale or not from this console (CSRF token); reload the page and try again');
    if (path === '/logout') {
      res.setHeader('set-cookie', access.sessionCookie('', overTls(req)));
      return redirect(res, '/login');
    }
    if (path === '/silences') {
      const request = Object.fromEntries(SILENCE_FIELDS.map((k) => [k, form.get(k) || undefined]));
      try {
        const silence = await addSilence(request, config, deps, req, now);
        return redirect(res, `/silences?added=${encodeURIComponent(silence.id)}`);
      } catch (error) {
        if (!(error instanceof UsageError)) throw error;
        const silences = await silencesView(deps.store, { all: false, now });
        const accounts = accountsOf(config);
        return sendHtml(res, 400, silencesPage({ ...context, said: { text: error.message, error: true } }, accounts, silences, false, Object.fromEntries(form)));
      }
    }
    const expire = /^\/silences\/([^/]+)\/expire$/.exec(path);
    if (expire) {
      const id = pathSegment(expire[1]!);
      await expireSilence(deps.store, id, now);
      return redirect(res, `/silences?expired=${encodeURIComponent(id)}`);
    }
    if (path === '/deliveries/retry') {
      const sink = form.get('sink') || undefined;
      const { revived, dropped } = await retry(deps.store, config, sink, form.getAll('id'), now);
      return redirect(res, `/deliveries${query({ state: 'dead', revived, dropped })}`);
    }
    throw new Refused(405, `${path} takes no POST`);
  }
  if (req.method !== 'GET' && req.method !== 'HEAD') throw new Refused(405, 'use GET or POST');
  if (path === '/') {
    const status = await statusView(config, deps.store, now);
    const flapping = await usersView(config, deps.store, { flapping: true, limit: PAGE_SIZE });
    return sendHtml(res, 200, overviewPage(context, status, flapping));
  }
  if (path === '/users') {
    const level = levelInput('level', params.get('level') || 'high') as RiskLevel;
    const account = accountInput('account', params.get('account') || undefined, config);
    const page = countInput('page', params.get('page') || undefined, 1_000_000) ?? 1;
    const rows = await usersView(config, deps.store, { level, ...(account ? { accountId: account } : {}), limit: PAGE_SIZE + 1, offset: (page - 1) * PAGE_SIZE });
    const accounts = accountsOf(config);
    return sendHtml(res, 200, usersPage(context, accounts, { level, account, page }, rows.slice(0, PAGE_SIZE), rows.length > PAGE_SIZE));
  }
  const user = /^\/users\/([^/]+)\/([^/]+)$/.exec(path);
  if (user) {
    const [accountId, userId] = [pathSegment(user[1]!), pathSegment(user[2]!)];
    if (!config.accounts.some((a) => a.id === accountId)) throw new Refused(404, `no configured account ${accountId}`);
    return sendHtml(res, 200, timelinePage(context, accountId, userId, await timelineView(config, deps.store, accountId, userId, now)));
  }
  if (path === '/silences') {
    const all = params.get('all') === '1';
    const accounts = accountsOf(config);
    return sendHtml(res, 200, silencesPage(context, accounts, await silencesView(deps.store, { all, now }), all));
  }
  if (path === '/deliveries') {
    const state = params.get('state') === 'pending' ? 'pending' : 'dead';
    const sink = params.get('sink') || undefined;
    const after = countInput('after', params.get('after') || undefined, Number.MAX_SAFE_INTEGER, 0);
    const rows = await deliveriesView(deps.store, { state, ...(sink ? { sink } : {}), ...(after ? { after } : {}), limit: PAGE_SIZE + 1 });
    const more = rows.length > PAGE_SIZE ? rows[PAGE_SIZE - 1]!.id : undefined;
    return sendHtml(res, 200, deliveriesPage(context, accountsOf(config), { state, sink, after, more }, rows.slice(0, PAGE_SIZE)));
  }
  throw new Refused(404, `no page ${path}`);
}

/** The accounts as configured, for the pages' filters and names. */
function accountsOf(config: Config): { id: string; name: string | null }[] {
  return config.accounts.map((a) => ({ id: a.id, name: a.name ?? null }));
}

/** The line a page shows after a form's redirect: built from our own words and the ids given, never from text in the URL. */
function said(url: URL): PageContext['said'] {
  const p = url.searchParams;
  // Only a silence id as riskwatch makes them: a link crafted to show other words shows nothing.
  const id = (key: string) => /^sil_[0-9a-f]{8}$/.exec(p.get(key) ?? '')?.[0];
  const added = id('added');
  if (added) return { text: `Silence ${added} added: it applies from the next poll.`, error: false };
  const expired = id('expired');
  if (expired) return { text: `Silence ${expired} ended.`, error: false };
  const revived = p.get('revived');
  if (revived !== null && /^\d+$/.test(revived)) {
    const dropped = Number(p.get('dropped') ?? 0) || 0;
    return {
      text: `${revived} ${revived === '1' ? 'delivery' : 'deliveries'} made pending again${dropped > 0 ? `; ${dropped} stale trigger(s) dropped (their incidents were closed since)` : ''}.`,
      error: false,
    };
  }
  return undefined;
}

async function addSilence(request: SilenceRequest, config: Config, deps: ConsoleDeps, req: IncomingMessage, now: number) {
  const silence = silenceInput(request, fieldLabel, config, now, () => `console (${req.socket.remoteAddress ?? 'unknown'})`);
  await deps.store.addSilence(silence);
  return silence;
}

async function expireSilence(store: OperatorStore, id: string, now: number): Promise<void> {
  if (await store.expireSilence(id, now)) return;
  const kept = await store.listSilences({ all: true, now });
  throw kept.some((s) => s.id === id) ? new Refused(409, `silence ${id} has already ended`) : new Refused(404, `no silence ${id}`);
}

async function retry(store: OperatorStore, config: Config, sink: string | undefined, ids: readonly string[], now: number) {
  const result = await store.retryDeliveries(retryInput(fieldLabel, sink, ids, config), now);
  if (result.revived + result.dropped === 0) throw new Refused(404, 'no dead-lettered delivery matched');
  return result;
}

async function serveApi(req: IncomingMessage, res: ServerResponse, url: URL, deps: ConsoleDeps): Promise<void> {
  const config = deps.config();
  const now = deps.now();
  const path = url.pathname;
  const params = url.searchParams;
  const get = (key: string) => params.get(key) ?? undefined;
  if (req.method === 'POST') {
    const body = await readJson(req);
    if (path === '/api/silences') {
      const request = Object.fromEntries(SILENCE_FIELDS.map((k) => [k, stringField(body, k)]));
      const silence = await addSilence(request, config, deps, req, now);
      const [view] = (await silencesView(deps.store, { all: true, now })).filter((s) => s.id === silence.id);
      return sendJson(res, 201, view, { location: `/api/silences/${encodeURIComponent(silence.id)}` });
    }
    const expire = /^\/api\/silences\/([^/]+)\/expire$/.exec(path);
    if (expire) {
      const id = pathSegment(expire[1]!);
      await expireSilence(deps.store, id, now);
      const [view] = (await silencesView(deps.store, { all: true, now })).filter((s) => s.id === id);
      return sendJson(res, 200, view);
    }
    if (path === '/api/deliveries/retry') {
      const id = body.id;
      const ids = id === undefined ? [] : (Array.isArray(id) ? id : [id]).map(String);
      return sendJson(res, 200, await retry(deps.store, config, stringField(body, 'sink'), ids, now));
    }
    throw new Refused(path.startsWith('/api/') && API_GETS.test(path) ? 405 : 404, `${path}: no such POST in /api/`);
  }
  if (req.method !== 'GET' && req.method !== 'HEAD') throw new Refused(405, 'use GET or POST');
  if (path === '/api/status') return sendJson(res, 200, await statusView(config, deps.store, now));
  if (path === '/api/users') {
    const level = levelInput('level', get('level'));
    const accountId = accountInput('account', get('account'), config);
    const limit = countInput('limit', get('limit'), 100_000);
    const offset = countInput('offset', get('offset'), Number.MAX_SAFE_INTEGER, 0);
    return sendJson(res, 200, await usersView(config, deps.store, { ...(level ? { level } : {}), ...(accountId ? { accountId } : {}), ...(limit ? { limit } : {}), ...(offset ? { offset } : {}) }));
  }
  const user = /^\/api\/users\/([^/]+)\/([^/]+)$/.exec(path);
  if (user) {
    const [accountId, userId] = [pathSegment(user[1]!), pathSegment(user[2]!)];
    if (!config.accounts.some((a) => a.id === accountId)) throw new Refused(404, `no configured account ${accountId}`);
    const timeline = await timelineView(config, deps.store, accountId, userId, now);
    if (timeline.user === undefined && timeline.events.length === 0) throw new Refused(404, `no user ${userId} in account ${accountId}`);
    return sendJson(res, 200, timeline);
  }
  if (path === '/api/events') {
    const type = eventTypeInput('type', get('type'));
    const accountId = accountInput('account', get('account'), config);
    const limit = countInput('limit', get('limit'), 100_000) ?? 100;
    const user = get('user');
    return sendJson(res, 200, await eventsView(deps.store, { since: sinceInput(get('since'), now), limit, ...(accountId ? { accountId } : {}), ...(user ? { user } : {}), ...(type ? { type } : {}) }));
  }
  if (path === '/api/silences') return sendJson(res, 200, await silencesView(deps.store, { all: get('all') === 'true' || get('all') === '1', now }));
  const silence = /^\/api\/silences\/([^/]+)$/.exec(path);
  if (silence) {
    // Where POST /api/silences's Location points: one silence, active or ended (while it is kept).
    const id = pathSegment(silence[1]!);
    const [view] = (await silencesView(deps.store, { all: true, now })).filter((s) => s.id === id);
    if (view === undefined) throw new Refused(404, `no silence ${id}`);
    return sendJson(res, 200, view);
  }
  if (path === '/api/deliveries') {
    const state = get('state');
    if (state !== undefined && state !== 'pending' && state !== 'dead') throw new UsageError(`state ${state}: must be pending or dead`);
    const sink = get('sink');
    const limit = countInput('limit', get('limit'), 100_000);
    const after = countInput('after', get('after'), Number.MAX_SAFE_INTEGER, 0);
    return sendJson(res, 200, await deliveriesView(deps.store, { ...(state ? { state } : {}), ...(sink ? { sink } : {}), ...(limit ? { limit } : {}), ...(after ? { after } : {}) }));
  }
  throw new Refused(404, `${path}: not in /api/ (status, users, events, silences, deliveries)`);
}

const API_GETS = /^\/api\/(status|users|events|silences|deliveries)$/;

/** `since`: how far back (a duration, 24h) or from when (an RFC 3339 time); a day by default. */
function sinceInput(value: string | undefined, now: number): number {
  if (value === undefined) return now - DAY;
  if (/^\d{4}-/.test(value)) return timeInput('since', value)!;
  return now - durationInput('since', value)!;
}

/** A path segment decoded; one that is not valid percent-encoding (`%ZZ`) is the client's mistake, not a server error. */
function pathSegment(text: string): string {
  try {
    return decodeURIComponent(text);
  } catch {
    throw new Refused(400, `${text}: not a valid percent-encoded path segment`);
  }
}

function stringField(body: Record<string, unknown>, key: string): string | undefined {
  const value = body[key];
  if (value === undefined || value === null) return undefined;
  if (typeof value !== 'string') throw new UsageError(`${key}: must be a string`);
  return value;
}

async function readBody(req: IncomingMessage): Promise<string> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    size += (chunk as Buffer).length;
    if (size > MAX_BODY) throw new Refused(413, `the request body is larger than ${MAX_BODY} bytes`);
    chunks.push(chunk as Buffer);
  }
  return Buffer.concat(chunks).toString('utf8');
}

async function readForm(req: IncomingMessage): Promise<URLSearchParams> {
  const type = (req.headers['content-type'] ?? '').split(';', 1)[0]!.trim().toLowerCase();
  if (type !== 'application/x-www-form-urlencoded') throw new Refused(415, 'a form post is application/x-www-form-urlencoded');
  return new URLSearchParams(await readBody(req));
}

/**
 * An /api/ body: a JSON object, sent as application/json, which no web page
 * can send to another site without its consent (a preflight this server never grants).
 */
async function readJson(req: IncomingMessage): Promise<Record<string, unknown>> {
  const type = (req.headers['content-type'] ?? '').split(';', 1)[0]!.trim().toLowerCase();
  const text = await readBody(req);
  // A write that needs no body (expire) may come without one, and without a type.
  if (text === '' && type === '') return {};
  if (type !== 'application/json') throw new Refused(415, 'content-type: must be application/json');
  let body: unknown;
  try {
    body = text.trim() === '' ? {} : JSON.parse(text);
  } catch {
    throw new Refused(400, 'body: not JSON');
  }
  if (typeof body !== 'object' || body === null || Array.isArray(body)) throw new Refused(400, 'body: must be a JSON object');
  return body as Record<string, unknown>;
}

function header(req: IncomingMessage, name: string): string | undefined {
  const value = req.headers[name];
  return Array.isArray(value) ? value[0] : value;
}

function send(res: ServerResponse, status: number, type: string, body: string, headers: Record<string, string> = {}): void {
  res.writeHead(status, { ...SECURITY_HEADERS, 'content-type': type, ...headers }).end(body);
}

function sendHtml(res: ServerResponse, status: number, page: Html): void {
  send(res, status, 'text/html; charset=utf-8', page.toString());
}

function sendJson(res: ServerResponse, status: number, value: unknown, headers: Record<string, string> = {}): void {
  send(res, status, 'application/json', `${JSON.stringify(value)}\n`, headers);
}

function redirect(res: ServerResponse, location: string): void {
  res.writeHead(303, { ...SECURITY_HEADERS, location }).end();
}
