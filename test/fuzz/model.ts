import fc from 'fast-check';
import { RISK_LEVELS, type RiskLevel } from '../../src/model.ts';
import { fromSchema, type Leaves } from './schema.ts';

/**
 * The fuzz suite's model: the truth the API knows at each poll (users' levels,
 * behaviors' states), the answers it gives about it, hostile ones included,
 * and the fast-check arbitraries that generate both. Everything here is plain
 * data, so that a failing scenario prints as a readable counterexample.
 */

/** Text that may be long: a 20 KB name prints as `{ repeat, times }` in a counterexample and is served in full. */
export type Text = string | { readonly repeat: string; readonly times: number };
export const expand = (text: Text): string => (typeof text === 'string' ? text : text.repeat.repeat(text.times));

/** A user of the model: the fields of a summary record (dlp_UserRiskInfo) but the level, which the truth of each poll gives. */
export interface UserSpec {
  readonly user_id: string;
  readonly email: Text;
  readonly name: Text;
  readonly event_count: number;
  readonly last_event: string;
}

/** A behavior of the model (dlp_Behavior) but its state, which the truth of each poll gives. */
export interface BehaviorSpec {
  readonly id: string;
  readonly name: Text;
  readonly description: Text;
}

export interface BehaviorState {
  readonly enabled: boolean;
  readonly risk_level: RiskLevel;
}

/** What the API knows during one poll, by index into the scenario's users and behaviors; null: not in the summary, or no such behavior. */
export interface Truth {
  readonly users: readonly (RiskLevel | null)[];
  readonly behaviors: readonly (BehaviorState | null)[];
}

/** An answer that replaces the real one: an HTTP status and body, the real body cut short, or a connection reset. */
export type BadAnswer = { readonly status: number; readonly body: string; readonly headers?: Readonly<Record<string, string>> } | { readonly truncate: number } | { readonly reset: true };

/** A record that breaks the published schema; `set` and `drop` apply to an otherwise valid record, `value` replaces it. */
export type Broken = { readonly set: Readonly<Record<string, unknown>>; readonly drop?: string } | { readonly value: unknown };

export type Fault =
  /** The answer to a call (for the summary, to its page `page`), on its first attempt only (`every` false: transient, retried) or on all. */
  | { readonly kind: 'answer'; readonly call: 'summary' | 'behaviors' | 'user'; readonly page: number; readonly every: boolean; readonly answer: BadAnswer }
  /** A malformed record listed at place `at` of summary page `page`: with the id of model user `of` (whose own record stays), or with `id`. */
  | { readonly kind: 'malformed user'; readonly page: number; readonly at: number; readonly of: number | null; readonly id: string; readonly level: RiskLevel; readonly broken: Broken }
  /** Model user `user` listed a second time, at `level`, at place `at` of page `page` (only while the truth lists them at all). */
  | { readonly kind: 'duplicate'; readonly user: number; readonly level: RiskLevel; readonly page: number; readonly at: number }
  /** The same, at the same level, their id spelled in the other case: a UUID is case-insensitive (RFC 4122), so it is the same user. */
  | { readonly kind: 'id case'; readonly user: number; readonly page: number; readonly at: number }
  /** A malformed record in the behaviors: replacing model behavior `of`, or under a new id. */
  | { readonly kind: 'malformed behavior'; readonly of: number | string; readonly state: BehaviorState; readonly broken: Broken }
  /** result_info says something untrue on page `page` (null: on every page); lies that hide users from a client that believes them are not told. */
  | { readonly kind: 'lie'; readonly page: number | null; readonly field: LieField; readonly how: 'high' | 'low' | 'garbled'; readonly by: number }
  /** The server ignores `page` and answers page 1, saying so (`echo` false) or claiming the page asked (`echo` true). */
  | { readonly kind: 'ignore paging'; readonly echo: boolean }
  /**
   * From page `page` on, the listing has moved up by one, as when a user listed
   * before it is reset during the read and another added: the user at the seam
   * is on no page, totals unchanged. Told only right after a clean poll over
   * the same truth (see scenarios()).
   */
  | { readonly kind: 'shift'; readonly page: number };

export type LieField = 'total_count' | 'total_pages' | 'per_page' | 'count' | 'page' | 'result_info';

export interface Answers {
  /** The largest per_page the server honours. */
  readonly pageCap: number;
  /** Which totals result_info carries; 'none': the client pages until an empty page. */
  readonly totals: 'both' | 'count' | 'none';
  /** The summary lists the users rotated by this much. */
  readonly rotate: number;
  readonly faults: readonly Fault[];
}

