import { describe, expect, it } from 'vitest';
import type { SinkConfig } from '../../src/config/config.ts';
import type { BehaviorEvent, LevelChangeEvent, RiskEvent } from '../../src/detect/events.ts';
import type { EventType, RiskLevel } from '../../src/model.ts';
import { incidentStep } from '../../src/notify/incident.ts';
import { routeEvents } from '../../src/notify/route.ts';
import { behavior, riskUser } from '../support/snapshots.ts';

const ACCOUNT = 'acc-prod';
/** notify.lowered on: every sink is told of drops that its min_level covers. */
const LOWERED = { lowered: true };
const QUIET = { lowered: false };
const TIMESTAMP = '2026-11-22T18:00:05.123Z';

type Level = RiskLevel | null;

function userEvent(id: string, previous: Level, current: Level): LevelChangeEvent {
  const rank = (level: Level) => (level === null ? 0 : ['low', 'medium', 'high'].indexOf(level) + 1);
  const { max_risk_level: _level, ...user } = riskUser(`user-${id}`, current ?? 'low');
  return {
    id,
    type: rank(current) > rank(previous) ? 'user.risk_level_raised' : 'user.risk_level_lowered',
    timestamp: TIMESTAMP,
    data: { account: { id: ACCOUNT, name: 'production' }, user, previous_level: previous, current_level: current },
  };
}

function behaviorEvent(id: string, type: BehaviorEvent['type'], riskLevel: RiskLevel = 'low'): BehaviorEvent {
  return {
    id,
    type,
    timestamp: TIMESTAMP,
    data: {
      account: { id: ACCOUNT, name: 'production' },
      behavior: behavior(`beh-${id}`, { risk_level: riskLevel }),
      previous: type === 'behavior.added' ? null : { enabled: true, risk_level: riskLevel },
    },
  };
}

function sink(
  name: string,
  routing: { minLevel?: RiskLevel; events?: readonly EventType[]; accounts?: readonly string[]; grouping?: 'poll' | 'event' } = {},
): { config: SinkConfig; sink: { grouping: 'poll' | 'event' } } {
  return {
    config: {
      type: 'console',
      name,
      minLevel: routing.minLevel ?? 'low',
      events: routing.events && new Set(routing.events),
      accounts: routing.accounts && new Set(routing.accounts),
    },
    sink: { grouping: routing.grouping ?? 'event' },
  };
}

/** The event ids each sink got, one inner list per delivery. */
function routed(events: readonly RiskEvent[], sinks: ReturnType<typeof sink>[], accountId = ACCOUNT) {
  return routeEvents(accountId, events, sinks, LOWERED).map((d) => [d.sink, ...d.eventIds]);
}

describe('min_level: user events below it skip the sink', () => {
  it.each([
    ['raised to low, min medium: skipped', null, 'low', 'medium', false],
    ['raised low → medium, min medium: kept (at the threshold)', 'low', 'medium', 'medium', true],
    ['raised medium → high, min medium: kept', 'medium', 'high', 'medium', true],
    ['raised to high, min high: kept', null, 'high', 'high', true],
    ['raised low → medium, min high: skipped', 'low', 'medium', 'high', false],
    ['raised to low, min low: kept', null, 'low', 'low', true],
    // Lowered events compare the level the user leaves, so the sink that got the rise gets the all-clear.
    ['lowered high → none (left the summary), min high: kept', 'high', null, 'high', true],
    ['lowered high → low, min high: kept', 'high', 'low', 'high', true],
    ['lowered medium → none, min medium: kept', 'medium', null, 'medium', true],
    ['lowered medium → low, min high: skipped', 'medium', 'low', 'high', false],
    ['lowered low → none, min medium: skipped', 'low', null, 'medium', false],
  ] as const)('%s', (_label, previous, current, minLevel, kept) => {
    const event = userEvent('e1', previous, current);
    expect(routed([event], [sink('s', { minLevel })])).toEqual(kept ? [['s', 'e1']] : []);
  });

  it.each(['behavior.enabled', 'behavior.disabled', 'behavior.risk_level_changed', 'behavior.added', 'behavior.removed'] as const)(
    '%s of a low behavior reaches a min_level high sink: behavior events ignore min_level',
    (type) => {
      expect(routed([behaviorEvent('b1', type, 'low')], [sink('s', { minLevel: 'high' })])).toEqual([['s', 'b1']]);
    },
  );

  it('keeps the qualifying events of a mixed poll, in their order', () => {
    const events = [userEvent('high', 'low', 'high'), userEvent('low', null, 'low'), behaviorEvent('beh', 'behavior.disabled'), userEvent('med', 'low', 'medium')];
    expect(routed(events, [sink('s', { minLevel: 'medium', grouping: 'poll' })])).toEqual([['s', 'high', 'beh', 'med']]);
  });
});

