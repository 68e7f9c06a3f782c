import * as z from 'zod';
import type { Clock } from '../clock.ts';
import type { Credential } from '../config/config.ts';
import type { Logger } from '../log.ts';
import type { StoredLevels } from '../detect/stored-levels.ts';
import type { Behavior, RiskEventDetail, RiskLevel, RiskUser } from '../model.ts';
import { parseRetryAfter, type RetryPolicy, withRetry } from '../retry.ts';
import { USER_AGENT } from '../version.ts';
import type { RequestBudget } from './budget.ts';
import { describeNetworkError, excerpt, type Http, isRetryableStatus, sharedHttp } from '../http.ts';
import { type ApiMessage, CloudflareError } from './errors.ts';
import { together } from '../together.ts';
import { isUserId, notUserId, parseBehavior, parseRiskEvent, parseUser, userFields } from './records.ts';

/** The three risk-scoring calls (SPEC §1), named for logs and metrics. */
export type ApiCall = 'summary' | 'behaviors' | 'user';

/** Every user of an account's summary, read from all its pages. */
export interface Summary {
  /** By id: every user, or, when the caller passed `known`, those not at the level it already has. */
  readonly users: ReadonlyMap<string, RiskUser>;
  /** With `known`: the users read at the level the caller already had, only counted and marked there. */
  readonly unchanged: { readonly count: number; has(userId: string): boolean } | undefined;
  /** Users whose records were malformed or listed them at two levels: their previous state must be kept. */
  readonly skippedUserIds: ReadonlySet<string>;
  /** How many of those were listed at two levels. */
  readonly ambiguousUsers: number;
  /** Malformed records without a usable user_id: any user may be among them. */
  readonly unidentifiedSkips: number;
  /** Pages read: more than one is not a snapshot taken at one moment. */
  readonly pages: number;
}

export interface BehaviorList {
  readonly behaviors: ReadonlyMap<string, Behavior>;
  /** Behaviors whose record was malformed: their previous state must be kept. */
  readonly skippedIds: ReadonlySet<string>;
}

export interface UserDetail {
  readonly email: string | undefined;
  readonly name: string | undefined;
  readonly risk_level: RiskLevel | undefined;
  readonly last_reset_time: string | undefined;
  readonly events: readonly RiskEventDetail[];
}

export interface CloudflareClientOptions {
  readonly baseUrl: string;
  readonly credential: Credential;
  /** The budget of this credential, shared with every other client using it. */
  readonly budget: RequestBudget;
  readonly clock: Clock;
  readonly log: Logger;
  /** A shared keep-alive pool; the process's shared one when left out. */
  readonly http?: Http;
  /** Per attempt, from sending the request to the last byte of the body. Default 30 s. */
  readonly timeoutMs?: number;
  readonly retry?: RetryPolicy;
  /** Users asked for per summary page. Default 1000. */
  readonly pageSize?: number;
  /** Summary pages in flight at once, after the first. Default 4. */
  readonly pageConcurrency?: number;
  /** `auto` (default) pages through the summary; `off` takes one answer as all of it (SPEC §1). */
  readonly summaryPaging?: 'auto' | 'off';
  /** Called once per HTTP attempt with its status, or 'error' when no response came (for metrics). */
  readonly onResponse?: (call: ApiCall, status: number | 'error') => void;
  /** Called once per read that set records aside: malformed ones, and users listed at two levels (for metrics). */
  readonly onSkipped?: (accountId: string, kind: SkippedKind, count: number) => void;
  readonly random?: () => number;
}

export const DEFAULT_RETRY: RetryPolicy = { attempts: 4, baseDelayMs: 1000, maxDelayMs: 30_000, maxWaitMs: 5 * 60_000 };

/** What a read sets aside: a record that breaks the schema, or a user listed at two levels in one read. */
export type SkippedKind = 'malformed_user' | 'ambiguous_user' | 'malformed_behavior' | 'malformed_risk_event';

/** The fix for a server that answers every page with the first: riskwatch can only say it. */
const IGNORES_PAGING = 'the API ignores paging, so the summary cannot be read page by page; if it answers with the whole summary at once, set cloudflare.summary_paging: off';

const HAS_CAPITALS = /[A-F]/;

/** `/accounts/<id>/zt_risk_scoring/<rest>`: every call's path (`rest` already encoded). */
function riskScoringPath(accountId: string, rest: string): string {
  return `/accounts/${encodeURIComponent(accountId)}/zt_risk_scoring/${rest}`;
}

