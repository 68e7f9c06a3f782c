import { type Behavior, isRiskLevel, isStorable, type RiskEventDetail, type RiskUser, storable } from '../model.ts';

/**
 * Hand-written checks for the records inside API results. They run once per
 * user per poll (a million times for the largest tenants), so they are plain
 * code rather than a schema. A record that fails is skipped by the caller with
 * the reason returned here; the rest of its page is still used.
 */
export type Parsed<T> = { ok: true; value: T } | { ok: false; reason: string };

const fail = (reason: string): { ok: false; reason: string } => ({ ok: false, reason });

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function describe(value: unknown): string {
  if (value === undefined) return 'missing';
  const text = JSON.stringify(value) ?? String(value);
  return text.length > 40 ? `${text.slice(0, 40)}…` : text;
}

/**
 * The schema's `format: uuid`: 8-4-4-4-12 hex digits, any case. Neither version
 * nor variant bits are checked: ids generated from the schema do not all carry them.
 */
const UUID = /^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$/;

/** A user id as the schema defines it: anything else names nobody (and is no key to anyone's state). */
export function isUserId(value: unknown): value is string {
  return typeof value === 'string' && UUID.test(value);
}

export function notUserId(value: unknown): { ok: false; reason: string } {
  return fail(`user_id is ${describe(value)}, not a UUID`);
}

/**
 * A summary record, every field checked but the id's UUID syntax: at a million
 * users a second pass over every id costs a tenth of a poll, and the reader
 * already looks each id up among the stored ones (which were checked when they
 * were first read). It checks the others with isUserId, and fails them with notUserId.
 */
export function parseUser(raw: unknown): Parsed<RiskUser> {
  if (!isObject(raw)) return fail('is not an object');
  const { user_id, email, name, event_count, last_event, max_risk_level } = raw;
  if (typeof user_id !== 'string' || user_id === '') return notUserId(user_id);
  if (!isRiskLevel(max_risk_level)) return fail(`max_risk_level is ${describe(max_risk_level)}`);
  if (typeof email !== 'string') return fail(`email is ${describe(email)}`);
  if (name !== undefined && name !== null && typeof name !== 'string') return fail(`name is ${describe(name)}`);
  if (event_count !== undefined && event_count !== null && !(Number.isSafeInteger(event_count) && (event_count as number) >= 0)) {
    return fail(`event_count is ${describe(event_count)}`);
  }
  if (last_event !== undefined && last_event !== null && typeof last_event !== 'string') {
    return fail(`last_event is ${describe(last_event)}`);
  }
  // A record with every field present is used as it is: at a million users a copy of every
  // record per poll is a second summary's worth of garbage. Extra fields are dropped by
  // userFields, for the few records kept (the changed ones).
  if (typeof name === 'string' && typeof event_count === 'number' && typeof last_event === 'string') {
    return { ok: true, value: raw as unknown as RiskUser };
  }
  return {
    ok: true,
    value: {
      user_id,
      email,
      name: (name as string | null | undefined) ?? '',
      event_count: (event_count as number | null | undefined) ?? 0,
      last_event: (last_event as string | null | undefined) ?? null,
      max_risk_level,
    },
  };
}

/**
 * The user's six fields and nothing else (a record may carry more), each storable:
 * what is stored and announced. Called for the few records a read keeps.
 */
export function userFields(user: RiskUser): RiskUser {
  const { user_id, email, name, event_count, last_event, max_risk_level } = user;
  if (Object.keys(user).length === 6 && isStorable(email) && isStorable(name) && (last_event === null || isStorable(last_event))) return user;
  return { user_id, email: storable(email), name: storable(name), event_count, last_event: last_event === null ? null : storable(last_event), max_risk_level };
}

/** Behavior ids are short names (imp_travel, high_dlp); far past this, a record is not one. */
const MAX_BEHAVIOR_ID_BYTES = 512;

export function parseBehavior(id: string, raw: unknown): Parsed<Behavior> {
  // An id is a key: made storable, two ids could become one. Such an id is refused instead.
  if (!isStorable(id)) return fail('its id holds a NUL character or a lone surrogate, which no store can keep');
  // PostgreSQL indexes ids (and subjects) in btrees, whose entries hold about 2.7 KB: a longer id failed every commit.
  if (Buffer.byteLength(id) > MAX_BEHAVIOR_ID_BYTES) return fail(`its id is longer than ${MAX_BEHAVIOR_ID_BYTES} bytes`);
  if (!isObject(raw)) return fail('is not an object');
  const { name, description, enabled, risk_level } = raw;
  if (typeof enabled !== 'boolean') return fail(`enabled is ${describe(enabled)}`);
  if (!isRiskLevel(risk_level)) return fail(`risk_level is ${describe(risk_level)}`);
  if (name !== undefined && typeof name !== 'string') return fail(`name is ${describe(name)}`);
  if (description !== undefined && description !== null && typeof description !== 'string') {
    return fail(`description is ${describe(description)}`);
  }
  return {
    ok: true,
    value: { id, name: storable((name as string | undefined) ?? id), description: storable((description as string | null | undefined) ?? ''), enabled, risk_level },
  };
}

export function parseRiskEvent(raw: unknown): Parsed<RiskEventDetail> {
  if (!isObject(raw)) return fail('is not an object');
  const { id, name, risk_level, timestamp, event_details } = raw;
  if (typeof id !== 'string' || id === '') return fail(`id is ${describe(id)}`);
  if (!isRiskLevel(risk_level)) return fail(`risk_level is ${describe(risk_level)}`);
  if (typeof name !== 'string') return fail(`name is ${describe(name)}`);
  if (typeof timestamp !== 'string') return fail(`timestamp is ${describe(timestamp)}`);
  return { ok: true, value: event_details === undefined ? { id, name, risk_level, timestamp } : { id, name, risk_level, timestamp, event_details } };
}