describe('events: a sink receives only the event types it lists', () => {
  const events = [
    userEvent('raised', 'low', 'high'),
    userEvent('lowered', 'high', 'low'),
    behaviorEvent('disabled', 'behavior.disabled'),
    behaviorEvent('enabled', 'behavior.enabled'),
    behaviorEvent('added', 'behavior.added'),
  ];

  it('only the listed types', () => {
    expect(routed(events, [sink('s', { events: ['user.risk_level_raised', 'behavior.disabled'] })])).toEqual([
      ['s', 'raised'],
      ['s', 'disabled'],
    ]);
  });

  it('every type when the list is left out', () => {
    expect(routed(events, [sink('s')]).map(([, id]) => id)).toEqual(['raised', 'lowered', 'disabled', 'enabled', 'added']);
  });

  it('both filters apply: a listed type below min_level is still skipped', () => {
    const mixed = [userEvent('to-low', null, 'low'), userEvent('to-high', 'low', 'high')];
    expect(routed(mixed, [sink('s', { events: ['user.risk_level_raised'], minLevel: 'high' })])).toEqual([['s', 'to-high']]);
  });
});

describe('accounts: a sink receives only the accounts it lists', () => {
  const events = [userEvent('e1', 'low', 'high')];

  it('a listed account is routed', () => {
    expect(routed(events, [sink('s', { accounts: [ACCOUNT, 'acc-other'] })], ACCOUNT)).toEqual([['s', 'e1']]);
  });

  it('an unlisted account is not', () => {
    expect(routed(events, [sink('s', { accounts: ['acc-other'] })], ACCOUNT)).toEqual([]);
  });

  it('every account when the list is left out', () => {
    expect(routed(events, [sink('s')], 'acc-anything')).toEqual([['s', 'e1']]);
  });

  it('each delivery names the account it belongs to', () => {
    expect(routeEvents('acc-dev', events, [sink('s')], LOWERED)).toMatchObject([{ sink: 's', accountId: 'acc-dev', eventIds: ['e1'] }]);
  });
});

describe('each delivery names its subjects: what its events are about, once each', () => {
  it('a user by account and id, a behavior by account and id', () => {
    const rise = userEvent('e1', 'low', 'high');
    const drop = { ...userEvent('e2', 'high', 'low'), data: { ...userEvent('e2', 'high', 'low').data, user: rise.data.user } };
    const [delivery] = routeEvents(ACCOUNT, [rise, drop, behaviorEvent('e3', 'behavior.disabled')], [sink('slack', { grouping: 'poll' })], LOWERED);
    expect(delivery?.subjects).toEqual([`${ACCOUNT}/user/user-e1`, `${ACCOUNT}/behavior/beh-e3`]);
  });
});

