import type { FlappingRules } from '../config/config.ts';
import { formatDuration } from '../config/duration.ts';
import { LEVEL_RANK, type RiskLevel, type RiskUser } from '../model.ts';
import { type AccountRef, isUserEvent, type RiskEvent, type SettledEvent, type UserEvent } from './events.ts';

/**
 * Flapping (SPEC §9): a user whose level keeps changing is one story, not a
 * page per poll. The change that reaches `changes` level changes within
 * `window` is announced as `user.flapping` instead of its own type; the user's
 * later changes are recorded, marked `flapping`, and sent to no sink; the
 * first poll after `window` has passed with no change announces one
 * `user.settled`. Pure: the poller hands it each poll's events and the users'
 * stored states, and commits the states it returns with the poll, under the
 * account's version, so that the decision survives restarts, failover and
 * `once` from cron.
 */

type Level = RiskLevel | 'none';

/** What is kept of one user between polls: their recent changes, and whether they are flapping. */
export interface FlapState {
  /** The user's level changes within the window (and, while flapping, the last one), oldest first. */
  readonly changes: readonly { readonly at: number; readonly from: Level; readonly to: Level }[];
  /** While flapping: the lowest and highest level seen since it began; null otherwise. */
  readonly flapping: { readonly lowest: Level; readonly highest: Level } | null;
  /** The user as last seen (a settled announcement names them with no change of its own). */
  readonly user: Omit<RiskUser, 'max_risk_level'>;
}

export interface FlappingOutcome {
  /** The poll's events as announced: a change that made a user flapping replaced, later ones marked, settled users' added. */
  readonly events: RiskEvent[];
  /** States to store (by user id), and users whose state is to be forgotten. */
  readonly upsert: ReadonlyMap<string, FlapState>;
  readonly remove: readonly string[];
  /** Changes recorded and sent to no sink because their user is flapping. */
  readonly suppressed: number;
}

const levelOf = (level: RiskLevel | null): Level => level ?? 'none';
const lower = (a: Level, b: Level): Level => (LEVEL_RANK[a] <= LEVEL_RANK[b] ? a : b);
const higher = (a: Level, b: Level): Level => (LEVEL_RANK[a] >= LEVEL_RANK[b] ? a : b);
const shown = (level: Level): RiskLevel | null => (level === 'none' ? null : level);

/**
 * One poll's events through the rules, at `at` (the poll's time, epoch ms).
 * `states`: every stored state of the account (only users with recent changes
 * have one). `newId` names a settled announcement.
 */
export function applyFlapping(
  rules: FlappingRules,
  states: ReadonlyMap<string, FlapState>,
  events: readonly RiskEvent[],
  context: { readonly at: number; readonly account: AccountRef; readonly newId: () => string },
): FlappingOutcome {
  const { at } = context;
  const since = at - rules.windowMs;
  const upsert = new Map<string, FlapState>();
  const changed = new Set<string>();
  let suppressed = 0;
  const out: RiskEvent[] = [];
  for (const event of events) {
    if (!isLevelChange(event)) {
      out.push(event);
      continue;
    }
    const userId = event.data.user.user_id;
    changed.add(userId);
    const before = upsert.get(userId) ?? states.get(userId);
    const change = { at, from: levelOf(event.data.previous_level), to: levelOf(event.data.current_level) };
    const recent = [...(before?.changes.filter((c) => c.at > since) ?? []), change];
    const { user } = event.data;
    if (before?.flapping) {
      const flapping = { lowest: lower(before.flapping.lowest, change.to), highest: higher(before.flapping.highest, change.to) };
      upsert.set(userId, { changes: recent, flapping, user });
      out.push({ ...event, flapping: true });
      suppressed++;
      continue;
    }
    if (recent.length < rules.changes) {
      upsert.set(userId, { changes: recent, flapping: null, user });
      out.push(event);
      continue;
    }
    // The change that reaches the threshold: announced as user.flapping instead, with the levels of the window.
    const lowest = recent.reduce<Level>((low, c) => lower(low, lower(c.from, c.to)), change.to);
    const highest = recent.reduce<Level>((high, c) => higher(high, higher(c.from, c.to)), change.to);
    upsert.set(userId, { changes: recent, flapping: { lowest, highest }, user });
    out.push({
      id: event.id,
      type: 'user.flapping',
      timestamp: event.timestamp,
      data: { ...event.data, level: shown(change.to), changes: recent.length, window: formatDuration(rules.windowMs), lowest: shown(lowest), highest: shown(highest) },
    });
  }
  const remove: string[] = [];
  for (const [userId, state] of states) {
    if (changed.has(userId)) continue;
    const last = state.changes.at(-1);
    const quiet = last === undefined || last.at <= since;
    if (!quiet) continue;
    // Quiet for the whole window: a flapping user has settled; anyone else is forgotten.
    remove.push(userId);
    if (state.flapping) out.push(settled(state, last?.to ?? state.flapping.highest, rules, context));
  }
  return { events: out, upsert, remove, suppressed };
}

function isLevelChange(event: RiskEvent): event is UserEvent & { type: 'user.risk_level_raised' | 'user.risk_level_lowered' } {
  return isUserEvent(event) && (event.type === 'user.risk_level_raised' || event.type === 'user.risk_level_lowered');
}

function settled(state: FlapState, level: Level, rules: FlappingRules, context: { readonly at: number; readonly account: AccountRef; readonly newId: () => string }): SettledEvent {
  const now = shown(level);
  return {
    id: context.newId(),
    type: 'user.settled',
    timestamp: new Date(context.at).toISOString(),
    data: {
      account: context.account,
      user: state.user,
      previous_level: now,
      current_level: now,
      level: now,
      window: formatDuration(rules.windowMs),
      lowest: shown(state.flapping!.lowest),
      highest: shown(state.flapping!.highest),
    },
  };
}

/** The users flapping now, of an account's states: riskwatch_users_flapping. */
export function flappingCount(states: Iterable<FlapState>): number {
  let n = 0;
  for (const state of states) if (state.flapping) n++;
  return n;
}
