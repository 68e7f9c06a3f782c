import { describe, expect, it } from 'vitest';
import { Metrics } from '../../src/daemon/metrics.ts';
import type { StateStore } from '../../src/store/store.ts';

/** The registry's lines of riskwatch's own per-account series (Node's process metrics left out). */
async function accountLines(metrics: Metrics): Promise<string[]> {
  const text = await metrics.registry.metrics();
  return text.split('\n').filter((line) => line.startsWith('riskwatch_') && line.includes('account="'));
}

describe('Metrics.keepAccounts: a reload drops the series of accounts no longer configured', () => {
  it('removes every per-account series of a removed or renamed account, and keeps the others', async () => {
    const metrics = new Metrics();
    for (const account of ['production', 'staging', 'old-name']) {
      metrics.pollSucceeded(account, 0.2, { users: 10, levels: { low: 5, medium: 3, high: 2 }, silenced: 1, flapping: 1, flappingSuppressed: 2, eventTypes: ['user.risk_level_raised'] });
      metrics.pollFailed(account, 1.5);
      metrics.recordsSkipped(account, 'malformed_user', 2);
    }
    expect((await accountLines(metrics)).some((line) => line.includes('account="staging"'))).toBe(true);

    // staging removed, old-name renamed to new-name.
    await metrics.keepAccounts(['production', 'new-name']);

    const lines = await accountLines(metrics);
    expect(lines.filter((line) => line.includes('account="staging"') || line.includes('account="old-name"'))).toEqual([]);
    for (const series of ['poll_duration_seconds_count', 'poll_errors_total', 'users_tracked', 'users', 'events_silenced_total', 'events_total', 'records_skipped_total']) {
      expect(lines.some((line) => line.startsWith(`riskwatch_${series}{`) && line.includes('account="production"'))).toBe(true);
    }
    // A kept account's series go on counting from where they were.
    metrics.pollFailed('production', 1);
    expect(lines.find((line) => line.startsWith('riskwatch_poll_errors_total{account="production"}'))).toBe('riskwatch_poll_errors_total{account="production"} 1');
    expect((await accountLines(metrics)).find((line) => line.startsWith('riskwatch_poll_errors_total{account="production"}'))).toBe('riskwatch_poll_errors_total{account="production"} 2');
  });
});

describe('who is at risk, over time, and what silences muted', () => {
  it('riskwatch_users{account,level} follows each poll; silenced events are counted; active silences are read from the store at scrape', async () => {
    const metrics = new Metrics();
    metrics.pollSucceeded('production', 0.1, { users: 6, levels: { low: 3, medium: 2, high: 1 }, silenced: 2, flapping: 0, flappingSuppressed: 0, eventTypes: [] });
    metrics.pollSucceeded('production', 0.1, { users: 6, levels: { low: 2, medium: 2, high: 2 }, silenced: 0, flapping: 0, flappingSuppressed: 0, eventTypes: [] });
    metrics.watchStore({ deliveryCounts: async () => new Map(), listSilences: async () => [{}, {}, {}] } as never);
    const text = await metrics.registry.metrics();
    expect(text).toContain('riskwatch_users{account="production",level="high"} 2');
    expect(text).toContain('riskwatch_users{account="production",level="low"} 2');
    expect(text).toContain('riskwatch_events_silenced_total{account="production"} 2');
    expect(text).toContain('riskwatch_silences_active 3');
  });

  it('a store that cannot be read keeps the last count, and the scrape works', async () => {
    const metrics = new Metrics();
    let fail = false;
    metrics.watchStore({ deliveryCounts: async () => new Map(), listSilences: async () => (fail ? Promise.reject(new Error('database down')) : [{}]) } as never);
    expect(await metrics.registry.metrics()).toContain('riskwatch_silences_active 1');
    fail = true;
    expect(await metrics.registry.metrics()).toContain('riskwatch_silences_active 1');
  });
});

describe('replicas: only the leader of an account exports its users', () => {
  it('an account another replica now leads drops out of riskwatch_users and riskwatch_users_tracked here, and comes back with the next poll', async () => {
    const metrics = new Metrics();
    const leads = new Map([
      ['production', true],
      ['staging', true],
    ]);
    metrics.watchLeadership(() => [...leads].map(([account, l]) => ({ account, leads: l })));
    for (const account of leads.keys()) metrics.pollSucceeded(account, 0.1, { users: 3, levels: { low: 1, medium: 1, high: 1 }, silenced: 0, flapping: 0, flappingSuppressed: 0, eventTypes: [] });
    leads.set('staging', false);
    let lines = await accountLines(metrics);
    expect(lines.filter((line) => /^riskwatch_users(_tracked)?\{/.test(line) && line.includes('account="staging"'))).toEqual([]);
    expect(lines).toContain('riskwatch_users{account="production",level="high"} 1');
    expect(lines).toContain('riskwatch_users_tracked{account="production"} 3');
    expect(lines).toContain('riskwatch_account_leader{account="staging"} 0');

    leads.set('staging', true);
    metrics.pollSucceeded('staging', 0.1, { users: 4, levels: { low: 2, medium: 1, high: 1 }, silenced: 0, flapping: 0, flappingSuppressed: 0, eventTypes: [] });
    lines = await accountLines(metrics);
    expect(lines).toContain('riskwatch_users{account="staging",level="low"} 2');
    expect(lines).toContain('riskwatch_users_tracked{account="staging"} 4');
  });
});

describe('series an alert can read from the start', () => {
  it('every configured sink has its outbox series at 0 before it has work', async () => {
    const metrics = new Metrics();
    metrics.watchSinks(() => ['secops', 'pager']);
    const store = { deliveryCounts: async () => new Map([['pager', { pending: 2, dead: 1 }]]), listSilences: async () => [] } as unknown as StateStore;
    metrics.watchStore(store);
    const text = await metrics.registry.metrics();
    for (const line of [
      'riskwatch_deliveries_pending{sink="secops"} 0',
      'riskwatch_deliveries_pending{sink="pager"} 2',
      'riskwatch_deliveries_dead_lettered{sink="secops"} 0',
      'riskwatch_deliveries_dead_lettered{sink="pager"} 1',
    ]) {
      expect(text.split('\n')).toContain(line);
    }
  });

  it('config_last_reload_successful and its timestamp: 1 after a good read, 0 after a refused one, the time of the last good one kept', async () => {
    const metrics = new Metrics();
    const line = async (name: string) => (await metrics.registry.metrics()).split('\n').find((l) => l.startsWith(`${name} `));
    metrics.configLoaded(true, 1_700_000_000_000);
    expect(await line('riskwatch_config_last_reload_successful')).toBe('riskwatch_config_last_reload_successful 1');
    metrics.configLoaded(false, 1_700_000_060_000);
    expect(await line('riskwatch_config_last_reload_successful')).toBe('riskwatch_config_last_reload_successful 0');
    expect(await line('riskwatch_config_last_reload_success_timestamp_seconds')).toBe('riskwatch_config_last_reload_success_timestamp_seconds 1700000000');
  });
});