export interface Poll {
  readonly truth: Truth;
  readonly answers: Answers;
  /** riskwatch restarts before this poll: what it knows comes from the store. */
  readonly restart: boolean;
}

export interface Scenario {
  readonly users: readonly UserSpec[];
  readonly behaviors: readonly BehaviorSpec[];
  /** The per_page the client asks for. */
  readonly pageSize: number;
  /** cloudflare.summary_paging: with `off`, one request without paging parameters, answered with the whole summary. */
  readonly summaryPaging: 'auto' | 'off';
  /** notify.enrich: raised users' risk events are fetched from the per-user endpoint. */
  readonly enrich: boolean;
  /** What the per-user endpoint lists as each user's events (dlp_RiskEvent, hostile ones mixed in). */
  readonly riskEvents: readonly unknown[];
  /** The hostile polls, then clean ones (no faults) over one final truth. */
  readonly polls: readonly Poll[];
}

/** Polls at the end with clean answers over the same truth: a departure seen by a multi-page read is confirmed by the next read. */
export const CLEAN_TAIL = 2;

export const isClean = (poll: Poll): boolean => poll.answers.faults.length === 0;

// ---------------------------------------------------------------------------
// Arbitraries

const MAX_USERS = 6;
const MAX_BEHAVIORS = 4;

const level = fc.constantFrom(...RISK_LEVELS);
const hex = (length: number) => fc.string({ unit: fc.constantFrom(...'0123456789abcdef'), minLength: length, maxLength: length });
/** 8-4-4-4-12 hex: RFC 4122 ones, and ones whose version and variant bits are anything. */
const uuid = fc.oneof(
  fc.uuid(),
  fc.tuple(hex(8), hex(4), hex(4), hex(4), hex(12)).map((parts) => parts.join('-')),
);
/** UUIDs are case-insensitive on input (RFC 4122): some come upper-case. */
const userId = fc.oneof({ weight: 3, arbitrary: uuid }, { weight: 1, arbitrary: uuid.map((id) => id.toUpperCase()) });

/** Legitimate text (the schema says string) that a store, a log or a terminal may choke on. */
const shortText = fc.oneof(
  { weight: 4, arbitrary: fc.string({ maxLength: 12 }) },
  { weight: 2, arbitrary: fc.string({ unit: 'binary', maxLength: 8 }) },
  {
    weight: 3,
    arbitrary: fc.constantFrom(
      'Ann\u0000Lee',
      '\u0000',
      '<script>alert(1)</script>',
      "Robert'); DROP TABLE users;--",
      '\u202Egnp.exe',
      '\uD800',
      'Zoë 🙂 ℌ𝔢𝔩𝔩𝔬',
      '${jndi:ldap://x/a}',
      '%s%n%x',
      '\r\nX-Injected: 1',
    ),
  },
);
const text: fc.Arbitrary<Text> = fc.oneof(
  { weight: 9, arbitrary: shortText },
  { weight: 1, arbitrary: fc.constantFrom<Text>({ repeat: 'A', times: 20_480 }, { repeat: 'é\u0000', times: 10_240 }, { repeat: '🙂', times: 5_120 }) },
);

/** event_count: an integer >= 0 (dlp_UserRiskInfo), with no upper bound: past 2^31 too. */
const eventCount = fc.oneof(fc.nat(50), fc.constantFrom(2 ** 31 - 1, 2 ** 31, 3_000_000_000, 2 ** 32, Number.MAX_SAFE_INTEGER), fc.maxSafeNat());
const dateTime = fc.date({ min: new Date('2000-01-01T00:00:00Z'), max: new Date('2099-12-31T23:59:59Z'), noInvalidDate: true }).map((d) => d.toISOString());

/** Schema leaves filled with what the schema allows, hostile values included. */
const leaves: Leaves = { string: text, uuid: userId, dateTime, integer: (minimum) => (minimum === 0 ? eventCount : fc.integer({ min: minimum })) };

/** dlp_UserRiskInfo but the level, which each poll's truth gives. */
const userSpec = fromSchema('dlp_UserRiskInfo', leaves).map(({ max_risk_level: _level, ...fields }) => ({ ...fields }) as unknown as UserSpec);

