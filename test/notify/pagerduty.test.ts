import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { PagerDutySinkConfig } from '../../src/config/config.ts';
import { Secret } from '../../src/config/secret.ts';
import type { RiskEvent } from '../../src/detect/events.ts';
import { incidentKey } from '../../src/notify/incident.ts';
import { DeliveryError } from '../../src/notify/sink.ts';
import { PAGERDUTY_LIMITS, type PagerDutyMessage, PagerDutySink } from '../../src/notify/sinks/pagerduty.ts';
import { FakeClock } from '../support/fake-clock.ts';
import { FakePagerDuty } from '../support/fakes/pagerduty.ts';
import { expectGolden } from '../support/golden.ts';
import { BEHAVIOR_EVENTS, HOSTILE, hostileEvents, LONG_NAME, longNameEvent, MIN_LEVEL, renderCases, renderStorm, sendCases, USER_CASES } from '../support/incident-events.ts';
import { ACCOUNT, riskUser, userEvent } from '../support/store-fixtures.ts';

const ROUTING_KEY = 'e93facc04764012d7bfb002500d5d1a6';
/** The golden file test/notify/golden/pagerduty/<name>.json, as pretty JSON. */
const golden = (name: string, value: unknown) => expectGolden(new URL(`golden/pagerduty/${name}.json`, import.meta.url), `${JSON.stringify(value, null, 2)}\n`);

let fake: FakePagerDuty;
let clock: FakeClock;
beforeEach(async () => {
  fake = await FakePagerDuty.start();
  clock = new FakeClock();
});
afterEach(async () => {
  await fake.close();
});

function configFor(overrides: Partial<PagerDutySinkConfig> = {}): PagerDutySinkConfig {
  return {
    type: 'pagerduty',
    name: 'oncall',
    minLevel: MIN_LEVEL,
    events: undefined,
    accounts: undefined,
    routingKey: new Secret(ROUTING_KEY),
    credentialId: 'cred-oncall',
    url: fake.url,
    severity: { high: 'critical', medium: 'warning', low: 'info' },
    behaviors: 'change',
    ...overrides,
  };
}

const sinkFor = (overrides: Partial<PagerDutySinkConfig> = {}) => new PagerDutySink(configFor(overrides), { clock });

const signal = () => AbortSignal.timeout(10_000);
const deliver = (sink: PagerDutySink, ...events: RiskEvent[]) => sink.send(sink.render(events), signal());
const failure = async (sink: PagerDutySink, event: RiskEvent) => (await deliver(sink, event).catch((e: unknown) => e)) as DeliveryError;
const raised = USER_CASES['user.risk_level_raised']['low → high (opens)']!;
const lowered = USER_CASES['user.risk_level_lowered']['high → low, below min_level (closes)']!;

describe('golden payloads: one file per event type, each accepted by the fake', () => {
  it.each(Object.entries(USER_CASES))('%s', async (type, cases) => {
    const sink = sinkFor();
    const result = renderCases(sink, cases);
    golden(type, result);
    await sendCases(sink, result);
  });

  it.each(Object.entries(BEHAVIOR_EVENTS))('%s, under behaviors: change, alert and off', async (type, event) => {
    const byMode = Object.fromEntries((['change', 'alert', 'off'] as const).map((mode) => [mode, renderCases(sinkFor({ behaviors: mode }), { [type]: event })[type]!]));
    golden(type, byMode);
    await sendCases(sinkFor(), byMode);
  });

  it('the test notification', async () => {
    const sink = sinkFor();
    golden('test-notification', sink.renderTest());
    await sink.send(sink.renderTest(), signal());
  });

  it('renders the same message every time (a retry re-sends what the first attempt sent)', () => {
    const sink = sinkFor();
    for (const event of [raised, lowered, BEHAVIOR_EVENTS['behavior.disabled']]) expect(sink.render([event])).toEqual(sink.render([event]));
  });
});