/** The largest response body read; a bigger one is refused rather than buffered. */
const MAX_BODY_BYTES = 64 * 1024 * 1024;
/** No real account has this many summary pages; a server claiming more is misbehaving. */
const MAX_PAGES = 100_000;

const PERMISSION: Record<ApiCall, string> = {
  summary: 'Zero Trust: PII Read',
  behaviors: 'Zero Trust Read',
  user: 'Zero Trust: PII Read',
};

const apiMessage = z.looseObject({ code: z.union([z.number(), z.string()]).optional(), message: z.string().catch('') });
const envelopeSchema = z.looseObject({
  success: z.boolean(),
  errors: z.array(apiMessage).catch([]).default([]),
  result: z.unknown(),
  result_info: z
    .looseObject({
      page: z.number().optional().catch(undefined),
      per_page: z.number().optional().catch(undefined),
      count: z.number().optional().catch(undefined),
      total_count: z.number().optional().catch(undefined),
      total_pages: z.number().optional().catch(undefined),
    })
    .nullish()
    .catch(undefined),
});
type Envelope = z.output<typeof envelopeSchema>;
type ResultInfo = NonNullable<Envelope['result_info']>;

export interface SummaryOptions {
  /** The levels the caller has: users read at them are only marked there, not kept (a million records a poll otherwise). */
  readonly known?: StoredLevels;
}

/** The summary changed under us while we paged through it (or came back short); reading again may succeed. */
export class SummaryChangedError extends CloudflareError {}

/**
 * A Cloudflare risk-scoring client for one credential: every call authenticated,
 * budgeted, timed out, retried, and its answer validated before anyone sees it.
 */
export class CloudflareClient {
  readonly #options: CloudflareClientOptions;
  readonly #headers: Record<string, string>;
  /** Accounts whose result_info was found to disagree with summary_paging off, and said so. */
  readonly #claimNoted = new Set<string>();

