import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Behavior, RiskEventDetail, RiskUser } from '../model.ts';

/**
 * A loopback stand-in for Cloudflare's risk-scoring API (SPEC §1): the three
 * endpoints, the v4 envelope, pagination, auth, and faults injected per
 * request. The demo, the tests and the benchmark all run against this one.
 */

/**
 * The summary's rows by user id, in the order pages list them. Paging reads a
 * slice by position, so serving a million users costs a page, not a scan;
 * changing a user in place keeps their position.
 */
export class UserTable extends Map<string, RiskUser | Record<string, unknown>> {
  #order: string[] | undefined;

  override set(key: string, value: RiskUser | Record<string, unknown>): this {
    if (this.#order && !this.has(key)) this.#order = undefined;
    return super.set(key, value);
  }

  override delete(key: string): boolean {
    if (this.#order && this.has(key)) this.#order = undefined;
    return super.delete(key);
  }

  override clear(): void {
    this.#order = undefined;
    super.clear();
  }

  /** Rows `start` to `end` (exclusive), as a page lists them. */
  slice(start: number, end: number): (RiskUser | Record<string, unknown>)[] {
    this.#order ??= [...this.keys()];
    return this.#order.slice(start, end).map((key) => this.get(key)!);
  }
}

export interface FakeAccount {
  /** Summary rows in the order pages list them. A test may put malformed rows here too. */
  readonly users: UserTable;
  readonly behaviors: Map<string, Behavior | Record<string, unknown>>;
  /** Risk events per user id, for the per-user endpoint. */
  readonly events: Map<string, RiskEventDetail[]>;
}

export interface ApiRequest {
  readonly call: 'summary' | 'behaviors' | 'user' | 'unknown';
  readonly accountId: string | undefined;
  readonly path: string;
  readonly query: URLSearchParams;
  readonly headers: IncomingMessage['headers'];
  /** When it arrived (epoch ms). */
  readonly receivedAt: number;
}

/** What a fault hook may answer instead of the normal response. */
export type Fault = { readonly status: number; readonly body?: unknown; readonly headers?: Record<string, string> } | { readonly reset: true } | { readonly hang: true } | { readonly delayMs: number };

export interface FakeApiOptions {
  /** Largest per_page honoured, as a real API caps it. Default 1000. */
  readonly maxPerPage?: number;
  /** Required credential; requests without it get Cloudflare's 403 envelope. */
  readonly auth?: { readonly token: string } | { readonly email: string; readonly key: string };
  /** Leave `total_pages` out of result_info (Cloudflare sometimes does). */
  readonly omitTotalPages?: boolean;
  /** How many of the latest requests `requests` keeps. Default MAX_RECORDED_REQUESTS. */
  readonly maxRecorded?: number;
}

/**
 * `requests` keeps this many of the latest requests, no more: the demo runs for
 * as long as anyone likes, and every request carries its credential headers.
 */
export const MAX_RECORDED_REQUESTS = 10_000;

export const API_PREFIX = '/client/v4';

export class FakeRiskApi {
  readonly accounts = new Map<string, FakeAccount>();
  /** The latest requests, oldest first (at most `maxRecorded`, older ones dropped), for tests to inspect. */
  readonly requests: ApiRequest[] = [];
  /** Consulted before every answer; return a Fault to inject it. */
  fault: ((request: ApiRequest) => Fault | undefined) | undefined;
  /** Serve page 1 whatever `page` asks, like a server that ignores paging. */
  ignorePage = false;
  readonly options: FakeApiOptions;
  readonly #server: Server;
  readonly #hanging = new Set<ServerResponse>();

  private constructor(server: Server, options: FakeApiOptions) {
    this.#server = server;
    this.options = options;
  }

  /** Starts on 127.0.0.1 with an ephemeral port (or `port`). */
  static async start(options: FakeApiOptions = {}, port = 0): Promise<FakeRiskApi> {
    let api: FakeRiskApi | undefined;
    const server = process.getBuiltinModule('node:http').createServer((req, res) => void api!.#handle(req, res));
    api = new FakeRiskApi(server, options);
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, '127.0.0.1', () => resolve());
    });
    return api;
  }

  /** The `api_base_url` to give riskwatch. */
  get baseUrl(): string {
    const { port } = this.#server.address() as AddressInfo;
    return `http://127.0.0.1:${port}${API_PREFIX}`;
  }