/** Behavior ids are open strings; some are the names of Object.prototype's members. */
const behaviorId = fc.constantFrom('imp_travel', 'high_dlp', 'sentinel_one', '__proto__', 'constructor', 'toString', 'hasOwnProperty', 'prototype');
/** dlp_Behavior but its state, which each poll's truth gives. */
const behaviorSpec = fc.tuple(behaviorId, fromSchema('dlp_Behavior', leaves)).map(([id, { name, description }]): BehaviorSpec => ({ id, name: name as Text, description: description as Text }));
const behaviorState: fc.Arbitrary<BehaviorState> = fc.record({ enabled: fc.boolean(), risk_level: level });

/** A risk event of the per-user endpoint (dlp_RiskEvent), or a broken one. */
const riskEvent: fc.Arbitrary<unknown> = fc.oneof(
  { weight: 3, arbitrary: fromSchema('dlp_RiskEvent', { ...leaves, string: shortText, uuid }) },
  {
    weight: 1,
    arbitrary: fc.constantFrom(
      null,
      'event',
      42,
      { id: '', name: 'x', risk_level: 'high', timestamp: '2026-01-01T00:00:00Z' },
      { id: 'e1', name: 'x', risk_level: 'critical', timestamp: '2026-01-01T00:00:00Z' },
      { id: 'e2', name: 5, risk_level: 'low' },
    ),
  },
);

/** Breaks the schema for sure, whatever else the record says: a client must skip it. */
const notAnObject = fc.constantFrom(null, 'user', 42, true, [], [{ max_risk_level: 'high' }]).map((value): Broken => ({ value }));
const brokenLevel = fc.oneof(
  fc.constantFrom('critical', 'HIGH', 'High', 'none', '', null, 3, ['high']).map((v): Broken => ({ set: { max_risk_level: v } })),
  fc.constant<Broken>({ set: {}, drop: 'max_risk_level' }),
);
const brokenEmail = fc.oneof(
  fc.constantFrom(5, null, {}, true).map((v): Broken => ({ set: { email: v } })),
  fc.constant<Broken>({ set: {}, drop: 'email' }),
);
const brokenCount = fc.constantFrom(-1, -2_147_483_649, 1.5, '3', true, {}, []).map((v): Broken => ({ set: { event_count: v } }));
/** Ids that are not UUIDs: wrong types, empty, paths, near misses. */
const brokenId = fc.oneof(
  fc.constantFrom(42, null, {}, [], true, '', ' ', 'not-a-uuid', '../../etc/passwd', 'null', "' OR 1=1 --").map((v): Broken => ({ set: { user_id: v } })),
  fc.constant<Broken>({ set: {}, drop: 'user_id' }),
  fc
    .tuple(
      fc.uuid(),
      fc.constantFrom<(id: string) => string>(
        (id) => id.replaceAll('-', ''),
        (id) => `{${id}}`,
        (id) => `urn:uuid:${id}`,
        (id) => `${id}\u0000`,
        (id) => ` ${id}`,
        (id) => `${id}0`,
        (id) => `${id.slice(1)}g`,
      ),
    )
    .map(([id, mangle]): Broken => ({ set: { user_id: mangle(id) } })),
);

const html = '<!DOCTYPE html><html><head><title>502 Bad Gateway</title></head><body>cloudflare</body></html>';
const envelope = (fields: Record<string, unknown>) => JSON.stringify({ success: true, errors: [], messages: [], ...fields });
const failed = (code: unknown, message: unknown) => JSON.stringify({ success: false, errors: [{ code, message }], messages: [], result: null });