describe('users: a rise to min_level triggers, the drop below it resolves the same incident', () => {
  it('trigger then resolve under riskwatch/<account_id>/user/<user_id> closes the incident', async () => {
    const sink = sinkFor();
    const key = `riskwatch/${ACCOUNT.id}/user/${raised.data.user.user_id}`;
    await deliver(sink, raised);
    expect(fake.openIncidents(ROUTING_KEY).map((i) => i.dedupKey)).toEqual([key]);
    await deliver(sink, lowered);
    expect(fake.isOpen(key)).toBe(false);
    expect(fake.events.map((e) => [e.action, e.dedupKey])).toEqual([
      ['trigger', key],
      ['resolve', key],
    ]);
  });

  it('the trigger says who, from which level to which, in which account, and carries the webhook data', async () => {
    await deliver(sinkFor(), raised);
    const { body } = fake.events[0]!;
    expect(body).toMatchObject({ routing_key: ROUTING_KEY, event_action: 'trigger', dedup_key: incidentKey(raised) });
    expect(body.payload).toEqual({
      summary: 'User 1 <user1@example.com> raised low → high in production',
      source: ACCOUNT.id,
      severity: 'critical',
      timestamp: raised.timestamp,
      component: 'zero-trust-risk-scoring',
      group: 'production',
      class: 'user.risk_level_raised',
      custom_details: raised.data,
    });
  });

  it('takes the severity from the map, by the level reached', async () => {
    const sink = sinkFor({ severity: { high: 'error', medium: 'info', low: 'info' } });
    await deliver(sink, raised, USER_CASES['user.risk_level_raised']['none → medium, new to the summary (opens)']!);
    expect(fake.events.map((e) => e.payload?.severity)).toEqual(['error', 'info']);
  });

  it('a drop that stays at or above min_level, and a rise that stays below it, send nothing', () => {
    const sink = sinkFor();
    for (const event of [USER_CASES['user.risk_level_lowered']['high → medium, still at min_level (nothing)']!, USER_CASES['user.risk_level_raised']['none → low, below min_level (nothing)']!]) {
      expect(sink.accepts(event)).toBe(false);
      expect(sink.render([event]).requests).toEqual([]);
    }
  });

  it('a repeated all-clear is harmless: PagerDuty accepts and drops a resolve with nothing open', async () => {
    const sink = sinkFor();
    await deliver(sink, lowered);
    await deliver(sink, lowered);
    expect(fake.events.map((e) => e.action)).toEqual(['resolve', 'resolve']);
    expect(fake.incidents).toEqual([]);
  });
});

describe('behaviors: change events, incidents, or nothing', () => {
  const behaviorTypes = Object.keys(BEHAVIOR_EVENTS) as (keyof typeof BEHAVIOR_EVENTS)[];

  it('change (the default): every behavior event is a change event that opens nothing', async () => {
    const sink = sinkFor();
    await deliver(sink, ...Object.values(BEHAVIOR_EVENTS));
    expect(fake.changes.map((c) => c.payload.summary)).toEqual([
      'Impossible travel (imp_travel) disabled (risk level high) in production',
      'Impossible travel (imp_travel) enabled (risk level high) in production',
      'Impossible travel (imp_travel) risk level low → high in production',
      'Impossible travel (imp_travel) added (enabled, risk level high) in production',
      'Impossible travel (imp_travel) removed (was enabled, risk level high) in production',
    ]);
    expect(fake.changes[0]!.payload).toEqual({
      summary: expect.any(String),
      source: ACCOUNT.id,
      timestamp: BEHAVIOR_EVENTS['behavior.disabled'].timestamp,
      custom_details: BEHAVIOR_EVENTS['behavior.disabled'].data,
    });
    expect(fake.events).toEqual([]);
  });

  it('alert: a disable triggers riskwatch/<account_id>/behavior/<id> at the severity of its risk level, an enable resolves it; nothing else is sent', async () => {
    const sink = sinkFor({ behaviors: 'alert', severity: { high: 'error', medium: 'warning', low: 'info' } });
    expect(behaviorTypes.filter((type) => sink.accepts(BEHAVIOR_EVENTS[type]))).toEqual(['behavior.disabled', 'behavior.enabled']);
    const key = `riskwatch/${ACCOUNT.id}/behavior/imp_travel`;
    await deliver(sink, BEHAVIOR_EVENTS['behavior.disabled']);
    expect(fake.openIncidents()).toMatchObject([{ dedupKey: key, payload: { severity: 'error', class: 'behavior.disabled' } }]);
    await deliver(sink, BEHAVIOR_EVENTS['behavior.enabled']);
    expect(fake.openIncidents()).toEqual([]);
    expect(fake.changes).toEqual([]);
  });

  it('closes: only what resolves an incident (no silence holds those back), never a change event', () => {
    const closing = (sink: PagerDutySink) =>
      [...Object.values(USER_CASES).flatMap((cases) => Object.entries(cases)), ...Object.entries(BEHAVIOR_EVENTS)]
        .filter(([, event]) => sink.incident(event)?.action === 'close')
        .map(([name]) => name);
    const users = ['high → low, below min_level (closes)', 'medium → none, left the summary (closes)', 'settled low after high (closes)'];
    expect(closing(sinkFor())).toEqual(users);
    expect(closing(sinkFor({ behaviors: 'alert' }))).toEqual([...users, 'behavior.enabled']);
  });

  it('off: no behavior event is taken', () => {
    const sink = sinkFor({ behaviors: 'off' });
    expect(behaviorTypes.filter((type) => sink.accepts(BEHAVIOR_EVENTS[type]))).toEqual([]);
    expect(sink.render(Object.values(BEHAVIOR_EVENTS)).requests).toEqual([]);
  });
});

