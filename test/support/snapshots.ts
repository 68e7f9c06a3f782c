import type { CurrentSnapshot, PreviousSnapshot } from '../../src/detect/diff.ts';
import type { Behavior, RiskLevel, RiskUser } from '../../src/model.ts';

/**
 * Small builders for the data the detect and notify stages pass around, so
 * that each test states only what it is about.
 */

/** A summary row; the email sorts like the id unless a test says otherwise. */
export function riskUser(userId: string, level: RiskLevel, fields: Partial<Omit<RiskUser, 'user_id' | 'max_risk_level'>> = {}): RiskUser {
  return {
    user_id: userId,
    email: `${userId}@example.com`,
    name: `User ${userId}`,
    event_count: 3,
    last_event: '2026-11-22T17:59:00Z',
    max_risk_level: level,
    ...fields,
  };
}

export function behavior(id: string, fields: Partial<Omit<Behavior, 'id'>> = {}): Behavior {
  return { id, name: `Behavior ${id}`, description: `Detects ${id}`, enabled: true, risk_level: 'medium', ...fields };
}

/** What the store kept of the last committed poll. */
export function previousSnapshot(parts: { users?: Record<string, RiskLevel>; behaviors?: readonly Behavior[] } = {}): PreviousSnapshot {
  return {
    userLevels: new Map(Object.entries(parts.users ?? {})),
    behaviors: new Map((parts.behaviors ?? []).map((b) => [b.id, b])),
  };
}

/** What this poll saw; skips default to none. */
export function currentSnapshot(
  parts: { users?: readonly RiskUser[]; behaviors?: readonly Behavior[]; skippedUserIds?: readonly string[]; unidentifiedSkips?: number; skippedBehaviorIds?: readonly string[] } = {},
): CurrentSnapshot {
  return {
    users: new Map((parts.users ?? []).map((u) => [u.user_id, u])),
    behaviors: new Map((parts.behaviors ?? []).map((b) => [b.id, b])),
    skippedUserIds: new Set(parts.skippedUserIds ?? []),
    unidentifiedSkips: parts.unidentifiedSkips ?? 0,
    skippedBehaviorIds: new Set(parts.skippedBehaviorIds ?? []),
  };
}

/** The snapshot the store would hold after committing `current` with nothing skipped. */
export function committed(current: CurrentSnapshot): PreviousSnapshot {
  return {
    userLevels: new Map(([...current.users.values()] as RiskUser[]).map((u) => [u.user_id, u.max_risk_level])),
    behaviors: new Map(current.behaviors),
  };
}

/** Ids "evt-1", "evt-2", … in call order. */
export function sequentialIds(prefix = 'evt'): () => string {
  let n = 0;
  return () => `${prefix}-${++n}`;
}