/** Answers a client retries: on a first attempt only, the retry gets the real answer. */
const transient = fc.constantFrom<BadAnswer>(
  { status: 500, body: failed(10000, 'Internal Server Error') },
  { status: 502, body: html },
  { status: 503, body: '' },
  { status: 429, body: failed(971, 'Please wait and consider throttling your request speed'), headers: { 'retry-after': '0' } },
  { reset: true },
);
/** Answers no retry helps with: errors, bodies that are not the envelope, the real body cut short. */
const lasting = fc.oneof(
  transient,
  fc.constantFrom<BadAnswer>(
    { status: 403, body: failed(10000, 'Authentication error') },
    { status: 404, body: failed(7003, 'Could not route to /accounts/…') },
    { status: 200, body: failed(1000, 'success: false under HTTP 200') },
    { status: 200, body: JSON.stringify({ success: false, errors: 'oops', result: { users: [] } }) },
    { status: 200, body: failed('x\u0000', 7) },
    { status: 200, body: html },
    { status: 200, body: '' },
    { status: 200, body: '[]' },
    { status: 200, body: 'null' },
    { status: 200, body: '42' },
    { status: 200, body: '{}' },
    { status: 200, body: JSON.stringify({ success: 'true', result: { users: [], behaviors: {}, events: [] } }) },
    { status: 200, body: JSON.stringify({ result: { users: [], behaviors: {}, events: [] } }) },
    { status: 200, body: envelope({}) },
    { status: 200, body: envelope({ result: null }) },
    { status: 200, body: envelope({ result: [] }) },
    { status: 200, body: envelope({ result: 'ok' }) },
    { status: 200, body: envelope({ result: { users: {}, behaviors: [], events: {} } }) },
    { status: 200, body: envelope({ result: { users: 'x', behaviors: 'x', events: 'x' } }) },
    { status: 200, body: envelope({ result: { users: null, behaviors: null, events: null } }) },
  ),
  fc.nat().map((n): BadAnswer => ({ truncate: n })),
);

const page = fc.integer({ min: 1, max: 4 });
const at = fc.nat(5);

const fault: fc.Arbitrary<Fault> = fc.oneof(
  {
    weight: 3,
    arbitrary: fc.oneof(
      fc.record({ kind: fc.constant('answer' as const), call: fc.constantFrom('summary' as const, 'behaviors' as const, 'user' as const), page, every: fc.constant(false), answer: transient }),
      fc.record({ kind: fc.constant('answer' as const), call: fc.constantFrom('summary' as const, 'behaviors' as const, 'user' as const), page, every: fc.constant(true), answer: lasting }),
    ),
  },
  {
    weight: 3,
    arbitrary: fc.oneof(
      // With a model user's id and another valid level: a client that took the record would announce a level the truth never had.
      fc.record({ kind: fc.constant('malformed user' as const), page, at, of: fc.nat(MAX_USERS - 1), id: fc.uuid(), level, broken: fc.oneof(brokenEmail, brokenCount, brokenLevel, notAnObject) }),
      fc.record({
        kind: fc.constant('malformed user' as const),
        page,
        at,
        of: fc.constant(null),
        id: fc.uuid(),
        level,
        broken: fc.oneof(brokenId, brokenEmail, brokenCount, brokenLevel, notAnObject),
      }),
    ),
  },
  { weight: 3, arbitrary: fc.record({ kind: fc.constant('duplicate' as const), user: fc.nat(MAX_USERS - 1), level, page, at }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('id case' as const), user: fc.nat(MAX_USERS - 1), page, at }) },
  {
    weight: 2,
    arbitrary: fc.record({
      kind: fc.constant('malformed behavior' as const),
      of: fc.oneof(fc.nat(MAX_BEHAVIORS - 1), fc.constantFrom('ghost_behavior', '__defineGetter__', 'valueOf')),
      state: behaviorState,
      broken: fc.oneof(
        fc.constantFrom('true', 1, null).map((v): Broken => ({ set: { enabled: v } })),
        fc.constant<Broken>({ set: {}, drop: 'enabled' }),
        fc.constantFrom('critical', 'LOW', null, 2).map((v): Broken => ({ set: { risk_level: v } })),
        fc.constant<Broken>({ set: {}, drop: 'risk_level' }),
        fc.constantFrom(5, null, {}).map((v): Broken => ({ set: { name: v } })),
        fc.constantFrom(7, []).map((v): Broken => ({ set: { description: v } })),
        fc.constantFrom(null, 'behavior', 42, true, []).map((value): Broken => ({ value })),
      ),
    }),
  },
  {
    weight: 2,
    arbitrary: fc.record({
      kind: fc.constant('lie' as const),
      page: fc.option(page, { nil: null }),
      field: fc.constantFrom<LieField>('total_count', 'total_pages', 'per_page', 'count', 'page', 'result_info'),
      how: fc.constantFrom('high' as const, 'low' as const, 'garbled' as const),
      by: fc.integer({ min: 1, max: 3 }),
    }),
  },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('ignore paging' as const), echo: fc.boolean() }) },
);

function truthOf(users: number, behaviors: number): fc.Arbitrary<Truth> {
  return fc.record({
    users: fc.array(fc.option(level, { nil: null, freq: 4 }), { minLength: users, maxLength: users }),
    behaviors: fc.array(fc.option(behaviorState, { nil: null, freq: 5 }), { minLength: behaviors, maxLength: behaviors }),
  });
}