  account(id: string): FakeAccount {
    let account = this.accounts.get(id);
    if (!account) {
      account = { users: new UserTable(), behaviors: new Map(), events: new Map() };
      this.accounts.set(id, account);
    }
    return account;
  }

  async close(): Promise<void> {
    for (const res of this.#hanging) res.destroy();
    this.#server.closeAllConnections();
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }

  async #handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://fake');
    const request = classify(url, req.headers);
    this.requests.push(request);
    const keep = this.options.maxRecorded ?? MAX_RECORDED_REQUESTS;
    if (this.requests.length > keep) this.requests.splice(0, this.requests.length - keep);

    const fault = this.fault?.(request);
    if (fault && 'reset' in fault) {
      req.socket.destroy();
      return;
    }
    if (fault && 'hang' in fault) {
      this.#hanging.add(res);
      res.on('close', () => this.#hanging.delete(res));
      return;
    }
    if (fault && 'delayMs' in fault) await new Promise((resolve) => setTimeout(resolve, fault.delayMs));
    if (fault && 'status' in fault) {
      const body = typeof fault.body === 'string' ? fault.body : JSON.stringify(fault.body ?? failure(fault.status, 'injected fault'));
      res.writeHead(fault.status, { 'content-type': 'application/json', ...fault.headers });
      res.end(body);
      return;
    }

    if (!this.#authorized(req.headers)) {
      return send(res, 403, failure(10000, 'Authentication error'));
    }
    const account = request.accountId === undefined ? undefined : this.accounts.get(request.accountId);
    if (request.call === 'unknown' || !account) {
      return send(res, 404, failure(7003, 'Could not route to the requested resource'));
    }
    switch (request.call) {
      case 'summary':
        return send(res, 200, this.#summary(account, request.query));
      case 'behaviors':
        return send(res, 200, success({ behaviors: Object.fromEntries(account.behaviors) }));
      case 'user': {
        const userId = decodeURIComponent(request.path.split('/').pop() ?? '');
        const user = account.users.get(userId) as RiskUser | undefined;
        if (!user) return send(res, 404, failure(1002, 'user not found'));
        return send(res, 200, success({ email: user.email, name: user.name, risk_level: user.max_risk_level, events: account.events.get(userId) ?? [] }));
      }
    }
  }

  #authorized(headers: IncomingMessage['headers']): boolean {
    const auth = this.options.auth;
    if (!auth) return true;
    if ('token' in auth) return headers.authorization === `Bearer ${auth.token}`;
    return headers['x-auth-email'] === auth.email && headers['x-auth-key'] === auth.key;
  }

  #summary(account: FakeAccount, query: URLSearchParams): unknown {
    const maxPerPage = this.options.maxPerPage ?? 1000;
    const perPage = Math.min(maxPerPage, Math.max(1, Number(query.get('per_page')) || 20));
    const page = this.ignorePage ? 1 : Math.max(1, Number(query.get('page')) || 1);
    const total = account.users.size;
    const rows = account.users.slice((page - 1) * perPage, page * perPage);
    const totalPages = Math.max(1, Math.ceil(total / perPage));
    return {
      ...success({ users: rows }),
      result_info: {
        page,
        per_page: perPage,
        count: rows.length,
        total_count: total,
        ...(this.options.omitTotalPages ? {} : { total_pages: totalPages }),
      },
    };
  }
}

function classify(url: URL, headers: IncomingMessage['headers']): ApiRequest {
  const path = url.pathname;
  const match = /^\/client\/v4\/accounts\/([^/]+)\/zt_risk_scoring\/([^/]+)$/.exec(path);
  const tail = match?.[2];
  const call = !match ? 'unknown' : tail === 'summary' ? 'summary' : tail === 'behaviors' ? 'behaviors' : 'user';
  return { call, accountId: match?.[1], path, query: url.searchParams, headers, receivedAt: Date.now() };
}

export function success(result: unknown): { success: true; errors: []; messages: []; result: unknown } {
  return { success: true, errors: [], messages: [], result };
}

export function failure(code: number, message: string): { success: false; errors: { code: number; message: string }[]; messages: []; result: null } {
  return { success: false, errors: [{ code, message }], messages: [], result: null };
}

function send(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}
