import { expect } from 'vitest';
import { LEVEL_RANK, type RiskLevel } from '../../src/model.ts';
import type { Receiver } from './receiver.ts';

/**
 * The delivery invariants of SPEC §6, shared by the tests that crash, pause or
 * replicate the real process: every rise delivered, none under two ids, none
 * that did not happen.
 */

/** One announced rise of a user: `from` is `none` for a user who just appeared; `id` the event id. */
export interface Announcement {
  readonly email: string;
  readonly from: string;
  readonly to: string;
  readonly id: string;
}

/**
 * The invariants, for one sink's announcements: no transition under two ids (the same id
 * twice is the allowed "rarely twice"), and per user the distinct transitions form one
 * unbroken chain from none to the level the API shows now: nothing lost (the chain reaches
 * the end), nothing spurious (every step starts where the last ended).
 */
export function checkAnnouncements(sink: string, announcements: readonly Announcement[], levels: ReadonlyMap<string, RiskLevel>, seed: number) {
  const idsByTransition = new Map<string, Set<string>>();
  for (const a of announcements) {
    const key = `${a.email} ${a.from}->${a.to}`;
    idsByTransition.set(key, (idsByTransition.get(key) ?? new Set()).add(a.id));
  }
  expect(
    [...idsByTransition].filter(([, ids]) => ids.size > 1),
    `${sink}, seed ${seed}`,
  ).toEqual([]);
  for (const [email, level] of levels) {
    const steps = [...idsByTransition.keys()]
      .filter((key) => key.startsWith(`${email} `))
      .map((key) => key.slice(email.length + 1).split('->') as [string, string])
      .sort((a, b) => LEVEL_RANK[a[0] as RiskLevel | 'none'] - LEVEL_RANK[b[0] as RiskLevel | 'none']);
    let at = 'none';
    for (const [from, to] of steps) {
      expect(from, `${sink}, seed ${seed}: ${email} announced ${from}->${to} after reaching ${at}`).toBe(at);
      at = to;
    }
    expect(at, `${sink}, seed ${seed}: ${email}`).toBe(level);
  }
  return { transitions: idsByTransition.size, duplicates: announcements.length - new Set(announcements.map((a) => a.id)).size };
}

/** A webhook receiver's requests as announcements: the Standard Webhooks `webhook-id` is the event id. */
export function fromWebhook(requests: Receiver['requests']): Announcement[] {
  return requests.map((r) => {
    const body = JSON.parse(r.body) as { data: { user: { email: string }; previous_level: string | null; current_level: string } };
    return { email: body.data.user.email, from: body.data.previous_level ?? 'none', to: body.data.current_level, id: String(r.headers['webhook-id']) };
  });
}

/** True when every user's current level has been announced (the highest level announced for each is the one in `levels`). */
export function reachedLevels(announcements: readonly Announcement[], levels: ReadonlyMap<string, RiskLevel>): boolean {
  const top = new Map<string, RiskLevel | 'none'>();
  for (const a of announcements) if (LEVEL_RANK[a.to as RiskLevel] > LEVEL_RANK[top.get(a.email) ?? 'none']) top.set(a.email, a.to as RiskLevel);
  return [...levels].every(([email, level]) => top.get(email) === level);
}