/** With `fault`, the answers of a poll that may be hostile; without, clean ones. */
function answers(fault?: fc.Arbitrary<Fault>): fc.Arbitrary<Answers> {
  return fc.record({
    pageCap: fc.constantFrom(1, 2, 3, 1000),
    totals: fc.constantFrom('both' as const, 'both' as const, 'count' as const, 'none' as const),
    rotate: fc.nat(7),
    // Some of the polls among the hostile ones are clean.
    faults: fault ? fc.oneof({ weight: 1, arbitrary: fc.constant([]) }, { weight: 3, arbitrary: fc.array(fault, { minLength: 1, maxLength: 4 }).map(fair) }) : fc.constant([]),
  });
}

/**
 * A forged record can only be caught beside the genuine one. A server that
 * ignores paging serves page 1 alone, and a forged duplicate there, whose
 * genuine record sits on a later page, is all the API ever says of that user:
 * no client can tell it from a real change. So a poll's faults never combine
 * the two (as a shift never comes with a duplicate, below).
 */
function fair(faults: Fault[]): Fault[] {
  if (!faults.some((f) => f.kind === 'ignore paging')) return faults;
  return faults.filter((f) => f.kind !== 'duplicate');
}

/**
 * A scenario: a few polls whose answers may be hostile, then CLEAN_TAIL clean
 * polls over one final truth. Truths are drawn for the most users and
 * behaviors there may be and cut to those there are, so that each part
 * shrinks on its own. Faults of the kinds in `without` are never told (fast-check
 * reports one failure: this finds the next while the first is being fixed).
 */
export function scenarios(without: ReadonlySet<string> = new Set()): fc.Arbitrary<Scenario> {
  const truth = truthOf(MAX_USERS, MAX_BEHAVIORS);
  const hostile = fault.filter((f) => !without.has(f.kind));
  const restart = fc.oneof({ weight: 4, arbitrary: fc.constant(false) }, { weight: 1, arbitrary: fc.constant(true) });
  // A read that misses a user leaves them missing, and the next read that misses them too takes
  // them as gone (SPEC §1, paging). So a shift comes right after a clean poll over the same truth,
  // which saw everyone: two misses in a row would be a departure the truth never had.
  // Nor does it come with a duplicate: a user the shift hides would be read only as their duplicate,
  // which no client can tell from the real record.
  const duringShift = hostile.filter((f) => f.kind !== 'duplicate' && f.kind !== 'id case');
  const shifted = fc
    .record({ same: truth, before: answers(), during: answers(duringShift), page: fc.integer({ min: 2, max: 4 }), restart })
    .map(({ same, before, during, page, restart }): [Poll, Poll] => [
      { truth: same, answers: before, restart },
      { truth: same, answers: { ...during, faults: [...during.faults, { kind: 'shift', page }] }, restart: false },
    ]);
  return fc
    .record({
      users: fc.uniqueArray(userSpec, { maxLength: MAX_USERS, selector: (u) => u.user_id.toLowerCase() }),
      behaviors: fc.uniqueArray(behaviorSpec, { maxLength: MAX_BEHAVIORS, selector: (b) => b.id }),
      pageSize: fc.constantFrom(1000, 2, 3),
      summaryPaging: fc.constantFrom('auto' as const, 'auto' as const, 'auto' as const, 'off' as const),
      enrich: fc.boolean(),
      riskEvents: fc.array(riskEvent, { maxLength: 3 }),
      early: fc.array(fc.oneof({ weight: 4, arbitrary: fc.tuple(fc.record({ truth, answers: answers(hostile), restart })) }, { weight: without.has('shift') ? 0 : 1, arbitrary: shifted }), {
        minLength: 1,
        maxLength: 4,
      }),
      settled: truth,
      tail: fc.array(fc.record({ answers: answers(), restart }), { minLength: CLEAN_TAIL, maxLength: CLEAN_TAIL }),
    })
    .map(({ early, settled, tail, ...base }): Scenario => {
      const cut = (t: Truth): Truth => ({ users: t.users.slice(0, base.users.length), behaviors: t.behaviors.slice(0, base.behaviors.length) });
      const polls = [...early.flat(), ...tail.map((poll) => ({ ...poll, truth: settled }))];
      return { ...base, polls: polls.map((poll) => ({ ...poll, truth: cut(poll.truth) })) };
    });
}
