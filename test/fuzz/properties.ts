import { CloudflareError } from '../../src/cloudflare/errors.ts';
import type { PreviousSnapshot } from '../../src/detect/diff.ts';
import { type BehaviorEvent, isUserEvent, type RiskEvent } from '../../src/detect/events.ts';
import { LEVEL_RANK, type RiskLevel } from '../../src/model.ts';
import { type BehaviorState, isClean, type Scenario } from './model.ts';

/**
 * The properties, checked over what one scenario's polls did. Each returns
 * what it found wrong, one line per finding, naming the poll and the subject.
 */

/** One poll as it went: the events it committed, or what it threw. */
export interface PollRecord {
  readonly events: readonly RiskEvent[] | undefined;
  readonly error: unknown;
  /** What it did wrong on the wire (a read left running, a poll that does not stop). */
  readonly problems: readonly string[];
}

const levelName = (level: RiskLevel | null) => level ?? 'none';
const stateName = (state: BehaviorState | null) => (state ? `${state.enabled ? 'enabled' : 'disabled'}/${state.risk_level}` : 'none');
const sameState = (a: BehaviorState | null, b: BehaviorState | null) => a?.enabled === b?.enabled && a?.risk_level === b?.risk_level;
const asState = (b: { enabled: boolean; risk_level: RiskLevel }): BehaviorState => ({ enabled: b.enabled, risk_level: b.risk_level });

/** Events replayed per subject: what was last announced of each user and behavior, by index into the scenario. */
class Announced {
  readonly users = new Map<number, RiskLevel | null>();
  readonly behaviors = new Map<number, BehaviorState | null>();
}

/**
 * 1. Every announcement is true of the model at that poll, and 2. each
 * subject's announcements form one unbroken chain from none. Returns the
 * findings and the last announcement of each subject, for convergence.
 */
export function checkAnnouncements(s: Scenario, polls: readonly PollRecord[]): { findings: string[]; announced: Announced } {
  const findings: string[] = [];
  const announced = new Announced();
  const userIndex = new Map(s.users.map((u, i) => [u.user_id.toLowerCase(), i]));
  const behaviorIndex = new Map(s.behaviors.map((b, i) => [b.id, i]));
  const ids = new Set<string>();

  polls.forEach((poll, p) => {
    const truth = s.polls[p]!.truth;
    const usersSeen = new Set<number>();
    const byBehavior = new Map<number, BehaviorEvent[]>();
    for (const event of poll.events ?? []) {
      if (ids.has(event.id)) findings.push(`poll ${p}: event id ${event.id} committed twice`);
      ids.add(event.id);
      if (!isUserEvent(event)) {
        const b = behaviorIndex.get(event.data.behavior.id);
        if (b === undefined) findings.push(`poll ${p}: ${event.type} of behavior ${JSON.stringify(event.data.behavior.id)}, which the model never had`);
        else byBehavior.set(b, [...(byBehavior.get(b) ?? []), event]);
        continue;
      }
      const { user_id } = event.data.user;
      const from = event.data.previous_level;
      const to = event.data.current_level;
      const u = userIndex.get(user_id.toLowerCase());
      const what = `poll ${p}: ${event.type} of ${u === undefined ? JSON.stringify(user_id.slice(0, 60)) : `user ${u}`} ${levelName(from)} -> ${levelName(to)}`;
      if (u === undefined) {
        findings.push(`${what}: the model has no such user`);
        continue;
      }
      const now = truth.users[u] ?? null;
      if (to !== now) findings.push(`${what}: the model has them at ${levelName(now)}`);
      const last = announced.users.get(u) ?? null;
      if (from !== last) findings.push(`${what}: the last announcement left them at ${levelName(last)}`);
      if (from === to) findings.push(`${what}: nothing changed`);
      if (usersSeen.has(u)) findings.push(`${what}: a second event for them in one poll`);
      const rise = LEVEL_RANK[to ?? 'none'] > LEVEL_RANK[from ?? 'none'];
      if (event.type !== (rise ? 'user.risk_level_raised' : 'user.risk_level_lowered')) findings.push(`${what}: the wrong type`);
      usersSeen.add(u);
      announced.users.set(u, to);
    }

    for (const [b, events] of byBehavior) {
      const what = `poll ${p}: ${events.map((e) => e.type).join(' + ')} of behavior ${JSON.stringify(s.behaviors[b]!.id)}`;
      const first = events[0]!;
      const from = first.data.previous ? asState(first.data.previous) : null;
      const to = first.type === 'behavior.removed' ? null : asState(first.data.behavior);
      if (events.some((e) => !sameState(e.data.previous && asState(e.data.previous), from) || !sameState(e.type === 'behavior.removed' ? null : asState(e.data.behavior), to))) {
        findings.push(`${what}: its events disagree on the change`);
      }
      const now = truth.behaviors[b] ?? null;
      if (!sameState(to, now)) findings.push(`${what} -> ${stateName(to)}: the model has ${stateName(now)}`);
      const last = announced.behaviors.get(b) ?? null;
      if (!sameState(from, last)) findings.push(`${what} from ${stateName(from)}: the last announcement left it at ${stateName(last)}`);
      const expected = [
        ...(from === null && to !== null ? ['behavior.added'] : []),
        ...(from !== null && to === null ? ['behavior.removed'] : []),
        ...(from && to && from.enabled !== to.enabled ? [to.enabled ? 'behavior.enabled' : 'behavior.disabled'] : []),
        ...(from && to && from.risk_level !== to.risk_level ? ['behavior.risk_level_changed'] : []),
      ];
      if (
        expected.sort().join() !==
        events
          .map((e) => e.type)
          .sort()
          .join()
      ) {
        findings.push(`${what}: ${stateName(from)} -> ${stateName(to)} calls for ${expected.join(' + ') || 'nothing'}`);
      }
      announced.behaviors.set(b, to);
    }
  });
  return { findings, announced };
}