describe('grouping: one delivery per poll, or one per event', () => {
  const events = [userEvent('e1', 'low', 'high'), behaviorEvent('e2', 'behavior.disabled'), userEvent('e3', null, 'medium')];

  it("'poll': one delivery holding every event the sink wants, in order", () => {
    expect(routeEvents(ACCOUNT, events, [sink('slack', { grouping: 'poll' })], LOWERED)).toEqual([
      { sink: 'slack', accountId: ACCOUNT, eventIds: ['e1', 'e2', 'e3'], subjects: [`${ACCOUNT}/user/user-e1`, `${ACCOUNT}/behavior/beh-e2`, `${ACCOUNT}/user/user-e3`] },
    ]);
  });

  it("'event': one delivery per event, in order", () => {
    expect(routeEvents(ACCOUNT, events, [sink('hook', { grouping: 'event' })], LOWERED)).toEqual([
      { sink: 'hook', accountId: ACCOUNT, eventIds: ['e1'], subjects: [`${ACCOUNT}/user/user-e1`] },
      { sink: 'hook', accountId: ACCOUNT, eventIds: ['e2'], subjects: [`${ACCOUNT}/behavior/beh-e2`] },
      { sink: 'hook', accountId: ACCOUNT, eventIds: ['e3'], subjects: [`${ACCOUNT}/user/user-e3`] },
    ]);
  });

  it('each sink is routed on its own: its grouping and its filters', () => {
    const sinks = [
      sink('slack', { grouping: 'poll', minLevel: 'high' }),
      sink('hook', { grouping: 'event', events: ['behavior.disabled', 'user.risk_level_raised'] }),
      sink('elsewhere', { accounts: ['acc-other'] }),
    ];
    expect(routed(events, sinks)).toEqual([
      ['slack', 'e1', 'e2'],
      ['hook', 'e1'],
      ['hook', 'e2'],
      ['hook', 'e3'],
    ]);
  });
});

describe('no delivery when nothing matches', () => {
  it('no events, no deliveries, whatever the grouping', () => {
    expect(routeEvents(ACCOUNT, [], [sink('a', { grouping: 'poll' }), sink('b', { grouping: 'event' })], LOWERED)).toEqual([]);
  });

  it('a poll-grouped sink whose filters drop every event gets no empty delivery', () => {
    const events = [userEvent('e1', null, 'low'), behaviorEvent('e2', 'behavior.added')];
    expect(routeEvents(ACCOUNT, events, [sink('s', { grouping: 'poll', minLevel: 'medium', events: ['user.risk_level_raised'] })], LOWERED)).toEqual([]);
  });

  it('no sinks, no deliveries', () => {
    expect(routeEvents(ACCOUNT, [userEvent('e1', 'low', 'high')], [], LOWERED)).toEqual([]);
  });
});

describe('notify.lowered: drops always recorded; told to chat, webhook and email sinks only when on, to incident sinks always', () => {
  const events = [userEvent('rise', 'low', 'high'), userEvent('drop', 'high', 'low'), userEvent('gone', 'high', null)];
  const incident = (name: string, type: 'pagerduty' | 'opsgenie') => {
    const { config, sink: s } = sink(name, { minLevel: 'high' });
    return { config: { ...config, type } as unknown as SinkConfig, sink: s };
  };

  it('off: a chat sink gets the rise only; PagerDuty and Opsgenie get the drops too, to resolve what they opened', () => {
    const routedQuiet = routeEvents(ACCOUNT, events, [sink('slack', { minLevel: 'high' }), incident('pd', 'pagerduty'), incident('og', 'opsgenie')], QUIET);
    expect(routedQuiet.map((d) => [d.sink, ...d.eventIds])).toEqual([
      ['slack', 'rise'],
      ['pd', 'rise'],
      ['pd', 'drop'],
      ['pd', 'gone'],
      ['og', 'rise'],
      ['og', 'drop'],
      ['og', 'gone'],
    ]);
  });

  it('on: every sink gets the drops', () => {
    expect(routed(events, [sink('slack', { minLevel: 'high' })])).toEqual([
      ['slack', 'rise'],
      ['slack', 'drop'],
      ['slack', 'gone'],
    ]);
  });
});

