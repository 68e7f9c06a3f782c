import { AsyncLocalStorage } from 'node:async_hooks';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { type Http, HttpPool, type HttpRequest, type HttpResponse } from '../../src/http.ts';
import type { RiskLevel } from '../../src/model.ts';
import { type BadAnswer, type Broken, expand, type Fault, type Poll, type Scenario, type UserSpec } from './model.ts';

/**
 * The fuzz suite's Cloudflare: a loopback server that answers each request
 * from the scenario's plan for the poll it belongs to, and the HTTP pool the
 * client sends through, which says which poll that is.
 *
 * A request is tied to its poll by the async context the poll runs in, not by
 * when it arrives: the client reads up to four pages at once, and a read a
 * poll left behind may still be going during the next one. An answer is a pure
 * function of the plan, the request and how many times that poll asked for
 * that page (its attempt), so a seed replays the same answers.
 */

const TAG_HEADER = 'x-fuzz-poll';
/** More than any poll needs (pages × attempts × two reads, behaviors, enrichment): a poll past it does not stop. */
const MAX_REQUESTS_PER_POLL = 300;

type Call = 'summary' | 'behaviors' | 'user';
type Reply = { readonly status: number; readonly body: string; readonly headers?: Readonly<Record<string, string>> } | { readonly reset: true };

/** What the suite knows of one poll while and after it runs. */
interface PollState {
  readonly label: string;
  readonly attempts: Map<string, number>;
  readonly stop: AbortController;
  requests: number;
  settled: boolean;
  /** Behaviors requests sent and not yet answered. */
  behaviorsInFlight: number;
  /** Summary answers waiting for the behaviors answer (see #handle). */
  held: (() => void)[];
  readonly problems: Set<string>;
}

export class FuzzApi {
  readonly #context = new AsyncLocalStorage<string>();
  readonly #polls = new Map<string, PollState>();
  readonly #server: Server;
  readonly #pool = new HttpPool();
  /** The client's HTTP: every request carries the poll it belongs to. */
  readonly http: Http = { request: (url, init) => this.#request(url, init) };
  #run = 0;
  #scenario: Scenario | undefined;

  private constructor(server: Server) {
    this.#server = server;
  }

  async #request(url: string, init: HttpRequest): Promise<HttpResponse> {
    const tag = this.#context.getStore();
    const state = tag === undefined ? undefined : this.#polls.get(tag);
    if (tag === undefined || !state) return this.#pool.request(url, init);
    const { pathname, search } = new URL(url);
    const path = pathname + search;
    const call = callOf(path);
    this.#sent(state, call, path);
    let settled = false;
    // Told once: whether the answer came in whole (its body read to the end) or failed.
    const answered = (ok: boolean) => {
      if (settled) return;
      settled = true;
      this.#answered(state, call, path, ok);
    };
    try {
      const response = await this.#pool.request(url, { ...init, headers: { ...init.headers, [TAG_HEADER]: tag } });
      response.body.once('end', () => answered(true)).once('close', () => answered(response.body.readableEnded));
      return response;
    } catch (error) {
      answered(false);
      throw error;
    }
  }