  constructor(options: CloudflareClientOptions) {
    this.#options = options;
    const { credential } = options;
    this.#headers = {
      accept: 'application/json',
      'user-agent': USER_AGENT,
      ...(credential.scheme === 'token' ? { authorization: `Bearer ${credential.token.reveal()}` } : { 'x-auth-email': credential.email, 'x-auth-key': credential.key.reveal() }),
    };
  }

  /**
   * Every user of the account's summary. All pages or an error, never a partial
   * list: a summary that changed while it was read is read once more.
   */
  async fetchSummary(accountId: string, signal?: AbortSignal, options: SummaryOptions = {}): Promise<Summary> {
    try {
      return await this.#readSummary(accountId, signal, options);
    } catch (error) {
      if (!(error instanceof SummaryChangedError)) throw error;
      this.#options.log.info({ account: accountId, reason: error.message }, 'summary changed while it was read; reading it again');
      return await this.#readSummary(accountId, signal, options);
    }
  }

  /** Every risk behavior of the account, by id. */
  async fetchBehaviors(accountId: string, signal?: AbortSignal): Promise<BehaviorList> {
    const path = riskScoringPath(accountId, 'behaviors');
    const { result } = await this.#get('behaviors', accountId, path, signal);
    const raw = isRecord(result) ? result.behaviors : undefined;
    if (!isRecord(raw)) throw this.#malformed('behaviors', path, 'result.behaviors is not an object');
    const behaviors = new Map<string, Behavior>();
    const skippedIds = new Set<string>();
    const reasons: string[] = [];
    for (const [id, record] of Object.entries(raw)) {
      const parsed = parseBehavior(id, record);
      if (parsed.ok) {
        behaviors.set(id, parsed.value);
      } else {
        skippedIds.add(id);
        reasons.push(`behaviors.${id}: ${parsed.reason}`);
      }
    }
    this.#warnSkipped(accountId, 'malformed_behavior', reasons, 'skipped {n} malformed behavior record(s); their previous state is kept');
    return { behaviors, skippedIds };
  }

  /**
   * For `check-config --online`: whether this credential may read the
   * account's summary (one user of its first page) or behaviors. One request,
   * not retried: undefined when it may, else why not, in one line (a 401 or 403
   * names the permission it lacks).
   */
  async access(accountId: string, call: 'summary' | 'behaviors', signal?: AbortSignal): Promise<string | undefined> {
    const path = riskScoringPath(accountId, call === 'summary' ? 'summary?page=1&per_page=1' : call);
    try {
      await this.#options.budget.acquire(signal, accountId);
      await this.#attempt(call, path, signal);
      return undefined;
    } catch (error) {
      if (error instanceof CloudflareError) return error.message;
      throw error;
    }
  }

  /** One user's recent risk events, to enrich an alert. */
  async fetchUserDetail(accountId: string, userId: string, signal?: AbortSignal): Promise<UserDetail> {
    const path = riskScoringPath(accountId, encodeURIComponent(userId));
    const { result } = await this.#get('user', accountId, path, signal);
    if (!isRecord(result) || !Array.isArray(result.events)) throw this.#malformed('user', path, 'result.events is not a list');
    const events: RiskEventDetail[] = [];
    const reasons: string[] = [];
    result.events.forEach((record, i) => {
      const parsed = parseRiskEvent(record);
      if (parsed.ok) events.push(parsed.value);
      else reasons.push(`events[${i}]: ${parsed.reason}`);
    });
    this.#warnSkipped(accountId, 'malformed_risk_event', reasons, 'skipped {n} malformed risk event record(s) of a user');
    const text = (value: unknown) => (typeof value === 'string' ? value : undefined);
    const level = result.risk_level;
    return {
      email: text(result.email),
      name: text(result.name),
      risk_level: level === 'low' || level === 'medium' || level === 'high' ? level : undefined,
      last_reset_time: text(result.last_reset_time),
      events,
    };
  }

  async #readSummary(accountId: string, signal: AbortSignal | undefined, options: SummaryOptions): Promise<Summary> {
    options.known?.beginRead();
    const reader = new SummaryReader(accountId, options.known);
    const pages = await this.#readPages(accountId, reader, signal);
    const summary = reader.finish();
    this.#warnSkipped(accountId, 'malformed_user', reader.reasons, 'skipped {n} malformed user record(s); their previous state is kept');
    this.#warnSkipped(accountId, 'ambiguous_user', reader.ambiguityReasons, '{n} user(s) listed at two levels in one read; their previous state is kept until a read agrees with itself');
    return { ...summary, pages };
  }

  /** Feeds every summary page to `reader`; returns how many pages it read. */
  async #readPages(accountId: string, reader: SummaryReader, signal?: AbortSignal): Promise<number> {
    if (this.#options.summaryPaging === 'off') {
      const whole = await this.#summaryPage(accountId, undefined, signal);
      reader.add(whole.rows, 1);
      whole.rows.length = 0;
      this.#noteUnpagedClaim(accountId, whole.info, reader.distinct);
      return 1;
    }
    const first = await this.#summaryPage(accountId, 1, signal);
    try {
      reader.add(first.rows, 1);
      return await this.#readLaterPages(accountId, reader, first.info, signal);
    } finally {
      // The promises that carried page 1 here may already be old enough that V8 keeps what they point at until
      // its next full collection: emptied, its records go with the young ones (issue 28: a few hundred MB a round
      // promoted at a thousand accounts otherwise).
      first.rows.length = 0;
    }
  }

  /** Pages 2 and on, as page 1's result_info calls for them; returns how many pages were read in all. */
  async #readLaterPages(accountId: string, reader: SummaryReader, info: ResultInfo | undefined, signal?: AbortSignal): Promise<number> {
    // A response without result_info is one complete page (SPEC §1).
    if (!info) return 1;
    reader.totalCount = info.total_count;
    // Every user counted on page 1: that page is the whole summary, as of one moment, however many
    // pages the API claims. The claimed pages are still read until one adds nobody (an API that
    // ignores paging repeats page 1): a user listed again there at another level is caught.
    const wholeAtOnce = reader.complete;

    // Without total_pages, pages are read until an empty one: total_count / per_page would be a guess
    // (a user listed twice pushes the last record onto a page past it).
    const lastPage = info.total_pages ?? MAX_PAGES;
    if (lastPage > MAX_PAGES) {
      throw new CloudflareError(`summary of account ${accountId}: the API reports ${lastPage} pages, more than the ${MAX_PAGES} riskwatch reads`, { retryable: false });
    }
    const untilEmpty = info.total_pages === undefined;
    const readPage = async (page: number, pageSignal: AbortSignal) => {
      const next = await this.#summaryPage(accountId, page, pageSignal);
      const changed = totalsDiffer(info, next.info);
      if (changed) throw new SummaryChangedError(`summary of account ${accountId}: ${changed} between page 1 and page ${page}`, { retryable: true });
      // The records decide, not the `page` the answer claims: a page that says it is another one may
      // still hold users no other page lists (skipping it once let a forged duplicate stand).
      const claimed = next.info?.page;
      reader.add(next.rows, page, untilEmpty, claimed !== undefined && claimed !== page ? `asked for page ${page} and got page ${claimed}` : undefined);
      next.rows.length = 0;
    };
    // Pages the API says hold users are read a few at once; past them (a page that should add nobody
    // or be empty, to prove the read over) one at a time, so that a small account costs one request
    // more, not one per page worker.
    const expected = wholeAtOnce ? 1 : (info.total_pages ?? (info.total_count === undefined ? MAX_PAGES : Math.ceil(info.total_count / (info.per_page || this.#pageSize))));
    let requested = await this.#eachPage(2, Math.min(expected, lastPage), this.#options.pageConcurrency ?? 4, signal, () => reader.exhausted, readPage);
    if (!reader.exhausted) requested = Math.max(requested, await this.#eachPage(Math.max(2, expected + 1), lastPage, 1, signal, () => reader.exhausted, readPage));
    if (untilEmpty && !reader.exhausted) {
      throw new CloudflareError(`summary of account ${accountId}: still no empty page after ${MAX_PAGES} pages`, { retryable: false });
    }
    // More than one request is not a snapshot: the summary may have changed between them (an empty
    // page 2 may be a user shifted onto page 1 after it was read). Page 1 is the whole summary, as
    // of one moment, only if no later page added anyone (a total_count that lies low says otherwise).
    return wholeAtOnce && !reader.grewAfterFirstPage ? 1 : requested;
  }

  /**
   * Runs `fetch` for pages first..last, `concurrency` at once, until `done`
   * says the read is over; the first failure stops the rest. Returns the last
   * page asked for (first - 1 when none was).
   */
  async #eachPage(
    first: number,
    last: number,
    concurrency: number,
    signal: AbortSignal | undefined,
    done: () => boolean,
    fetch: (page: number, signal: AbortSignal) => Promise<void>,
  ): Promise<number> {
    let next = first;
    const worker = async (pageSignal: AbortSignal) => {
      while (next <= last && !pageSignal.aborted && !done()) {
        const page = next++;
        await fetch(page, pageSignal);
      }
    };
    if (first <= last)
      await together(
        signal,
        Array.from({ length: Math.min(concurrency, last - first + 1) }, () => worker),
      );
    return next - 1;
  }

  /** With summary_paging off, result_info is only what the API claims: said once per account if the answer disagrees. */
  #noteUnpagedClaim(accountId: string, info: ResultInfo | undefined, distinct: number): void {
    if (!info || this.#claimNoted.has(accountId)) return;
    const pages = info.total_pages ?? 1;
    if ((info.total_count === undefined || info.total_count === distinct) && pages <= 1) return;
    this.#claimNoted.add(accountId);
    this.#options.log.warn(
      { account: accountId, users: distinct, total_count: info.total_count, total_pages: info.total_pages },
      `cloudflare.summary_paging is off: the summary's one answer lists ${distinct} users although its result_info claims ${info.total_count ?? '?'} over ${pages} page(s); taking the answer as the whole summary`,
    );
  }

  get #pageSize(): number {
    return this.#options.pageSize ?? 1000;
  }

  /** One page of the summary, or with `page` undefined, the summary asked for without paging parameters. */
  async #summaryPage(accountId: string, page: number | undefined, signal?: AbortSignal): Promise<{ rows: unknown[]; info: ResultInfo | undefined }> {
    const paging = page === undefined ? '' : `?page=${page}&per_page=${this.#pageSize}`;
    const path = riskScoringPath(accountId, `summary${paging}`);
    const envelope = await this.#get('summary', accountId, path, signal);
    const users = isRecord(envelope.result) ? envelope.result.users : undefined;
    if (!Array.isArray(users)) throw this.#malformed('summary', path, 'result.users is not a list');
    const info = envelope.result_info ?? undefined;
    return { rows: users, info };
  }

  /** One authenticated, budgeted (in the account's turn), retried GET returning a successful v4 envelope. */
  #get(call: ApiCall, accountId: string, path: string, signal?: AbortSignal): Promise<Envelope> {
    const { clock, log, budget } = this.#options;
    return withRetry(
      async () => {
        await budget.acquire(signal, accountId);
        return this.#attempt(call, path, signal);
      },
      this.#options.retry ?? DEFAULT_RETRY,
      {
        clock,
        signal,
        random: this.#options.random,
        onRetry: (error, attempt, delayMs) => log.warn({ call, path, attempt, delayMs, err: error.message }, 'Cloudflare request failed; retrying'),
      },
    );
  }

  async #attempt(call: ApiCall, path: string, signal?: AbortSignal): Promise<Envelope> {
    const { baseUrl, budget, clock, onResponse } = this.#options;
    const timeoutMs = this.#options.timeoutMs ?? 30_000;
    // A timer of our own, cleared once the answer is read: AbortSignal.timeout's would outlive every request by
    // its 30 s, five of them an account at MSSP scale (issue 28).
    const timeout = new AbortController();
    const timer = setTimeout(() => timeout.abort(new DOMException(`timed out after ${timeoutMs} ms`, 'TimeoutError')), timeoutMs);
    const attemptSignal = signal ? AbortSignal.any([signal, timeout.signal]) : timeout.signal;
    let status: number;
    let headers: Record<string, string | string[] | undefined>;
    let text: string;
    try {
      const response = await (this.#options.http ?? sharedHttp).request(baseUrl + path, { method: 'GET', headers: this.#headers, signal: attemptSignal });
      status = response.statusCode;
      headers = response.headers;
      text = await readBody(response.body, attemptSignal, path);
    } catch (error) {
      onResponse?.(call, 'error');
      if (signal?.aborted) throw signal.reason;
      if (error instanceof CloudflareError) throw error;
      const why = timeout.signal.aborted ? `timed out after ${timeoutMs} ms` : describeNetworkError(error);
      throw new CloudflareError(`GET ${path}: ${why}`, { retryable: true, cause: error });
    } finally {
      clearTimeout(timer);
    }
    onResponse?.(call, status);

    const remaining = Number(header(headers, 'x-ratelimit-remaining'));
    const limit = Number(header(headers, 'x-ratelimit-limit'));
    if (header(headers, 'x-ratelimit-remaining') !== undefined && Number.isFinite(remaining)) {
      budget.observeRemaining(remaining, Number.isFinite(limit) && limit > 0 ? limit : undefined);
    }
    const retryAfterMs = parseRetryAfter(headers['retry-after'], clock.now());
    if (status === 429) budget.blockUntil(clock.now() + (retryAfterMs ?? 60_000));

    const retryable = isRetryableStatus(status);
    let json: unknown;
    try {
      json = JSON.parse(text);
    } catch {
      const type = header(headers, 'content-type') ?? 'no content-type';
      throw new CloudflareError(`GET ${path}: HTTP ${status}, body is not JSON (${type}): ${excerpt(text)}`, { retryable, status, retryAfterMs });
    }
    const parsed = envelopeSchema.safeParse(json);
    if (!parsed.success) {
      throw new CloudflareError(`GET ${path}: HTTP ${status}, body is not a Cloudflare API response (no "success" flag): ${excerpt(text)}`, { retryable, status, retryAfterMs });
    }
    const envelope = parsed.data;
    if (status >= 200 && status < 300 && envelope.success) return envelope;

    const errors: ApiMessage[] = envelope.errors.map((e) => ({ code: e.code, message: e.message }));
    const said = errors.length > 0 ? errors.map((e) => (e.code === undefined ? e.message : `${e.message} (code ${e.code})`)).join('; ') : 'no error message';
    const auth =
      status === 401 || status === 403
        ? `; the credential needs the "${PERMISSION[call]}" permission on this account`
        : status === 404 && call !== 'user'
          ? '; no such account for this credential: check the account id'
          : '';
    const what = status >= 200 && status < 300 ? `HTTP ${status} with success: false` : `HTTP ${status}`;
    throw new CloudflareError(`GET ${path}: ${what}: ${said}${auth}`, { retryable, status, retryAfterMs, errors });
  }

  #malformed(call: ApiCall, path: string, what: string): CloudflareError {
    return new CloudflareError(`GET ${path}: malformed ${call} response: ${what}`, { retryable: false });
  }

  /** One line per read for what it set aside, with a few examples, and the count for metrics. */
  #warnSkipped(accountId: string, kind: SkippedKind, reasons: readonly string[], message: string): void {
    if (reasons.length === 0) return;
    this.#options.onSkipped?.(accountId, kind, reasons.length);
    this.#options.log.warn({ account: accountId, skipped: reasons.length, examples: reasons.slice(0, 5) }, message.replace('{n}', String(reasons.length)));
  }
}

