import { afterEach, describe, expect, it } from 'vitest';
import { type Config, isIncidentSink, type SinkConfig } from '../../src/config/config.ts';
import { parseConfig } from '../../src/config/load.ts';
import { applyIncidentPlan, planIncidentCloses } from '../../src/daemon/incidents.ts';
import type { RiskEvent } from '../../src/detect/events.ts';
import { incidentKey, uncoveredBecause } from '../../src/notify/incident.ts';
import { SqliteStore } from '../../src/store/sqlite.ts';
import { type ConfigDoc, configYaml, ENV, OTHER_ACCOUNT_ID } from '../support/config-files.ts';
import { captureLogs } from '../support/logs.ts';
import { ACCOUNT, behavior, behaviorEvent, delta, makeStateDir, planned, pollCommit, riskUser, type StateDir, T0, userEvent } from '../support/store-fixtures.ts';

/**
 * What a config load does to the incidents sinks opened (issue 29): the rule
 * (uncoveredBecause) as a table, then the plan and its application against a
 * real SQLite store (both stores, end to end: test/e2e/incidents.test.ts).
 */

const PD_KEY = 'R0UT1NGKEYunitAAAAAAAAAAAAAAAAAA';
const OTHER_KEY = 'R0UT1NGKEYunitBBBBBBBBBBBBBBBBBB';

/** The test config with a PagerDuty sink `oncall` (min_level medium, behaviors as incidents) and an Opsgenie sink `genie`, after `edit`. */
function config(edit?: (doc: ConfigDoc, sinks: Record<string, Record<string, unknown>>) => void): Config {
  const text = configYaml((doc) => {
    doc.accounts.push({ id: OTHER_ACCOUNT_ID, name: 'staging' });
    const oncall = { name: 'oncall', type: 'pagerduty', routing_key: PD_KEY, min_level: 'medium', behaviors: 'alert' };
    const genie = { name: 'genie', type: 'opsgenie', api_key: 'genie-unit-key-1', min_level: 'medium' };
    doc.sinks = [oncall, genie];
    edit?.(doc, { oncall, genie });
  });
  return parseConfig(text, '/etc/riskwatch/riskwatch.yaml', ENV);
}

const sink = (c: Config, name: string) => c.sinks.find((s) => s.name === name)!;
const credentialOf = (s: SinkConfig) => (isIncidentSink(s) ? s.credentialId : '');
const alice = riskUser(1, 'high');
const subject = `${ACCOUNT.id}/user/${alice.user_id}`;

describe('uncoveredBecause: what a config no longer covers', () => {
  const incident = (sinkName: string, subjectOf = subject, accountId: string = ACCOUNT.id) => ({ sink: sinkName, accountId, subject: subjectOf, credentialId: 'x' });
  it.each([
    ['covered: the user at or above min_level', config(), incident('oncall'), 'high', undefined],
    ['min_level raised above the user', config((_, s) => (s.oncall!.min_level = 'high')), incident('oncall'), 'medium', "the user is at medium now, below sink oncall's min_level high"],
    ['the user left the summary', config(), incident('oncall'), undefined, 'the user is no longer listed'],
    ['the sink removed', config((doc) => doc.sinks.splice(0, 1)), incident('oncall'), 'high', 'sink oncall is no longer configured'],
    [
      'the sink is no longer an incident sink',
      config((doc) => (doc.sinks[0] = { name: 'oncall', type: 'slack', url: 'https://hooks.slack.com/services/T/B/x' })),
      incident('oncall'),
      'high',
      'sink oncall is no longer configured',
    ],
    [
      'the account removed',
      config(),
      incident('oncall', `${OTHER_ACCOUNT_ID}/user/${alice.user_id}`, '9a7806061c88ada191ed06f989cc3dab'),
      'high',
      'account 9a7806061c88ada191ed06f989cc3dab is no longer configured',
    ],
    ['the sink no longer takes the account', config((_, s) => (s.oncall!.accounts = ['staging'])), incident('oncall'), 'high', 'sink oncall no longer takes account production'],
    [
      'a behavior, PagerDuty no longer opening incidents for them',
      config((_, s) => (s.oncall!.behaviors = 'change')),
      incident('oncall', `${ACCOUNT.id}/behavior/imp/travel`),
      undefined,
      'sink oncall no longer opens incidents for behaviors',
    ],
    ['a behavior on Opsgenie, which always opens them', config(), incident('genie', `${ACCOUNT.id}/behavior/imp/travel`), undefined, undefined],
  ] as const)('%s', (_what, c, open, level, why) => {
    expect(uncoveredBecause(open, c, level)).toBe(why);
  });
});

