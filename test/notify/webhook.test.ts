import { Webhook } from 'standardwebhooks';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { systemClock } from '../../src/clock.ts';
import type { WebhookSinkConfig } from '../../src/config/config.ts';
import { Secret } from '../../src/config/secret.ts';
import type { RiskEvent } from '../../src/detect/events.ts';
import { DeliveryError } from '../../src/notify/sink.ts';
import { WebhookSink } from '../../src/notify/sinks/webhook.ts';
import { Receiver } from '../support/receiver.ts';

const SECRET = 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw';

let receiver: Receiver;
beforeEach(async () => {
  receiver = await Receiver.start();
});
afterEach(async () => {
  await receiver.close();
});

function sinkFor(overrides: Partial<WebhookSinkConfig> = {}): WebhookSink {
  return new WebhookSink(
    {
      type: 'webhook',
      name: 'incidents',
      url: new Secret(receiver.url('/riskwatch?token=pathsecret')),
      secret: new Secret(SECRET),
      headers: { 'X-Team': new Secret('secops') },
      minLevel: 'low',
      events: undefined,
      accounts: undefined,
      ...overrides,
    },
    { clock: systemClock },
  );
}

const account = { id: '023e105f4ecef8ad9ca31a8372d0c353', name: 'production' };
const user = { user_id: '182bd5e5-6e1a-4fe4-a799-aa6d9a6ab26e', email: 'a@example.com', name: 'A', event_count: 3, last_event: '2026-11-22T17:59:00Z' };
const behavior = { id: 'imp_travel', name: 'Impossible travel', description: 'Logins from far apart', enabled: false, risk_level: 'high' as const };

const EVENTS: Record<string, RiskEvent> = {
  raised: {
    id: 'evt-raised',
    type: 'user.risk_level_raised',
    timestamp: '2026-11-22T18:00:05.123Z',
    data: {
      account,
      user,
      previous_level: 'low',
      current_level: 'high',
      risk_events: [{ id: 're1', name: 'Impossible travel', risk_level: 'high', timestamp: '2026-11-22T17:58:00Z' }],
    },
  },
  newUser: { id: 'evt-new', type: 'user.risk_level_raised', timestamp: '2026-11-22T18:00:05.123Z', data: { account, user, previous_level: null, current_level: 'medium' } },
  left: { id: 'evt-left', type: 'user.risk_level_lowered', timestamp: '2026-11-22T18:00:05.123Z', data: { account, user, previous_level: 'high', current_level: null } },
  disabled: {
    id: 'evt-disabled',
    type: 'behavior.disabled',
    timestamp: '2026-11-22T18:00:05.123Z',
    data: { account, behavior, previous: { enabled: true, risk_level: 'high' } },
  },
  added: { id: 'evt-added', type: 'behavior.added', timestamp: '2026-11-22T18:00:05.123Z', data: { account, behavior, previous: null } },
};

const send = (sink: WebhookSink, event: RiskEvent) => sink.send(sink.render([event]), AbortSignal.timeout(5000));

describe('payload: exactly SPEC §5, one POST per event', () => {
  it.each(Object.entries(EVENTS))('%s: the body is {type, timestamp, data} and nothing else', async (_name, event) => {
    await send(sinkFor(), event);
    const [request] = receiver.requests;
    expect(request?.method).toBe('POST');
    expect(JSON.parse(request!.body)).toEqual({ type: event.type, timestamp: event.timestamp, data: event.data });
  });

  it('sends the SPEC headers, the custom ones, and the event id as webhook-id', async () => {
    const before = Math.floor(Date.now() / 1000);
    await send(sinkFor(), EVENTS.raised!);
    const headers = receiver.requests[0]!.headers;
    expect(headers['content-type']).toBe('application/json');
    expect(headers['user-agent']).toMatch(/^riskwatch\/\d+\.\d+\.\d+$/);
    expect(headers['webhook-id']).toBe('evt-raised');
    expect(Number(headers['webhook-timestamp'])).toBeGreaterThanOrEqual(before);
    expect(headers['x-team']).toBe('secops');
    expect(receiver.requests[0]!.path).toBe('/riskwatch?token=pathsecret');
  });

  it('carries no signature without a secret', async () => {
    await send(sinkFor({ secret: undefined }), EVENTS.raised!);
    expect(receiver.requests[0]!.headers['webhook-signature']).toBeUndefined();
  });
});