  static async start(): Promise<FuzzApi> {
    let api: FuzzApi | undefined;
    const server = createServer((req, res) => api!.#handle(req, res));
    api = new FuzzApi(server);
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(0, '127.0.0.1', () => resolve());
    });
    return api;
  }

  get baseUrl(): string {
    return `http://127.0.0.1:${(this.#server.address() as AddressInfo).port}/client/v4`;
  }

  /** Answers from `scenario` from now on; requests of earlier runs get an error. */
  begin(run: number, scenario: Scenario): void {
    this.#run = run;
    this.#scenario = scenario;
    for (const tag of this.#polls.keys()) if (!tag.startsWith(`${run - 1}/`)) this.#polls.delete(tag);
  }

  /**
   * Runs poll `index` of the scenario: `poll` gets a signal that aborts it when
   * it sends more requests than any poll needs. Returns what it returned or threw,
   * and what it did wrong on the wire.
   */
  async poll<T>(index: number, poll: (signal: AbortSignal) => Promise<T>): Promise<{ result: PromiseSettledResult<T>; problems: () => string[] }> {
    const tag = `${this.#run}/${index}`;
    const state: PollState = { label: `poll ${index}`, attempts: new Map(), stop: new AbortController(), requests: 0, settled: false, behaviorsInFlight: 0, held: [], problems: new Set() };
    this.#polls.set(tag, state);
    let result: PromiseSettledResult<T>;
    try {
      result = { status: 'fulfilled', value: await this.#context.run(tag, () => poll(state.stop.signal)) };
    } catch (reason) {
      result = { status: 'rejected', reason };
    }
    state.settled = true;
    release(state);
    // Read later: a read the poll left running shows only once it goes on.
    return { result, problems: () => [...state.problems] };
  }

  async close(): Promise<void> {
    for (const state of this.#polls.values()) release(state);
    this.#pool.close();
    this.#server.closeAllConnections();
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }

  #sent(state: PollState, call: Call, path: string): void {
    if (++state.requests > MAX_REQUESTS_PER_POLL && !state.stop.signal.aborted) {
      state.problems.add(`${state.label} sent more than ${MAX_REQUESTS_PER_POLL} requests (the last: ${path}): it does not stop`);
      state.stop.abort(new Error(`fuzz: more than ${MAX_REQUESTS_PER_POLL} requests in one poll`));
    }
    if (call === 'summary' && state.settled) state.problems.add(`${state.label}: its summary read sent ${path} after the poll had ended`);
    if (call === 'behaviors') state.behaviorsInFlight++;
  }

  #answered(state: PollState, call: Call, path: string, ok: boolean): void {
    if (call === 'behaviors' && --state.behaviorsInFlight === 0) release(state);
    // A summary page read after its poll ended marks users in the stored levels the next poll reads with.
    if (call === 'summary' && ok && state.settled) state.problems.add(`${state.label}: its summary read took in ${path} after the poll had ended`);
  }

  #handle(req: IncomingMessage, res: ServerResponse): void {
    const url = new URL(req.url ?? '/', 'http://fuzz');
    const tag = String(req.headers[TAG_HEADER] ?? '');
    const state = this.#polls.get(tag);
    const [run, index] = tag.split('/').map(Number);
    const poll = run === this.#run ? this.#scenario?.polls[index!] : undefined;
    const match = /^\/client\/v4\/accounts\/[^/]+\/zt_risk_scoring\/([^/]+)$/.exec(url.pathname);
    if (!state || !poll || !match) {
      send(req, res, { status: 410, body: failed(0, `no poll ${tag} in this run`) });
      return;
    }
    const call: Call = match[1] === 'summary' ? 'summary' : match[1] === 'behaviors' ? 'behaviors' : 'user';
    // Without paging parameters (summary_paging: off) the summary comes whole, as page 1.
    const paged = url.searchParams.has('page');
    const page = call === 'summary' ? Number(url.searchParams.get('page')) || 1 : 0;
    const key = `${call} ${page}`;
    const attempt = state.attempts.get(key) ?? 0;
    state.attempts.set(key, attempt + 1);
    const perPage = paged ? Number(url.searchParams.get('per_page')) || 20 : Number.MAX_SAFE_INTEGER;
    const request = { call, page, perPage, userId: decodeURIComponent(match[1]!) };
    const answer = () => send(req, res, reply(this.#scenario!, poll, request, attempt));
    // The summary is answered after the behaviors: when the behaviors call fails, the poll has
    // failed before any summary page arrives, the order in which a read left running shows.
    if (call === 'summary' && state.behaviorsInFlight > 0 && !state.settled) state.held.push(answer);
    else answer();
  }
}

function release(state: PollState): void {
  for (const answer of state.held.splice(0)) answer();
}

function callOf(path: string): Call {
  const tail = /\/zt_risk_scoring\/([^/?]+)/.exec(path)?.[1];
  return tail === 'summary' ? 'summary' : tail === 'behaviors' ? 'behaviors' : 'user';
}

function send(req: IncomingMessage, res: ServerResponse, reply: Reply): void {
  if (res.destroyed || req.socket.destroyed) return;
  if ('reset' in reply) {
    req.socket.destroy();
    return;
  }
  const type = reply.body.startsWith('<') ? 'text/html' : 'application/json';
  res.writeHead(reply.status, { 'content-type': type, 'content-length': Buffer.byteLength(reply.body), ...reply.headers });
  res.end(reply.body);
}

// ---------------------------------------------------------------------------
// Answers

const ok = (result: unknown, extra: Record<string, unknown> = {}) => JSON.stringify({ success: true, errors: [], messages: [], result, ...extra });
const failed = (code: number, message: string) => JSON.stringify({ success: false, errors: [{ code, message }], messages: [], result: null });

/** The answer to one request of `poll`: the truth, with the plan's faults. */
export function reply(s: Scenario, poll: Poll, request: { call: Call; page: number; perPage: number; userId: string }, attempt: number): Reply {
  const bad = poll.answers.faults.find(
    (f): f is Extract<Fault, { kind: 'answer' }> => f.kind === 'answer' && f.call === request.call && (request.call !== 'summary' || f.page === request.page) && (f.every || attempt === 0),
  );
  const real: Reply =
    request.call === 'summary'
      ? { status: 200, body: summary(s, poll, request.page, request.perPage) }
      : request.call === 'behaviors'
        ? { status: 200, body: behaviors(s, poll) }
        : user(s, poll, request.userId);
  if (!bad) return real;
  return 'truncate' in bad.answer ? truncate(real, bad.answer.truncate) : (bad.answer as Exclude<BadAnswer, { truncate: number }>);
}

function truncate(real: Reply, at: number): Reply {
  if ('reset' in real) return real;
  return { status: real.status, body: real.body.slice(0, 1 + (at % (real.body.length - 1))) };
}

const userRecord = (u: UserSpec, level: RiskLevel) => ({
  user_id: u.user_id,
  email: expand(u.email),
  name: expand(u.name),
  event_count: u.event_count,
  last_event: u.last_event,
  max_risk_level: level,
});

function breakRecord(base: Record<string, unknown>, broken: Broken): unknown {
  if ('value' in broken) return broken.value;
  const record: Record<string, unknown> = { ...base, ...broken.set };
  if (broken.drop) delete record[broken.drop];
  return record;
}

/** The record a fault adds to the summary, if it adds one to this poll's. */
function extraRecord(s: Scenario, poll: Poll, f: Fault): unknown {
  if (f.kind === 'malformed user') {
    const of = f.of === null ? undefined : s.users[f.of % s.users.length];
    const base = of ? userRecord(of, f.level) : { user_id: f.id, email: 'ghost@example.com', name: 'Ghost', event_count: 1, last_event: '2026-11-22T17:59:00Z', max_risk_level: f.level };
    return breakRecord(base, f.broken);
  }
  if ((f.kind === 'duplicate' || f.kind === 'id case') && s.users.length > 0) {
    const u = s.users[f.user % s.users.length]!;
    const level = poll.truth.users[f.user % s.users.length];
    // Only someone the summary lists may be listed twice; anyone else would be made up.
    if (!level) return undefined;
    if (f.kind === 'duplicate') return userRecord(u, f.level);
    return { ...userRecord(u, level), user_id: u.user_id === u.user_id.toLowerCase() ? u.user_id.toUpperCase() : u.user_id.toLowerCase() };
  }
  return undefined;
}

/**
 * The summary's pages: the listed users (rotated), with the faults' records
 * added where they say, paged by `perPage` as a server does (a record added
 * pushes the rest along). `total` is what an honest total_count says: the
 * distinct users listed, and each malformed record that names nobody listed.
 * `floor` is the lowest total_count that still needs every page read (see lie()).
 */
function layout(s: Scenario, poll: Poll, perPage: number) {
  const pages = paged(s, poll, perPage, true);
  // A later page that repeats page 1 record for record is what an API that ignores paging sends, and
  // ends a read: a forged duplicate that makes one (a record alone on its page, forged again on the
  // next) hides the genuine record behind it from any client. Such a poll keeps its other faults.
  const first = JSON.stringify(pages.pages[0]);
  return pages.pages.slice(1).some((p) => JSON.stringify(p) === first) ? paged(s, poll, perPage, false) : pages;
}

function paged(s: Scenario, poll: Poll, perPage: number, duplicates: boolean) {
  const listed: unknown[] = s.users.flatMap((u, i) => {
    const level = poll.truth.users[i];
    return level ? [userRecord(u, level)] : [];
  });
  const turn = listed.length === 0 ? 0 : poll.answers.rotate % listed.length;
  const rows = [...listed.slice(turn), ...listed.slice(0, turn)];
  for (const f of poll.answers.faults) {
    const extra = extraRecord(s, poll, f);
    if (extra !== undefined && (f.kind === 'malformed user' || (f.kind === 'duplicate' && duplicates) || f.kind === 'id case'))
      rows.splice(Math.min(rows.length, (f.page - 1) * perPage + f.at), 0, extra);
  }
  const pages = Array.from({ length: Math.max(1, Math.ceil(rows.length / perPage)) }, (_, i) => rows.slice(i * perPage, (i + 1) * perPage));
  return {
    rows,
    pages,
    total: distinct(rows, (id) => id.toLowerCase()),
    // Counting ids as spelled, which is the most a client can count.
    floor: Math.max(distinct(pages.slice(0, -1).flat(), (id) => id) + 1, (pages.length - 1) * perPage + 1),
  };
}

/** Users a record list names: one per distinct id (as `fold` spells it), one per record without an id. */
function distinct(rows: readonly unknown[], fold: (id: string) => string): number {
  const ids = new Set<string>();
  let anonymous = 0;
  for (const row of rows) {
    const id = (row as { user_id?: unknown } | null)?.user_id;
    if (typeof id === 'string' && id !== '') ids.add(fold(id));
    else anonymous++;
  }
  return ids.size + anonymous;
}

function summary(s: Scenario, poll: Poll, asked: number, perPageAsked: number): string {
  const { faults, totals, pageCap } = poll.answers;
  const whole = perPageAsked === Number.MAX_SAFE_INTEGER;
  const perPage = whole ? perPageAsked : Math.max(1, Math.min(pageCap, perPageAsked));
  const { rows: all, pages, total, floor } = layout(s, poll, perPage);
  const ignoring = faults.find((f) => f.kind === 'ignore paging');
  const shifted = !whole && !ignoring && faults.some((f) => f.kind === 'shift' && f.page <= asked);
  const rows = shifted ? all.slice((asked - 1) * perPage + 1, asked * perPage + 1) : (pages[(ignoring ? 1 : asked) - 1] ?? []);
  let info: unknown = {
    page: ignoring && !ignoring.echo ? 1 : asked,
    per_page: whole ? rows.length : perPage,
    count: rows.length,
    ...(totals === 'none' ? {} : { total_count: total }),
    ...(totals === 'both' ? { total_pages: pages.length } : {}),
  };
  for (const f of faults) {
    if (f.kind === 'lie' && (f.page === null || f.page === asked)) info = lie(info, f, { asked, rows: rows.length, pages: pages.length, perPage, total, floor });
  }
  return ok({ users: rows }, info === undefined ? {} : { result_info: info });
}

/**
 * result_info after `f`'s lie. A client that believes result_info and reads
 * fewer pages loses the users of the others, with nothing to tell it so; those
 * lies are not told: no result_info on page 1 of several, a total_count below
 * `floor`, fewer total_pages without a total_count to check them by.
 */
function lie(info: unknown, f: Extract<Fault, { kind: 'lie' }>, at: { asked: number; rows: number; pages: number; perPage: number; total: number; floor: number }): unknown {
  if (typeof info !== 'object' || info === null) return info;
  const fields = info as Record<string, unknown>;
  if (f.field === 'result_info') {
    if (at.asked === 1 && at.pages > 1) return info;
    return f.how === 'garbled' ? 'result_info' : f.how === 'low' ? undefined : null;
  }
  if (f.how === 'garbled') return { ...fields, [f.field]: String(fields[f.field] ?? 'many') };
  const high = f.how === 'high';
  switch (f.field) {
    case 'total_count': {
      const value = high ? at.total + f.by : Math.max(at.floor, at.total - f.by);
      return value === at.total || (!high && value > at.total) ? info : { ...fields, total_count: value };
    }
    case 'total_pages':
      // Fewer pages is a lie a client can catch only by a total_count it can read (a garbled one is none)
      // that says the pages it was told of cannot hold everyone: at least `floor`. Duplicates can pad the
      // pages past what the distinct users fill (a forged record alone on page 1, the genuine one on page
      // 3); then an honest total_count agrees with page 1, and the pages left out hide the truth from any client.
      return high
        ? { ...fields, total_pages: at.pages + f.by }
        : typeof fields.total_count === 'number' && fields.total_count >= at.floor
          ? { ...fields, total_pages: Math.max(1, at.pages - f.by) }
          : info;
    case 'per_page':
      return { ...fields, per_page: high ? at.perPage + f.by : at.perPage - f.by };
    case 'count':
      return { ...fields, count: high ? at.rows + f.by : Math.max(0, at.rows - f.by) };
    case 'page':
      return { ...fields, page: high ? at.asked + f.by : at.asked - f.by };
  }
}

function behaviors(s: Scenario, poll: Poll): string {
  const listed = new Map<string, unknown>();
  s.behaviors.forEach((b, i) => {
    const state = poll.truth.behaviors[i];
    if (state) listed.set(b.id, { name: expand(b.name), description: expand(b.description), ...state });
  });
  for (const f of poll.answers.faults) {
    if (f.kind !== 'malformed behavior') continue;
    const of = typeof f.of === 'number' ? s.behaviors[f.of % s.behaviors.length] : undefined;
    const base = { name: of ? expand(of.name) : 'Ghost', description: of ? expand(of.description) : '', ...f.state };
    listed.set(of?.id ?? (typeof f.of === 'string' ? f.of : 'ghost_behavior'), breakRecord(base, f.broken));
  }
  // fromEntries defines `__proto__` as an own key, which JSON.stringify then writes.
  return ok({ behaviors: Object.fromEntries(listed) });
}

function user(s: Scenario, poll: Poll, userId: string): Reply {
  const i = s.users.findIndex((u) => u.user_id.toLowerCase() === userId.toLowerCase());
  const level = poll.truth.users[i];
  const u = s.users[i];
  if (!u || !level) return { status: 404, body: failed(1002, 'user not found') };
  return { status: 200, body: ok({ email: expand(u.email), name: expand(u.name), risk_level: level, last_reset_time: null, events: s.riskEvents }) };
}
