import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { OpsgenieSinkConfig } from '../../src/config/config.ts';
import { Secret } from '../../src/config/secret.ts';
import type { RiskEvent } from '../../src/detect/events.ts';
import { incidentKey } from '../../src/notify/incident.ts';
import { DeliveryError } from '../../src/notify/sink.ts';
import { OPSGENIE_LIMITS, type OpsgenieMessage, OpsgenieSink } from '../../src/notify/sinks/opsgenie.ts';
import { FakeClock } from '../support/fake-clock.ts';
import { FakeOpsgenie } from '../support/fakes/opsgenie.ts';
import { expectGolden } from '../support/golden.ts';
import { BEHAVIOR_EVENTS, HOSTILE, HOSTILE_BEHAVIOR_ID, hostileEvents, LONG_NAME, longNameEvent, MIN_LEVEL, renderCases, renderStorm, sendCases, USER_CASES } from '../support/incident-events.ts';
import { ACCOUNT, riskUser, userEvent } from '../support/store-fixtures.ts';

const API_KEY = '6f1c2b9e-3d4a-4e8f-9b7c-0a1d2e3f4a5b';
const TAGS = ['riskwatch', 'zero-trust'];

/** The golden file test/notify/golden/opsgenie/<name>.json, as pretty JSON. */
const golden = (name: string, value: unknown) => expectGolden(new URL(`golden/opsgenie/${name}.json`, import.meta.url), `${JSON.stringify(value, null, 2)}\n`);

let fake: FakeOpsgenie;
let clock: FakeClock;
beforeEach(async () => {
  fake = await FakeOpsgenie.start({ apiKey: API_KEY });
  clock = new FakeClock();
});
afterEach(async () => {
  await fake.close();
});

function configFor(overrides: Partial<OpsgenieSinkConfig> = {}): OpsgenieSinkConfig {
  return {
    type: 'opsgenie',
    name: 'secops',
    minLevel: MIN_LEVEL,
    events: undefined,
    accounts: undefined,
    apiKey: new Secret(API_KEY),
    url: fake.url,
    priority: { high: 'P1', medium: 'P3', low: 'P5' },
    tags: TAGS,
    credentialId: 'cred-genie',
    ...overrides,
  };
}

const sinkFor = (overrides: Partial<OpsgenieSinkConfig> = {}) => new OpsgenieSink(configFor(overrides), { clock });
const signal = () => AbortSignal.timeout(10_000);
const deliver = (sink: OpsgenieSink, ...events: RiskEvent[]) => sink.send(sink.render(events), signal());
const failure = async (sink: OpsgenieSink, event: RiskEvent) => (await deliver(sink, event).catch((e: unknown) => e)) as DeliveryError;
const raised = USER_CASES['user.risk_level_raised']['low → high (opens)']!;
const lowered = USER_CASES['user.risk_level_lowered']['high → low, below min_level (closes)']!;
const { 'behavior.disabled': disabled, 'behavior.enabled': enabled } = BEHAVIOR_EVENTS;
const createBody = (message: OpsgenieMessage) => message.requests[0]!.body as Extract<OpsgenieMessage['requests'][number], { path: '/v2/alerts' }>['body'];

describe('golden payloads: one file per event type Opsgenie is sent, each accepted by the fake', () => {
  const cases: Record<string, Record<string, RiskEvent>> = { ...USER_CASES, 'behavior.disabled': { disabled }, 'behavior.enabled': { enabled } };

  it.each(Object.entries(cases))('%s', async (type, byCase) => {
    const sink = sinkFor();
    const result = renderCases(sink, byCase);
    golden(type, result);
    await sendCases(sink, result);
  });

  it('the test notification', async () => {
    const sink = sinkFor();
    golden('test-notification', sink.renderTest());
    await sink.send(sink.renderTest(), signal());
  });

  it('other behavior events are not sent', () => {
    const sink = sinkFor();
    for (const type of ['behavior.risk_level_changed', 'behavior.added', 'behavior.removed'] as const) {
      expect(sink.accepts(BEHAVIOR_EVENTS[type])).toBe(false);
      expect(sink.render([BEHAVIOR_EVENTS[type]]).requests).toEqual([]);
    }
  });
});

