import { type Behavior, type EventType, LEVEL_RANK, type RiskLevel, type RiskUser } from '../model.ts';
import type { LevelChangeEvent } from './events.ts';

/**
 * What one poll saw, and what the last committed poll left behind: the two
 * sides of the diff. Pure data; nothing here does I/O.
 */

/** What the store keeps of an account for the next diff: compact, levels only for users. */
export interface PreviousSnapshot {
  readonly userLevels: ReadonlyMap<string, RiskLevel>;
  readonly behaviors: ReadonlyMap<string, Behavior>;
}

export interface CurrentSnapshot {
  /** Users of the summary by id: all of them, or, with `unchanged`, those not at their stored level. */
  readonly users: ReadonlyMap<string, RiskUser>;
  /** Users the reader found at their previous level and did not keep (see UnchangedUsers). */
  readonly unchanged?: { readonly count: number; has(userId: string): boolean };
  readonly behaviors: ReadonlyMap<string, Behavior>;
  /** Users whose record was malformed this poll: their previous state stands. */
  readonly skippedUserIds: ReadonlySet<string>;
  /** Malformed records with no usable id: nobody may be taken as gone this poll. */
  readonly unidentifiedSkips: number;
  /** Behaviors whose record was malformed this poll: their previous state stands. */
  readonly skippedBehaviorIds: ReadonlySet<string>;
  /**
   * When set, a user missing from this poll counts as gone only if they were
   * missing from the last poll too (in this set). A summary read over several
   * pages is not a snapshot: a reset between two pages shifts a user from one
   * page to the one already read, and they look gone for one read.
   */
  readonly missingLastTime?: ReadonlySet<string>;
}

export interface DiffOptions {
  /** `baseline` announces nothing on an account's first poll; `notify` announces everything. */
  readonly firstRun: 'baseline' | 'notify';
}

export interface UserTransition {
  readonly kind: 'user';
  readonly type: LevelChangeEvent['type'];
  readonly userId: string;
  /** The user as the summary shows them now; undefined when they left it. */
  readonly user: RiskUser | undefined;
  readonly previousLevel: RiskLevel | null;
  readonly currentLevel: RiskLevel | null;
}

export interface BehaviorTransition {
  readonly kind: 'behavior';
  readonly type: Extract<EventType, `behavior.${string}`>;
  /** The behavior now, or the last one seen when it was removed. */
  readonly behavior: Behavior;
  /** null for behavior.added */
  readonly previous: { readonly enabled: boolean; readonly risk_level: RiskLevel } | null;
}

export type Transition = UserTransition | BehaviorTransition;

/** The rows the store must write so that it holds the current snapshot: only what changed. */
export interface SnapshotDelta {
  readonly upsertUsers: readonly RiskUser[];
  readonly removeUserIds: readonly string[];
  readonly upsertBehaviors: readonly Behavior[];
  readonly removeBehaviorIds: readonly string[];
}

export interface DiffResult {
  /** In announcement order: users highest level first then by email, then behaviors by id. */
  readonly transitions: readonly Transition[];
  readonly delta: SnapshotDelta;
  /** Users of the previous snapshot missing from this poll, gone or not yet confirmed (the next poll's `missingLastTime`). */
  readonly missing: ReadonlySet<string>;
}

/**
 * Compares a poll with the last committed one (SPEC §2). `previous` is
 * undefined on an account's first poll. A user's stored row is rewritten
 * only when their level changes, so a steady poll writes next to nothing.
 */