describe("a sink's own accepts() has the last word", () => {
  it('an incident sink takes no drop that stays at or above its min_level, and no behavior event it has no step for', () => {
    const events = [userEvent('rise', 'low', 'high'), userEvent('stays', 'high', 'medium'), userEvent('falls', 'medium', 'low'), behaviorEvent('b1', 'behavior.added')];
    const { config } = sink('pd', { minLevel: 'medium' });
    const pd = { config: { ...config, type: 'pagerduty' } as unknown as SinkConfig, sink: { grouping: 'event' as const, accepts: (e: RiskEvent) => incidentStep(e, 'medium') !== undefined } };
    expect(routeEvents(ACCOUNT, events, [pd], QUIET).map((d) => d.eventIds[0])).toEqual(['rise', 'falls']);
  });

  it("a delivery says what it does to an incident of the sink, as the sink's incident() says, with the sink's key (a silence then holds a close back no more)", () => {
    const events = [userEvent('rise', 'low', 'high'), userEvent('falls', 'high', 'low')];
    const { config } = sink('pd', { minLevel: 'high' });
    const pd = {
      config: { ...config, type: 'pagerduty', credentialId: 'cred-pd' } as unknown as SinkConfig,
      sink: { grouping: 'event' as const, incident: (e: RiskEvent) => incidentStep(e, 'high') },
    };
    expect(routeEvents(ACCOUNT, events, [pd], QUIET).map((d) => [d.eventIds[0], d.incident?.action, d.incident?.credentialId])).toEqual([
      ['rise', 'open', 'cred-pd'],
      ['falls', 'close', 'cred-pd'],
    ]);
  });

  it('what closes an incident goes to the sink whatever its events say: nothing else would close it', () => {
    const events = [userEvent('rise', 'low', 'high'), userEvent('falls', 'high', 'low')];
    const { config } = sink('pd', { minLevel: 'high' });
    const onlyRises = { ...config, type: 'pagerduty', credentialId: 'cred-pd', events: new Set(['user.risk_level_raised']) } as unknown as SinkConfig;
    const pd = { config: onlyRises, sink: { grouping: 'event' as const, incident: (e: RiskEvent) => incidentStep(e, 'high') } };
    expect(routeEvents(ACCOUNT, events, [pd], QUIET).map((d) => d.eventIds[0])).toEqual(['rise', 'falls']);
  });
});

describe('flapping users (SPEC §9)', () => {
  const flapping = (id: string, highest: RiskLevel, level: Level): RiskEvent => {
    const change = userEvent(id, highest, level);
    return { ...change, type: 'user.flapping', data: { ...change.data, level, changes: 4, window: '30m', lowest: null, highest } };
  };
  const settled = (id: string, highest: RiskLevel, level: Level): RiskEvent => {
    const at = userEvent(id, level, level);
    return { ...at, type: 'user.settled', data: { ...at.data, level, window: '30m', lowest: 'low', highest } };
  };

  it('user.flapping and user.settled go where a rise to the highest level seen would go, drops or not, lowered or not', () => {
    const events = [flapping('f', 'high', 'low'), settled('s', 'high', 'low'), flapping('g', 'medium', null)];
    const routed = (minLevel: RiskLevel) => routeEvents(ACCOUNT, events, [sink('chat', { minLevel })], QUIET).map((d) => d.eventIds[0]);
    expect(routed('high')).toEqual(['f', 's']);
    expect(routed('medium')).toEqual(['f', 's', 'g']);
  });

  it('a change marked flapping (a flapping user’s) goes to no sink, incident sinks included', () => {
    const muted = { ...userEvent('m', 'low', 'high'), flapping: true as const };
    const pd = {
      config: { ...sink('pd').config, type: 'pagerduty', credentialId: 'cred-pd' } as unknown as SinkConfig,
      sink: { grouping: 'event' as const, incident: (e: RiskEvent) => incidentStep(e, 'low') },
    };
    expect(routeEvents(ACCOUNT, [muted], [sink('chat'), pd], LOWERED)).toEqual([]);
  });

  it('a sink whose events list names rises takes the flapping story too, and one naming rises or drops the settling', () => {
    const events = [flapping('f', 'high', 'low'), settled('s', 'high', 'low')];
    const only = (types: EventType[]) => routeEvents(ACCOUNT, events, [sink('chat', { events: types })], LOWERED).map((d) => d.eventIds[0]);
    expect(only(['user.risk_level_raised'])).toEqual(['f', 's']);
    expect(only(['user.risk_level_lowered'])).toEqual(['s']);
    expect(only(['behavior.disabled'])).toEqual([]);
  });
});
