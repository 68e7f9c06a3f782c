/**
 * The domain every stage shares: risk levels, the users and behaviors one poll
 * sees, and the event types riskwatch announces (SPEC §1, §2).
 */

export const RISK_LEVELS = ['low', 'medium', 'high'] as const;
export type RiskLevel = (typeof RISK_LEVELS)[number];

/** `none` (not in the summary) ranks below every level. */
export const LEVEL_RANK: Readonly<Record<RiskLevel | 'none', number>> = { none: 0, low: 1, medium: 2, high: 3 };

/** The level of a rank 1–3 (the inverse of LEVEL_RANK, `none` aside). */
export function levelOfRank(rank: number): RiskLevel {
  return RISK_LEVELS[rank - 1]!;
}

export function isRiskLevel(value: unknown): value is RiskLevel {
  return value === 'low' || value === 'medium' || value === 'high';
}

/** One row of the risk-scoring summary. */
export interface RiskUser {
  readonly user_id: string;
  readonly email: string;
  readonly name: string;
  readonly event_count: number;
  readonly last_event: string | null;
  readonly max_risk_level: RiskLevel;
}

/** One risk behavior (a detection) and its configuration. */
export interface Behavior {
  readonly id: string;
  readonly name: string;
  readonly description: string;
  readonly enabled: boolean;
  readonly risk_level: RiskLevel;
}

/** One risk event behind a user's score, from the per-user endpoint. */
export interface RiskEventDetail {
  readonly id: string;
  readonly name: string;
  readonly risk_level: RiskLevel;
  readonly timestamp: string;
  readonly event_details?: unknown;
}

export const EVENT_TYPES = [
  'user.risk_level_raised',
  'user.risk_level_lowered',
  'user.flapping',
  'user.settled',
  'behavior.enabled',
  'behavior.disabled',
  'behavior.risk_level_changed',
  'behavior.added',
  'behavior.removed',
] as const;
export type EventType = (typeof EVENT_TYPES)[number];

/**
 * Text every store can hold: PostgreSQL refuses a NUL character in `text`
 * ('invalid byte sequence for encoding "UTF8": 0x00'), and a lone surrogate has
 * no UTF-8 form. Both become U+FFFD, as a UTF-8 decoder would show them.
 */
export function storable(text: string): string {
  return isStorable(text) ? text : text.toWellFormed().replaceAll('\0', '\uFFFD');
}

export function isStorable(text: string): boolean {
  return !text.includes('\0') && text.isWellFormed();
}