describe('users: a rise to min_level creates an alert, the drop below it closes it by alias', () => {
  it('create then close under riskwatch/<account_id>/user/<user_id>', async () => {
    const sink = sinkFor();
    const alias = `riskwatch/${ACCOUNT.id}/user/${raised.data.user.user_id}`;
    await deliver(sink, raised);
    expect(fake.openAlerts().map((a) => a.alias)).toEqual([alias]);
    await deliver(sink, lowered);
    expect(fake.isOpen(alias)).toBe(false);
    expect(fake.alerts[0]!.closeNote).toBe('Closed by riskwatch: User 1 <user1@example.com> lowered high → low in production');
    expect(fake.calls.map((c) => [c.action, c.alias, c.identifierType])).toEqual([
      ['create', alias, undefined],
      ['close', alias, 'alias'],
    ]);
  });

  it('the alert: message, alias, description, string details, the email as entity, source, priority from the map, tags', async () => {
    await deliver(sinkFor(), raised);
    const { body } = fake.alerts[0]!;
    expect(body).toMatchObject({
      message: 'User 1 <user1@example.com> raised low → high in production',
      alias: incidentKey(raised),
      entity: 'user1@example.com',
      source: 'riskwatch',
      priority: 'P1',
      tags: TAGS,
    });
    expect(body.description).toContain('Risk level: low → high');
    expect(body.description).toContain('- Impossible travel (high) at 2026-11-22T17:58:00Z');
    expect(body.details).toEqual({
      event_type: 'user.risk_level_raised',
      event_id: raised.id,
      account: 'production',
      account_id: ACCOUNT.id,
      user_id: raised.data.user.user_id,
      email: 'user1@example.com',
      name: 'User 1',
      previous_level: 'low',
      current_level: 'high',
      event_count: String(raised.data.user.event_count),
      last_event: '2026-11-22T17:59:00Z',
    });
  });

  it('takes the priority from the map, by the level reached', async () => {
    await deliver(sinkFor({ priority: { high: 'P2', medium: 'P4', low: 'P5' } }), raised, USER_CASES['user.risk_level_raised']['none → medium, new to the summary (opens)']!);
    expect(fake.alerts.map((a) => a.body.priority)).toEqual(['P2', 'P4']);
  });

  it('a drop that stays at or above min_level sends nothing', () => {
    const within = USER_CASES['user.risk_level_lowered']['high → medium, still at min_level (nothing)']!;
    expect(sinkFor().accepts(within)).toBe(false);
    expect(sinkFor().render([within]).requests).toEqual([]);
  });
});

describe('behaviors: a disable creates a P3 alert, an enable closes it', () => {
  it('under riskwatch/<account_id>/behavior/<id>, with the behavior id as entity', async () => {
    const sink = sinkFor();
    await deliver(sink, disabled);
    expect(fake.openAlerts()).toMatchObject([{ alias: `riskwatch/${ACCOUNT.id}/behavior/imp_travel`, body: { priority: 'P3', entity: 'imp_travel' } }]);
    await deliver(sink, enabled);
    expect(fake.openAlerts()).toEqual([]);
  });

  it('an entity is one line: a line break or bidi control in an email or behavior id cannot forge another', () => {
    const user = riskUser(9, 'high', { email: 'eve@example.com\nPriority: P1\u202e' });
    const [create] = sinkFor().render([userEvent('evt-x', user, 'low', 'high')]).requests;
    expect((create!.body as { entity: string }).entity).toBe('eve@example.com Priority: P1 ');
  });

  it('closes an alias that holds /, ?, #, %, spaces and non-ASCII: it is one encoded path segment', async () => {
    const sink = sinkFor();
    const [, hostileDisabled, hostileEnabled] = hostileEvents();
    const alias = `riskwatch/${ACCOUNT.id}/behavior/${HOSTILE_BEHAVIOR_ID}`;
    await deliver(sink, hostileDisabled!);
    expect(fake.isOpen(alias)).toBe(true);
    await deliver(sink, hostileEnabled!);
    expect(fake.isOpen(alias)).toBe(false);
    expect(fake.requests.at(-1)!.path).toBe(`/v2/alerts/${encodeURIComponent(alias)}/close?identifierType=alias`);
    expect(fake.calls.at(-1)).toMatchObject({ action: 'close', alias, identifierType: 'alias' });
  });
});

