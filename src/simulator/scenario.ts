import { type Behavior, LEVEL_RANK, RISK_LEVELS, type RiskLevel, type RiskUser } from '../model.ts';
import type { FakeAccount } from './fake-api.ts';

const { randomUUID } = process.getBuiltinModule('node:crypto');

/**
 * A living tenant for the demo: about fifty people whose risk rises and falls
 * every few seconds, scores an admin resets, newcomers, and detections that
 * someone keeps switching on and off. It only changes a FakeAccount; the
 * fake API serves whatever the account holds.
 */

const FIRST = [
  'Ada',
  'Bruno',
  'Chen',
  'Dana',
  'Elif',
  'Farid',
  'Grace',
  'Hiro',
  'Ines',
  'Jonas',
  'Kofi',
  'Lena',
  'Mateo',
  'Nadia',
  'Omar',
  'Priya',
  'Quinn',
  'Rosa',
  'Sven',
  'Tala',
  'Uma',
  'Viktor',
  'Wen',
  'Yusuf',
  'Zoe',
];
const LAST = ['Okafor', 'Lindqvist', 'Moreau', 'Tanaka', 'Silva', 'Kowalski', 'Haddad', 'Novak', 'Reyes', 'Fischer', 'Nguyen', 'Costa', 'Ibrahim', 'Larsen', 'Patel'];

/** Behaviors in the style of Cloudflare's predefined ones (ids are open strings; more are added over time). */
export const DEMO_BEHAVIORS: readonly Behavior[] = [
  { id: 'imp_travel', name: 'Impossible travel', description: 'A user logged in from two places too far apart for the time between them.', enabled: true, risk_level: 'high' },
  { id: 'high_dlp', name: 'High number of DLP policies triggered', description: 'A user triggered many data loss prevention policies in a short time.', enabled: true, risk_level: 'medium' },
  { id: 'sentinel_one', name: 'SentinelOne threat detected on device', description: "SentinelOne reported an active threat on one of the user's devices.", enabled: true, risk_level: 'high' },
  {
    id: 'crowdstrike_low_score',
    name: 'CrowdStrike device posture score low',
    description: "A device's CrowdStrike Zero Trust Assessment score dropped below the threshold.",
    enabled: false,
    risk_level: 'medium',
  },
  { id: 'new_country_login', name: 'Login from a new country', description: 'A user authenticated from a country not seen for them before.', enabled: true, risk_level: 'low' },
  { id: 'failed_logins', name: 'Repeated failed logins', description: 'Many failed authentications for one user within minutes.', enabled: true, risk_level: 'low' },
];

export class DemoScenario {
  readonly #account: FakeAccount;
  readonly #random: () => number;
  #people = 0;
  #steps = 0;

  constructor(account: FakeAccount, random: () => number = Math.random) {
    this.#account = account;
    this.#random = random;
  }

  get behaviorCount(): number {
    return this.#account.behaviors.size;
  }

  /** The tenant as riskwatch first finds it: `users` people, mostly low risk, and the behaviors. */
  seed(users = 50): void {
    for (const behavior of DEMO_BEHAVIORS) this.#account.behaviors.set(behavior.id, { ...behavior });
    for (let i = 0; i < users; i++) this.#join(this.#pick(['low', 'low', 'low', 'low', 'medium', 'medium', 'high']));
  }

  /** One tick of life: someone's risk goes up, often someone else's down; now and then a reset, a newcomer, a toggled detection. */
  step(): void {
    this.#steps++;
    const users = [...this.#account.users.values()] as RiskUser[];
    const climbers = users.filter((u) => u.max_risk_level !== 'high');
    if (climbers.length > 0) this.#rise(this.#pick(climbers));
    if (this.#random() < 0.5 && climbers.length > 1) this.#rise(this.#pick(climbers));
    if (this.#random() < 0.4) this.#calm(this.#pick(users));
    if (this.#random() < 0.15) this.#account.users.delete(this.#pick(users).user_id); // an admin reset their score
    if (this.#random() < 0.2) this.#join(this.#pick(RISK_LEVELS));
    // Every other tick, somebody flips a detection (the first tick always does).
    if (this.#steps % 2 === 1) {
      const behavior = this.#account.behaviors.get(this.#pick(DEMO_BEHAVIORS).id) as Behavior;
      this.#account.behaviors.set(behavior.id, { ...behavior, enabled: !behavior.enabled });
    }
  }

  #join(level: RiskLevel): void {
    const n = this.#people++;
    // Strides that are coprime with the list lengths: 375 distinct names before any repeats.
    const first = FIRST[(n * 7) % FIRST.length]!;
    const last = LAST[(n * 4 + Math.floor(n / FIRST.length)) % LAST.length]!;
    const user: RiskUser = {
      user_id: randomUUID(),
      email: `${first}.${last}${n >= FIRST.length * LAST.length ? n : ''}@example.com`.toLowerCase(),
      name: `${first} ${last}`,
      event_count: 1 + Math.floor(this.#random() * 5),
      last_event: new Date().toISOString(),
      max_risk_level: level,
    };
    this.#account.users.set(user.user_id, user);
    this.#recordEvent(user, level);
  }

  #rise(user: RiskUser): void {
    const level = RISK_LEVELS[Math.min(2, LEVEL_RANK[user.max_risk_level] + (this.#random() < 0.3 ? 2 : 1) - 1)]!;
    this.#account.users.set(user.user_id, { ...user, max_risk_level: level, event_count: user.event_count + 1, last_event: new Date().toISOString() });
    this.#recordEvent(user, level);
  }

  #calm(user: RiskUser): void {
    if (user.max_risk_level === 'low') return;
    const level = RISK_LEVELS[LEVEL_RANK[user.max_risk_level] - 2]!;
    this.#account.users.set(user.user_id, { ...user, max_risk_level: level });
  }

  /** A risk event behind the level, from an enabled behavior of that level, for enrichment to find. */
  #recordEvent(user: RiskUser, level: RiskLevel): void {
    const candidates = DEMO_BEHAVIORS.filter((b) => b.risk_level === level);
    const behavior = candidates.length > 0 ? this.#pick(candidates) : DEMO_BEHAVIORS[0]!;
    const events = this.#account.events.get(user.user_id) ?? [];
    events.push({ id: randomUUID(), name: behavior.name, risk_level: level, timestamp: new Date().toISOString() });
    this.#account.events.set(user.user_id, events.slice(-10));
  }

  #pick<T>(items: readonly T[]): T {
    return items[Math.floor(this.#random() * items.length)]!;
  }
}