/**
 * Collects summary pages: de-duplicates users, sets aside a user listed at two
 * levels in one read, notices a server that ignores `page`, checks the count.
 */
class SummaryReader {
  readonly #accountId: string;
  /** The total_count the API reported, when it did. */
  totalCount: number | undefined;
  readonly users = new Map<string, RiskUser>();
  readonly #known: StoredLevels | undefined;
  /** Users with only malformed records so far. */
  readonly skippedUserIds = new Set<string>();
  /** Users listed at two levels in this read: which one is true is unknown, so neither is taken. */
  readonly ambiguousUserIds = new Set<string>();
  readonly reasons: string[] = [];
  readonly ambiguityReasons: string[] = [];
  unidentifiedSkips = 0;

  constructor(accountId: string, known?: StoredLevels) {
    this.#accountId = accountId;
    this.#known = known;
  }

  /** Distinct users read so far, whether kept, only marked, malformed or ambiguous. */
  get distinct(): number {
    return this.users.size + (this.#known?.unchangedCount ?? 0) + this.skippedUserIds.size + this.ambiguousUserIds.size + this.unidentifiedSkips;
  }

  /** The read holds as many distinct users as the API said there are (SPEC §1). */
  get complete(): boolean {
    return this.totalCount !== undefined && this.distinct >= this.totalCount;
  }

  /** The read is over before its last page: it was complete, and then a page added nobody. */
  exhausted = false;

  /** A page after the first named someone new: page 1 was not the whole summary, whatever total_count said. */
  grewAfterFirstPage = false;

  #firstPage: readonly unknown[] = [];

  /** Users named so far (unidentified records name nobody: a page of them is no progress). */
  get #identified(): number {
    return this.distinct - this.unidentifiedSkips;
  }