describe('closes', () => {
  it('only what closes an alert (no silence holds those back)', () => {
    const events = [...Object.values(USER_CASES).flatMap((cases) => Object.entries(cases)), ...Object.entries(BEHAVIOR_EVENTS)];
    expect(events.filter(([, event]) => sinkFor().incident(event)?.action === 'close').map(([name]) => name)).toEqual([
      'high → low, below min_level (closes)',
      'medium → none, left the summary (closes)',
      'settled low after high (closes)',
      'behavior.enabled',
    ]);
  });
});

describe('a delivery of several events (a reload handed this sink a grouped delivery)', () => {
  it('sends one request per event it takes, in order, and skips the rest', async () => {
    await deliver(sinkFor(), raised, BEHAVIOR_EVENTS['behavior.added'], disabled, lowered);
    expect(fake.calls.map((c) => c.action)).toEqual(['create', 'create', 'close']);
  });
});

describe('storm: 500 users at once are 500 deliveries, each under its own alias', () => {
  it('routes, renders and sends them', async () => {
    const config = configFor();
    const sink = new OpsgenieSink(config, { clock });
    const { deliveries, messages, keys, golden: summary } = renderStorm(config, sink, (m) => createBody(m).alias);
    expect(deliveries).toHaveLength(500);
    expect(keys.size).toBe(500);
    golden('storm', summary);
    for (const message of messages) await sink.send(message, signal());
    expect(fake.openAlerts()).toHaveLength(500);
  });
});

describe('limits: what Opsgenie would refuse or JSM would drop is cut, and the cut is written down', () => {
  it('a 131-character message is never sent: it is cut to 130', async () => {
    const name = (length: number) => userEvent('evt-131', riskUser(5, 'high', { name: 'N'.repeat(length) }), 'low', 'high');
    const headlineOf = (length: number) => `${'N'.repeat(length)} <user5@example.com> raised low → high in production`;
    const length = 131 - headlineOf(0).length;
    expect(headlineOf(length)).toHaveLength(131);
    const message = sinkFor().render([name(length)]);
    expect(createBody(message).message).toHaveLength(OPSGENIE_LIMITS.message);
    expect(createBody(message).message.endsWith('…')).toBe(true);
    expect(message.cuts).toContain('message cut from 131 to 130 characters');
    await sinkFor().send(message, signal());
    expect(fake.alerts[0]!.body.message).toHaveLength(130);
    // One shorter fits as it is.
    expect(createBody(sinkFor().render([name(length - 1)])).message).toBe(headlineOf(length - 1));
  });

  it('a 10,000-character name: cut to 130 in the message, to 1024 in the description, to its share in the details, and accepted', async () => {
    const sink = sinkFor();
    const event = longNameEvent();
    const message = sink.render([event]);
    golden('long-name', message);
    const body = createBody(message);
    expect(body.message).toHaveLength(OPSGENIE_LIMITS.message);
    expect(body.description.length).toBeLessThanOrEqual(OPSGENIE_LIMITS.description);
    expect(body.description).toContain('Account: production');
    const detailsSize = Object.entries(body.details).reduce((sum, [k, v]) => sum + k.length + v.length, 0);
    expect(detailsSize).toBeLessThanOrEqual(OPSGENIE_LIMITS.details);
    expect(body.details.name).toBe(`${LONG_NAME.slice(0, body.details.name!.length - 1)}…`);
    expect(message.cuts).toEqual([
      expect.stringMatching(/^message cut from \d+ to 130 characters$/),
      'user name cut from 10000 to 1024 characters',
      expect.stringMatching(/^details\.name cut from 10000 to \d+ characters$/),
    ]);
    await sink.send(message, signal());
    expect(fake.openAlerts()).toHaveLength(1);
  });

  it('hostile strings stay text: a one-line message, the details verbatim', async () => {
    const sink = sinkFor();
    const events = hostileEvents();
    const messages = events.map((event) => sink.render([event]));
    golden('hostile', messages);
    for (const message of messages) await sink.send(message, signal());
    const created = fake.alerts[0]!.body as { message: string; details: Record<string, string> };
    expect(created.message).not.toMatch(/[\r\n\u202e\u2066]/);
    expect(created.details.name).toBe(HOSTILE);
    expect(fake.openAlerts()).toEqual([]);
  });
});