/** 3. After the clean polls at the end, the last announcement of every user and behavior, and the stored snapshot, are the truth. */
export function checkConvergence(s: Scenario, announced: Announced, stored: PreviousSnapshot | undefined): string[] {
  const findings: string[] = [];
  const truth = s.polls.at(-1)!.truth;
  s.users.forEach((_, u) => {
    const last = announced.users.get(u) ?? null;
    const now = truth.users[u] ?? null;
    if (last !== now) findings.push(`after the clean polls: user ${u} was last announced at ${levelName(last)}, the model has ${levelName(now)}`);
  });
  s.behaviors.forEach((b, i) => {
    const last = announced.behaviors.get(i) ?? null;
    const now = truth.behaviors[i] ?? null;
    if (!sameState(last, now)) findings.push(`after the clean polls: behavior ${JSON.stringify(b.id)} was last announced ${stateName(last)}, the model has ${stateName(now)}`);
  });

  const storedUsers = new Map([...(stored?.userLevels ?? [])].map(([id, level]) => [id.toLowerCase(), level]));
  const wantUsers = new Map(s.users.flatMap((u, i) => (truth.users[i] ? [[u.user_id.toLowerCase(), truth.users[i]] as const] : [])));
  const userRows = (m: ReadonlyMap<string, RiskLevel>) =>
    [...m]
      .map(([id, level]) => `${id}=${level}`)
      .sort()
      .join(', ');
  if (userRows(storedUsers) !== userRows(wantUsers)) findings.push(`after the clean polls: the store holds users {${userRows(storedUsers)}}, the model {${userRows(wantUsers)}}`);
  const behaviorRows = (entries: [string, BehaviorState][]) =>
    entries
      .map(([id, state]) => `${JSON.stringify(id)}=${stateName(state)}`)
      .sort()
      .join(', ');
  const storedBehaviors = behaviorRows([...(stored?.behaviors ?? [])].map(([id, b]) => [id, asState(b)]));
  const wantBehaviors = behaviorRows(s.behaviors.flatMap((b, i) => (truth.behaviors[i] ? [[b.id, truth.behaviors[i]] as [string, BehaviorState]] : [])));
  if (storedBehaviors !== wantBehaviors) findings.push(`after the clean polls: the store holds behaviors {${storedBehaviors}}, the model {${wantBehaviors}}`);
  return findings;
}

/** 4. A poll fails only with a CloudflareError, never over a clean answer, and leaves nothing running behind it. */
export function checkOutcomes(s: Scenario, polls: readonly PollRecord[]): string[] {
  return polls.flatMap((poll, p) => {
    const findings = [...poll.problems];
    if (poll.events !== undefined) return findings;
    const error = poll.error;
    const said = error instanceof Error ? `${error.name}: ${error.message.slice(0, 300)}` : String(error);
    const stopped = error instanceof Error && error.message.startsWith('fuzz:');
    if (!(error instanceof CloudflareError) && !stopped) findings.push(`poll ${p} threw what is not a CloudflareError: ${said}`);
    if (isClean(s.polls[p]!)) findings.push(`poll ${p} failed over a clean answer: ${said}`);
    return findings;
  });
}

/** The run poll by poll, for the report: each poll's faults and what it committed or threw. */
export function describeRun(s: Scenario, polls: readonly PollRecord[]): string {
  const userIndex = new Map(s.users.map((u, i) => [u.user_id.toLowerCase(), i]));
  const name = (e: RiskEvent) =>
    isUserEvent(e)
      ? `user ${userIndex.get(e.data.user.user_id.toLowerCase()) ?? JSON.stringify(e.data.user.user_id.slice(0, 40))} ${levelName(e.data.previous_level)}->${levelName(e.data.current_level)}`
      : `${e.type} ${JSON.stringify(e.data.behavior.id)}`;
  return polls
    .map((poll, p) => {
      const faults = s.polls[p]!.answers.faults.map((f) => (f.kind === 'answer' ? `${f.call} answer${f.every ? '' : ' (once)'}` : f.kind));
      const outcome = poll.events
        ? `committed ${poll.events.map(name).join(', ') || 'nothing new'}`
        : `failed: ${poll.error instanceof Error ? `${poll.error.name}: ${poll.error.message.slice(0, 200)}` : String(poll.error)}`;
      return `  poll ${p} (${faults.join(', ') || 'clean'}): ${outcome}`;
    })
    .join('\n');
}