export function diff(previous: PreviousSnapshot | undefined, current: CurrentSnapshot, options: DiffOptions): DiffResult {
  const announce = previous !== undefined || options.firstRun === 'notify';
  const before: PreviousSnapshot = previous ?? { userLevels: new Map(), behaviors: new Map() };
  const userTransitions: UserTransition[] = [];
  const upsertUsers: RiskUser[] = [];
  const removeUserIds: string[] = [];

  // Users of the previous snapshot found in this poll: when that is all of them, nobody left.
  let stillThere = current.unchanged?.count ?? 0;
  for (const user of current.users.values()) {
    const was = before.userLevels.get(user.user_id);
    const now = user.max_risk_level;
    if (was !== undefined) stillThere++;
    if (was === now) continue;
    upsertUsers.push(user);
    if (!announce) continue;
    // Drops are always recorded (history, incident resolution); routing decides who is told (SPEC §2).
    const raised = LEVEL_RANK[now] > LEVEL_RANK[was ?? 'none'];
    userTransitions.push({
      kind: 'user',
      type: raised ? 'user.risk_level_raised' : 'user.risk_level_lowered',
      userId: user.user_id,
      user,
      previousLevel: was ?? null,
      currentLevel: now,
    });
  }

  // A user missing from the summary left it (usually: an admin reset their score),
  // unless their record was malformed, some record could not be attributed to anyone,
  // or the read needs a second look to be sure (see missingLastTime).
  const missing = new Set<string>();
  for (const id of current.skippedUserIds) if (before.userLevels.has(id)) stillThere++;
  if (current.unidentifiedSkips === 0 && stillThere < before.userLevels.size) {
    for (const [userId, was] of before.userLevels) {
      if (current.users.has(userId) || current.unchanged?.has(userId) || current.skippedUserIds.has(userId)) continue;
      missing.add(userId);
      if (current.missingLastTime && !current.missingLastTime.has(userId)) continue;
      removeUserIds.push(userId);
      if (announce) {
        userTransitions.push({ kind: 'user', type: 'user.risk_level_lowered', userId, user: undefined, previousLevel: was, currentLevel: null });
      }
    }
  }

  const behaviorTransitions: BehaviorTransition[] = [];
  const upsertBehaviors: Behavior[] = [];
  const removeBehaviorIds: string[] = [];
  for (const behavior of current.behaviors.values()) {
    const was = before.behaviors.get(behavior.id);
    if (was && sameBehavior(was, behavior)) continue;
    upsertBehaviors.push(behavior);
    if (!announce) continue;
    const previous = was ? { enabled: was.enabled, risk_level: was.risk_level } : null;
    if (!was) behaviorTransitions.push({ kind: 'behavior', type: 'behavior.added', behavior, previous });
    else {
      if (was.enabled !== behavior.enabled) {
        behaviorTransitions.push({ kind: 'behavior', type: behavior.enabled ? 'behavior.enabled' : 'behavior.disabled', behavior, previous });
      }
      if (was.risk_level !== behavior.risk_level) {
        behaviorTransitions.push({ kind: 'behavior', type: 'behavior.risk_level_changed', behavior, previous });
      }
    }
  }
  for (const [id, was] of before.behaviors) {
    if (current.behaviors.has(id) || current.skippedBehaviorIds.has(id)) continue;
    removeBehaviorIds.push(id);
    if (announce) behaviorTransitions.push({ kind: 'behavior', type: 'behavior.removed', behavior: was, previous: { enabled: was.enabled, risk_level: was.risk_level } });
  }

  userTransitions.sort(compareUserTransitions);
  behaviorTransitions.sort((a, b) => compareText(a.behavior.id, b.behavior.id) || compareText(a.type, b.type));
  return {
    transitions: [...userTransitions, ...behaviorTransitions],
    delta: { upsertUsers, removeUserIds, upsertBehaviors, removeBehaviorIds },
    missing,
  };
}

/** Name and description changes are stored (the next alert shows them) but not announced. */
function sameBehavior(a: Behavior, b: Behavior): boolean {
  return a.enabled === b.enabled && a.risk_level === b.risk_level && a.name === b.name && a.description === b.description;
}

const rank = (level: RiskLevel | null) => LEVEL_RANK[level ?? 'none'];

/** Highest level first (the level after the change, then before it), then by email, then id. */
function compareUserTransitions(a: UserTransition, b: UserTransition): number {
  return rank(b.currentLevel) - rank(a.currentLevel) || rank(b.previousLevel) - rank(a.previousLevel) || compareText(a.user?.email ?? '', b.user?.email ?? '') || compareText(a.userId, b.userId);
}

function compareText(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