describe('a delivery of several events (a reload handed this sink a grouped delivery)', () => {
  it('sends one request per event it takes, in order, and skips the rest', async () => {
    const within = USER_CASES['user.risk_level_lowered']['high → medium, still at min_level (nothing)']!;
    await deliver(sinkFor(), raised, within, BEHAVIOR_EVENTS['behavior.disabled'], lowered);
    expect(fake.requests.map((r) => r.path)).toEqual(['/v2/enqueue', '/v2/change/enqueue', '/v2/enqueue']);
    expect(fake.events.map((e) => e.action)).toEqual(['trigger', 'resolve']);
  });
});

describe('storm: 500 users at once are 500 deliveries, each under its own key', () => {
  it('routes, renders and sends them', async () => {
    const config = configFor();
    const sink = new PagerDutySink(config, { clock });
    const { deliveries, messages, keys, golden: summary } = renderStorm(config, sink, (m) => (m.requests[0]!.body as { dedup_key: string }).dedup_key);
    expect(deliveries).toHaveLength(500);
    expect(keys.size).toBe(500);
    golden('storm', summary);
    for (const message of messages) await sink.send(message, signal());
    expect(fake.openIncidents()).toHaveLength(500);
  });
});

describe('limits: what PagerDuty would refuse is cut, and the cut is written down', () => {
  it('a 10,000-character name: the summary is cut to 1024 characters, the details keep it whole', async () => {
    const sink = sinkFor();
    const event = longNameEvent();
    const message = sink.render([event]);
    golden('long-name', message);
    const payload = (message.requests[0]!.body as { payload: { summary: string; custom_details: typeof event.data } }).payload;
    expect(payload.summary).toHaveLength(PAGERDUTY_LIMITS.summary);
    expect(payload.summary.endsWith('…')).toBe(true);
    expect(payload.custom_details.user.name).toBe(LONG_NAME);
    expect(message.cuts).toEqual([expect.stringMatching(/^summary cut from \d+ to 1024 characters$/)]);
    await sink.send(message, signal());
    expect(fake.openIncidents()).toHaveLength(1);
  });

  it('a body over 512,000 bytes loses its custom_details, not its page', async () => {
    const sink = sinkFor();
    const huge = userEvent('evt-huge', riskUser(8), 'low', 'high');
    const event = { ...huge, data: { ...huge.data, risk_events: [{ ...huge.data.risk_events![0]!, event_details: { blob: 'x'.repeat(600_000) } }] } };
    const message = sink.render([event]);
    expect(message.cuts).toEqual([expect.stringMatching(/^custom_details left out: the body was \d+ bytes, over 512000$/)]);
    await sink.send(message, signal());
    const received = fake.requests[0]!.body;
    expect(Buffer.byteLength(received)).toBeLessThanOrEqual(PAGERDUTY_LIMITS.bodyBytes);
    expect(fake.events[0]!.payload).toMatchObject({ summary: expect.stringContaining('User 8'), custom_details: { note: expect.stringContaining('512000') } });
  });

  it('a body just within the limit keeps its custom_details', async () => {
    const sink = sinkFor();
    const event = userEvent('evt-big', riskUser(9), 'low', 'high');
    const base = Buffer.byteLength(JSON.stringify({ routing_key: ROUTING_KEY, ...sink.render([event]).requests[0]!.body }));
    const big = { ...event, data: { ...event.data, risk_events: [{ ...event.data.risk_events![0]!, event_details: { blob: 'x'.repeat(PAGERDUTY_LIMITS.bodyBytes - base - 200) } }] } };
    const message = sink.render([big]);
    expect(message.cuts).toEqual([]);
    await sink.send(message, signal());
    expect(fake.events[0]!.payload!.custom_details).toEqual(big.data);
  });

  it('hostile strings stay text: one line of summary, the data verbatim, our routing key only', async () => {
    const sink = sinkFor({ behaviors: 'alert' });
    const events = hostileEvents();
    const messages = events.map((event) => sink.render([event]));
    golden('hostile', messages);
    for (const message of messages) await sink.send(message, signal());
    const [trigger, behavior] = fake.events;
    expect(trigger!.payload!.summary).not.toMatch(/[\r\n\u202e\u2066]/);
    expect(trigger!.payload!.custom_details).toEqual(events[0]!.data);
    expect((trigger!.payload!.custom_details as { user: { name: string } }).user.name).toBe(HOSTILE);
    expect(fake.events.map((e) => e.routingKey)).toEqual([ROUTING_KEY, ROUTING_KEY, ROUTING_KEY, ROUTING_KEY]);
    expect(behavior!.dedupKey).toBe(incidentKey(events[1]!));
    expect(fake.openIncidents()).toEqual([]);
  });
});