describe('planIncidentCloses and applyIncidentPlan against a store', () => {
  let dir: StateDir | undefined;
  let store: SqliteStore | undefined;
  afterEach(async () => {
    await store?.close();
    dir?.remove();
    [store, dir] = [undefined, undefined];
  });

  /** A store where `oncall` (with the credential of `opened`) opened an incident for alice (high) and for a disabled behavior. */
  async function opened(with_: Config): Promise<SqliteStore> {
    dir = makeStateDir();
    store = SqliteStore.open(dir.path('state.db'));
    const up = userEvent('evt-up', alice, 'low', 'high');
    const off = behaviorEvent('evt-off', behavior('imp_travel', { enabled: false }), 'behavior.disabled', { enabled: true, risk_level: 'high' });
    const trigger = (event: RiskEvent) => ({ ...planned('oncall', [event]), incident: { action: 'open' as const, key: incidentKey(event), credentialId: credentialOf(sink(with_, 'oncall')) } });
    await store.commitPoll(pollCommit({ delta: delta({ upsertUsers: [alice] }), events: [up, off], deliveries: [trigger(up), trigger(off)] }));
    return store;
  }

  it('a config that covers them changes nothing', async () => {
    const s = await opened(config());
    expect(await planIncidentCloses(s, config())).toEqual({ changes: [], retired: [], stranded: [] });
  });

  it('min_level raised: the user’s incident is closed at the sink itself, saying why; the behavior’s stays', async () => {
    const s = await opened(config());
    const raised = config((_, sinks) => (sinks.oncall!.min_level = 'high'));
    await s.commitPoll(pollCommit({ expectedVersion: 1, polledAt: T0 + 1, delta: delta({ upsertUsers: [riskUser(1, 'medium')] }) }));
    const plan = await planIncidentCloses(s, raised);
    expect(plan.changes.map((c) => [c.incident.subject, c.close, c.reopen])).toEqual([[subject, { sink: 'oncall', note: "the user is at medium now, below sink oncall's min_level high" }, undefined]]);
    const logs = captureLogs();
    await applyIncidentPlan(s, plan, logs.log, T0 + 2);
    expect(logs.lines().map((l) => l.msg as string)).toEqual(["closing an incident the config no longer covers: the user is at medium now, below sink oncall's min_level high"]);
    expect((await s.listIncidents({})).map((i) => i.subject)).toEqual([`${ACCOUNT.id}/behavior/imp_travel`]);
    // Behind the trigger of the same user: it goes once the trigger has.
    const triggers = await s.claimDue('oncall', T0 + 2, 10);
    await s.recordOutcomes(triggers.map((d) => ({ deliveryId: d.id, outcome: { kind: 'delivered', at: T0 + 2 } })));
    const [close] = await s.claimDue('oncall', T0 + 2, 10);
    expect(close).toMatchObject({ incident: { action: 'retire', key: incidentKey(userEvent('x', alice, 'low', 'high')) } });
  });

  it('a new routing key, the old config held: closed with a sink of the old key (returned for the daemon to drain), opened again under the new', async () => {
    const before = config();
    const s = await opened(before);
    const after = config((_, sinks) => (sinks.oncall!.routing_key = OTHER_KEY));
    const plan = await planIncidentCloses(s, after, before.sinks);
    const old = credentialOf(sink(before, 'oncall'));
    expect(plan.retired.map((r) => [r.name, r.type === 'pagerduty' && r.routingKey.reveal()])).toEqual([[`oncall@${old}`, PD_KEY]]);
    expect(plan.changes.map((c) => [c.close?.sink, c.reopen?.credentialId])).toEqual([
      [`oncall@${old}`, credentialOf(sink(after, 'oncall'))],
      [`oncall@${old}`, credentialOf(sink(after, 'oncall'))],
    ]);
    await applyIncidentPlan(s, plan, captureLogs().log, T0 + 1);
    expect((await s.listIncidents({})).map((i) => [i.sink, i.credentialId])).toEqual([
      ['oncall', credentialOf(sink(after, 'oncall'))],
      ['oncall', credentialOf(sink(after, 'oncall'))],
    ]);
    expect((await s.claimDue(`oncall@${old}`, T0 + 1, 10)).map((d) => d.incident?.action)).toEqual(['retire', 'retire']);
  });

  it('a new routing key while stopped (the old key held by no one): opened again under the new one, the old said to be resolved by hand', async () => {
    const s = await opened(config());
    const plan = await planIncidentCloses(
      s,
      config((_, sinks) => (sinks.oncall!.routing_key = OTHER_KEY)),
    );
    expect(plan.retired).toEqual([]);
    expect(plan.changes.map((c) => [c.close, c.reopen !== undefined])).toEqual([
      [undefined, true],
      [undefined, true],
    ]);
    const logs = captureLogs();
    await applyIncidentPlan(s, plan, logs.log, T0 + 1);
    expect(logs.lines().filter((l) => l.level === 40)).toHaveLength(2);
    expect(logs.lines()[0]!.msg as string).toMatch(
      /^incident riskwatch\/.* of sink oncall is open, but the config no longer covers it \(sink oncall's routing key changed\) and no sink riskwatch holds has the key it was opened with \(cred-[0-9a-f]{8}\): resolve it by hand$/,
    );
    expect(await s.listIncidents({})).toHaveLength(2);
  });

  it('a sink renamed with the same key: its incidents stay open, as the renamed sink’s; nothing is closed', async () => {
    const s = await opened(config());
    const renamed = config((_, sinks) => (sinks.oncall!.name = 'pagerduty'));
    const plan = await planIncidentCloses(s, renamed, config().sinks);
    expect(plan.changes.map((c) => [c.incident.sink, c.rehome?.sink, c.close, c.reopen])).toEqual([
      ['oncall', 'pagerduty', undefined, undefined],
      ['oncall', 'pagerduty', undefined, undefined],
    ]);
    expect(plan.retired).toEqual([]);
    await applyIncidentPlan(s, plan, captureLogs().log, T0 + 1);
    expect((await s.listIncidents({})).map((i) => i.sink)).toEqual(['pagerduty', 'pagerduty']);
    expect((await s.deliveryCounts()).get('pagerduty')).toBeUndefined();
  });

  it('a flapping user counts at the highest level they reached: a load while they are down for a moment closes nothing', async () => {
    const s = await opened(config((_, sinks) => (sinks.oncall!.min_level = 'high')));
    const flapping = { changes: [{ at: T0, from: 'high', to: 'low' }], flapping: { lowest: 'low', highest: 'high' }, user: { ...alice, max_risk_level: undefined } } as const;
    await s.commitPoll(
      pollCommit({ expectedVersion: 1, polledAt: T0 + 1, delta: delta({ upsertUsers: [riskUser(1, 'low')] }), flaps: { upsert: new Map([[alice.user_id, flapping as never]]), remove: [] } }),
    );
    const plan = await planIncidentCloses(
      s,
      config((_, sinks) => (sinks.oncall!.min_level = 'high')),
    );
    expect(plan.changes).toEqual([]);
  });

  it('the sink removed while stopped: nothing can close them; they stay listed, and each load says so', async () => {
    const s = await opened(config());
    const removed = config((doc) => doc.sinks.splice(0, 1));
    for (let load = 0; load < 2; load++) {
      const plan = await planIncidentCloses(s, removed);
      expect(plan.changes).toEqual([]);
      expect(plan.stranded.map((x) => x.why)).toEqual(['sink oncall is no longer configured', 'sink oncall is no longer configured']);
      await applyIncidentPlan(s, plan, captureLogs().log, T0 + 1);
    }
    expect(await s.listIncidents({})).toHaveLength(2);
  });
});