describe('a delivery that holds several events (planned for a grouping sink before a reload)', () => {
  it('posts one request per event, in order, each under its own webhook-id', async () => {
    const sink = sinkFor();
    await sink.send(sink.render([EVENTS.raised!, EVENTS.disabled!]), AbortSignal.timeout(5000));
    expect(receiver.requests.map((r) => r.headers['webhook-id'])).toEqual(['evt-raised', 'evt-disabled']);
  });
});

describe('signature: verifiable by the Standard Webhooks reference library', () => {
  const verify = (secret: string, body: string, headers: Record<string, unknown>) =>
    new Webhook(secret).verify(body, {
      'webhook-id': String(headers['webhook-id']),
      'webhook-timestamp': String(headers['webhook-timestamp']),
      'webhook-signature': String(headers['webhook-signature']),
    });

  it('verifies with the right secret', async () => {
    await send(sinkFor(), EVENTS.disabled!);
    const { body, headers } = receiver.requests[0]!;
    expect(String(headers['webhook-signature'])).toMatch(/^v1,[A-Za-z0-9+/]+=*$/);
    expect(verify(SECRET, body, headers)).toEqual(JSON.parse(body));
  });

  it('fails with a wrong secret', async () => {
    await send(sinkFor(), EVENTS.disabled!);
    const { body, headers } = receiver.requests[0]!;
    expect(() => verify('whsec_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA', body, headers)).toThrow();
  });

  it('fails with a changed body', async () => {
    await send(sinkFor(), EVENTS.disabled!);
    const { body, headers } = receiver.requests[0]!;
    expect(() => verify(SECRET, body.replace('"enabled":false', '"enabled":true'), headers)).toThrow();
  });

  it('keeps webhook-id across attempts while signing each attempt anew', async () => {
    const sink = sinkFor();
    const message = sink.render([EVENTS.raised!]);
    await sink.send(message, AbortSignal.timeout(5000));
    await sink.send(sink.render([EVENTS.raised!]), AbortSignal.timeout(5000));
    const [a, b] = receiver.requests;
    expect(a!.headers['webhook-id']).toBe(b!.headers['webhook-id']);
    expect(a!.body).toBe(b!.body);
    expect(verify(SECRET, b!.body, b!.headers)).toBeTruthy();
  });
});

describe('answers: what is retried and what is permanent', () => {
  const failure = async (answer: Receiver['answer']) => {
    receiver.answer = answer;
    return (await send(sinkFor(), EVENTS.raised!).catch((e: unknown) => e)) as DeliveryError;
  };

  it.each([408, 429, 500, 502, 503])('HTTP %i is retryable', async (status) => {
    const error = await failure(() => ({ status }));
    expect(error).toBeInstanceOf(DeliveryError);
    expect(error.retryable).toBe(true);
  });

  it.each([400, 401, 403, 404, 410, 422])('HTTP %i is permanent', async (status) => {
    const error = await failure(() => ({ status, body: 'nope' }));
    expect(error.retryable).toBe(false);
    expect(error.message).toBe(`sink incidents: HTTP ${status} (permanent): "nope"`);
  });

  it('carries Retry-After from a 429', async () => {
    const error = await failure(() => ({ status: 429, headers: { 'retry-after': '17' } }));
    expect(error.retryAfterMs).toBe(17_000);
  });

  it('retries a connection reset and a receiver that never answers, and never names the URL', async () => {
    const reset = await failure(() => ({ reset: true }));
    expect(reset.retryable).toBe(true);
    receiver.answer = () => ({ hang: true });
    const sink = sinkFor();
    const hung = (await sink.send(sink.render([EVENTS.raised!]), AbortSignal.timeout(200)).catch((e: unknown) => e)) as DeliveryError;
    expect(hung.retryable).toBe(true);
    expect(hung.message).toMatch(/timed out/);
    for (const error of [reset, hung]) expect(error.message).not.toMatch(/pathsecret|127\.0\.0\.1/);
  });
});