describe('answers: 202 accepted, 400 permanent with its errors, 429 and 5xx retried', () => {
  it("a 33-character routing key: a permanent 400 that shows PagerDuty's errors, never the key", async () => {
    const badKey = `${ROUTING_KEY}f`;
    const error = await failure(sinkFor({ routingKey: new Secret(badKey) }), raised);
    expect(error).toBeInstanceOf(DeliveryError);
    expect(error).toMatchObject({ retryable: false, status: 400 });
    expect(error.message).toContain("Length of 'routing_key' is incorrect");
    expect(error.message).toMatch(/^sink oncall: HTTP 400 \(permanent\)/);
    for (const text of [error.message, String(error)]) {
      expect(text).not.toContain(badKey);
      expect(text).not.toContain(ROUTING_KEY);
    }
  });

  it('429 with Retry-After is retried after the time it asks', async () => {
    fake.failNext(1, { status: 429, headers: { 'retry-after': '30' }, body: '{"status":"throttle event","message":"Requests for this service are arriving too quickly."}' });
    const error = await failure(sinkFor(), raised);
    expect(error).toMatchObject({ retryable: true, status: 429, retryAfterMs: 30_000 });
    await deliver(sinkFor(), raised);
    expect(fake.openIncidents()).toHaveLength(1);
  });

  it.each([500, 502, 503])('%i is retried', async (status) => {
    fake.intercept = (request) => (request.path.endsWith('/v2/enqueue') ? { status } : undefined);
    expect(await failure(sinkFor(), raised)).toMatchObject({ retryable: true, status });
    await deliver(sinkFor(), BEHAVIOR_EVENTS['behavior.added']);
    expect(fake.events).toEqual([]);
    expect(fake.changes).toHaveLength(1);
  });

  it('a connection reset is retried', async () => {
    fake.failNext(1, { reset: true });
    expect((await failure(sinkFor(), raised)).retryable).toBe(true);
  });

  it("shows every one of several errors, ahead of PagerDuty's generic message", async () => {
    const errors = ["'payload.summary' is too long (2000 > 1024)", "'payload.severity' is invalid", "'dedup_key' is invalid or longer than 255"];
    fake.failNext(1, { status: 400, headers: { 'content-type': 'application/json' }, body: JSON.stringify({ status: 'invalid event', message: 'Event object is invalid', errors }) });
    const error = await failure(sinkFor(), raised);
    expect(error.message).toMatch(/^sink oncall: HTTP 400 \(permanent\): "'payload\.summary' is too long \(2000 > 1024\); 'payload\.severity' is invalid;/);
  });

  it('a receiver that echoes the routing key back never puts it in an error', async () => {
    fake.intercept = (request) => ({ status: 400, body: `{"errors":["unknown routing key ${JSON.parse(request.body).routing_key}"]}` });
    const error = await failure(sinkFor(), raised);
    expect(error.message).toContain('unknown routing key ****');
    expect(error.message).not.toContain(ROUTING_KEY);
  });

  it('no error and no rendered message holds the routing key', async () => {
    const sink = sinkFor();
    const errors: DeliveryError[] = [];
    for (const answer of [{ status: 400, body: 'bad' }, { status: 429 }, { status: 500 }, { reset: true as const }]) {
      fake.failNext(1, answer);
      errors.push(await failure(sink, raised));
    }
    for (const error of errors) for (const text of [error.message, String(error)]) expect(text).not.toContain(ROUTING_KEY);
    const messages: PagerDutyMessage[] = [sink.renderTest(), ...[raised, lowered, ...Object.values(BEHAVIOR_EVENTS)].map((e) => sink.render([e]))];
    for (const message of messages) expect(JSON.stringify(message)).not.toContain(ROUTING_KEY);
  });
});

describe('url: the EU service, or any base, is where the events go', () => {
  it('posts to the configured url, not the default', async () => {
    const eu = await FakePagerDuty.start({ basePath: '/eu' });
    try {
      await deliver(sinkFor({ url: eu.url }), raised);
      expect(eu.requests.map((r) => r.path)).toEqual(['/eu/v2/enqueue']);
      expect(eu.openIncidents()).toHaveLength(1);
      expect(fake.requests).toEqual([]);
    } finally {
      await eu.close();
    }
  });
});

describe('test-sinks: a change event proves the key and pages nobody', () => {
  it('is accepted as a change event and opens no incident', async () => {
    const sink = sinkFor();
    await sink.send(sink.renderTest(), signal());
    expect(fake.changes).toHaveLength(1);
    expect(fake.changes[0]).toMatchObject({ routingKey: ROUTING_KEY, payload: { summary: 'riskwatch test notification for sink oncall: this sink works' } });
    expect(fake.events).toEqual([]);
  });
});
