import { RequestBudget } from '../../src/cloudflare/budget.ts';
import { CloudflareClient, type CloudflareClientOptions } from '../../src/cloudflare/client.ts';
import type { Credential } from '../../src/config/config.ts';
import { Secret } from '../../src/config/secret.ts';
import { silentLogger } from '../../src/log.ts';
import type { Behavior, RiskLevel, RiskUser } from '../../src/model.ts';
import type { FakeRiskApi } from '../../src/simulator/fake-api.ts';
import { FakeClock } from './fake-clock.ts';

export const ACCOUNT = '023e105f4ecef8ad9ca31a8372d0c353';
export const OTHER_ACCOUNT = '9a7806061c88ada191ed06f989cc3dac';
export const TOKEN = 'cf-test-token-3f9a2c';

export const tokenCredential = (token = TOKEN): Credential => ({ scheme: 'token', id: `cred-${token}`, token: new Secret(token) });

/** A user row as the summary lists it; `n` makes the id, email and name. */
export function user(n: number, level: RiskLevel = 'low'): RiskUser {
  const id = `00000000-0000-4000-8000-${String(n).padStart(12, '0')}`;
  return { user_id: id, email: `user${n}@example.com`, name: `User ${n}`, event_count: n % 7, last_event: '2026-11-22T17:59:00Z', max_risk_level: level };
}

export function behavior(id: string, enabled = true, risk_level: RiskLevel = 'medium'): Behavior {
  return { id, name: `Behavior ${id}`, description: `Detects ${id}`, enabled, risk_level };
}

/** Puts `count` users into the fake API's account. */
export function seedUsers(api: FakeRiskApi, count: number, account = ACCOUNT): RiskUser[] {
  const users = Array.from({ length: count }, (_, i) => user(i + 1, (['low', 'medium', 'high'] as const)[i % 3]));
  const target = api.account(account);
  for (const u of users) target.users.set(u.user_id, u);
  return users;
}

/** A client against the fake API with a fake clock: retries and budget waits take no real time. */
export function clientFor(api: FakeRiskApi, overrides: Partial<CloudflareClientOptions> = {}) {
  const clock = (overrides.clock as FakeClock | undefined) ?? new FakeClock();
  const budget = overrides.budget ?? new RequestBudget(1200, clock);
  const client = new CloudflareClient({
    baseUrl: api.baseUrl,
    credential: tokenCredential(),
    log: silentLogger,
    random: () => 0.5,
    ...overrides,
    clock,
    budget,
  });
  return { client, clock, budget };
}