  /**
   * Adds a page's records; with `untilEmpty` (no total_pages), an empty page ends the read.
   * `mislabelled` says how the answer named another page than the one asked, for the error.
   */
  add(rows: readonly unknown[], page: number, untilEmpty = false, mislabelled?: string): void {
    const before = this.#identified;
    rows.forEach((row, i) => {
      const parsed = parseUser(row);
      if (parsed.ok) this.#addUser(parsed.value, page, i);
      else this.#addMalformed(row, parsed.reason, page, i);
    });
    if (page === 1) {
      this.#firstPage = rows;
      return;
    }
    if (rows.length === 0) this.exhausted ||= untilEmpty || this.complete;
    else if (this.#identified !== before) this.grewAfterFirstPage = true;
    else if (!this.complete) this.repeated(mislabelled ?? `page ${page} repeated only users of earlier pages`);
    // Complete, and this page named nobody new. Page 1 again is an API that ignores paging: the end.
    // Anything else (a record of someone already read, a malformed one) is no end: a later page may
    // still list one of them at another level, which would make them ambiguous.
    else if (samePage(rows, this.#firstPage)) this.exhausted = true;
  }

  /**
   * A page that brought no one new: after a complete read, the end of it (an API that ignores
   * paging answered with the whole summary again); before, an API whose summary cannot be paged.
   */
  repeated(what: string): void {
    if (this.complete) {
      this.exhausted = true;
      return;
    }
    throw new CloudflareError(`summary of account ${this.#accountId}: ${what}: ${IGNORES_PAGING}`, { retryable: false });
  }

  /** The hot path, once per user per poll: a stored-level check, and a Map lookup for the rare rest. */
  #addUser(user: RiskUser, page: number, i: number): void {
    const id = user.user_id;
    if (this.ambiguousUserIds.size > 0 && this.ambiguousUserIds.has(id)) return;
    const known = this.#known;
    const verdict = known?.see(user) ?? 'changed';
    if (verdict === 'again') return;
    if (verdict === 'first') {
      // At their stored level, and marked there. An earlier record at another level makes them ambiguous.
      const earlier = this.users.size > 0 ? this.users.get(id) : undefined;
      if (earlier) this.#ambiguous(id, earlier.max_risk_level, user.max_risk_level, page, i);
      else if (this.skippedUserIds.size > 0) this.skippedUserIds.delete(id);
      return;
    }
    // Another level than stored, or new: kept, unless its id names nobody or an earlier record of this read disagrees.
    if (!isUserId(id)) {
      this.#addMalformed(user, notUserId(id).reason, page, i);
      return;
    }
    // A UUID in capitals is the same user as in small letters, which is how Cloudflare writes them and they are kept.
    if (HAS_CAPITALS.test(id)) {
      this.#addUser({ ...user, user_id: id.toLowerCase() }, page, i);
      return;
    }
    if (known?.seenUnchanged(id)) {
      this.#ambiguous(id, known.get(id)!, user.max_risk_level, page, i);
      return;
    }
    const earlier = this.users.get(id);
    if (earlier && earlier.max_risk_level !== user.max_risk_level) {
      this.#ambiguous(id, earlier.max_risk_level, user.max_risk_level, page, i);
      return;
    }
    this.users.set(id, userFields(user));
    if (this.skippedUserIds.size > 0) this.skippedUserIds.delete(id);
  }

  #ambiguous(id: string, one: RiskLevel, other: RiskLevel, page: number, i: number): void {
    this.users.delete(id);
    this.#known?.unsee(id);
    this.ambiguousUserIds.add(id);
    this.ambiguityReasons.push(`page ${page} users[${i}]: ${id} listed at ${one} and at ${other}`);
  }

  #addMalformed(row: unknown, reason: string, page: number, i: number): void {
    this.reasons.push(`page ${page} users[${i}]: ${reason}`);
    const id = (row as { user_id?: unknown } | null)?.user_id;
    // A record whose id is no UUID names nobody: anyone may be behind it.
    if (!isUserId(id)) {
      this.unidentifiedSkips++;
      return;
    }
    const userId = id.toLowerCase();
    if (!this.users.has(userId) && !this.#known?.seenUnchanged(userId) && !this.ambiguousUserIds.has(userId)) this.skippedUserIds.add(userId);
  }

  finish(): Omit<Summary, 'pages'> {
    const seen = this.distinct;
    if (this.totalCount !== undefined && seen < this.totalCount) {
      throw new SummaryChangedError(`summary of account ${this.#accountId}: read ${seen} distinct users of the ${this.totalCount} reported`, { retryable: true });
    }
    const known = this.#known;
    const unchanged = known && { count: known.unchangedCount, has: (id: string) => known.seenUnchanged(id) };
    // Both keep their previous state: to the diff, an ambiguous user is one whose record could not be used.
    const skippedUserIds = this.ambiguousUserIds.size === 0 ? this.skippedUserIds : new Set([...this.skippedUserIds, ...this.ambiguousUserIds]);
    return { users: this.users, unchanged, skippedUserIds, ambiguousUsers: this.ambiguousUserIds.size, unidentifiedSkips: this.unidentifiedSkips };
  }
}

/** The same records as page 1, in the same order: what an API that ignores `page` answers. Compared only on a page that named nobody new. */
function samePage(rows: readonly unknown[], first: readonly unknown[]): boolean {
  return rows.length === first.length && JSON.stringify(rows) === JSON.stringify(first);
}

function totalsDiffer(first: ResultInfo, later: ResultInfo | undefined): string | undefined {
  if (!later) return undefined;
  if (later.total_pages !== undefined && first.total_pages !== undefined && later.total_pages !== first.total_pages) {
    return `total_pages went from ${first.total_pages} to ${later.total_pages}`;
  }
  if (later.total_count !== undefined && first.total_count !== undefined && later.total_count !== first.total_count) {
    return `total_count went from ${first.total_count} to ${later.total_count}`;
  }
  return undefined;
}

async function readBody(body: AsyncIterable<Buffer> & { destroy(error?: Error): unknown }, signal: AbortSignal, path: string): Promise<string> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of body) {
    size += chunk.length;
    if (size > MAX_BODY_BYTES) {
      body.destroy();
      throw new CloudflareError(`GET ${path}: response body larger than ${MAX_BODY_BYTES / 1024 / 1024} MiB; refused`, { retryable: false });
    }
    chunks.push(chunk);
  }
  signal.throwIfAborted();
  return Buffer.concat(chunks, size).toString('utf8');
}

function header(headers: Record<string, string | string[] | undefined>, name: string): string | undefined {
  const value = headers[name];
  return Array.isArray(value) ? value[0] : value;
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}