describe('answers: 202 accepted, 429 and 5xx retried, other 4xx permanent', () => {
  it('a wrong API key: a permanent 401 that never shows either key', async () => {
    const wrong = 'ffffffff-3d4a-4e8f-9b7c-0a1d2e3f4a5b';
    const error = await failure(sinkFor({ apiKey: new Secret(wrong) }), raised);
    expect(error).toBeInstanceOf(DeliveryError);
    expect(error).toMatchObject({ retryable: false, status: 401 });
    for (const text of [error.message, String(error)]) {
      expect(text).not.toContain(wrong);
      expect(text).not.toContain(API_KEY);
    }
    expect(fake.alerts).toEqual([]);
  });

  it('sends the key as Authorization: GenieKey, and only there', async () => {
    const sink = sinkFor();
    await deliver(sink, raised);
    expect(fake.requests[0]!.headers.authorization).toBe(`GenieKey ${API_KEY}`);
    for (const message of [sink.renderTest(), sink.render([raised]), sink.render([lowered])]) expect(JSON.stringify(message)).not.toContain(API_KEY);
  });

  it('a body Opsgenie refuses (422) is permanent', async () => {
    const tooMany = Array.from({ length: 21 }, (_, i) => `tag${i}`);
    const error = await failure(sinkFor({ tags: tooMany }), raised);
    expect(error).toMatchObject({ retryable: false, status: 422 });
    expect(error.message).toContain('not processable');
  });

  it('429 with Retry-After is retried after the time it asks', async () => {
    fake.failNext(1, { status: 429, headers: { 'retry-after': '12' } });
    expect(await failure(sinkFor(), raised)).toMatchObject({ retryable: true, status: 429, retryAfterMs: 12_000 });
  });

  it.each([500, 503])('%i is retried', async (status) => {
    fake.failNext(1, { status });
    expect(await failure(sinkFor(), raised)).toMatchObject({ retryable: true, status });
  });

  it('no error holds the API key', async () => {
    const errors: DeliveryError[] = [];
    for (const answer of [{ status: 403, body: 'forbidden' }, { status: 429 }, { status: 500 }, { reset: true as const }]) {
      fake.failNext(1, answer);
      errors.push(await failure(sinkFor(), raised));
    }
    for (const error of errors) for (const text of [error.message, String(error)]) expect(text).not.toContain(API_KEY);
  });
});

describe('url: Opsgenie EU and Jira Service Management are other bases for the same paths', () => {
  it('creates and closes under the JSM integration path', async () => {
    const jsm = await FakeOpsgenie.start({ apiKey: API_KEY, basePath: '/jsm/ops/integration' });
    try {
      const sink = sinkFor({ url: jsm.url });
      await deliver(sink, raised);
      await deliver(sink, lowered);
      expect(jsm.requests.map((r) => r.path)).toEqual(['/jsm/ops/integration/v2/alerts', `/jsm/ops/integration/v2/alerts/${encodeURIComponent(incidentKey(raised))}/close?identifierType=alias`]);
      expect(jsm.alerts.map((a) => a.open)).toEqual([false]);
      expect(fake.requests).toEqual([]);
    } finally {
      await jsm.close();
    }
  });
});

describe('test-sinks: a P5 alert created and closed at once', () => {
  it('proves the key and leaves nothing open', async () => {
    const sink = sinkFor();
    await sink.send(sink.renderTest(), signal());
    expect(fake.calls.map((c) => [c.action, c.alias])).toEqual([
      ['create', 'riskwatch/test/secops'],
      ['close', 'riskwatch/test/secops'],
    ]);
    expect(fake.alerts).toMatchObject([{ open: false, body: { priority: 'P5', message: 'riskwatch test notification for sink secops: this sink works' } }]);
  });
});
