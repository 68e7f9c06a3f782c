import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { SlackSinkConfig } from '../../src/config/config.ts';
import { Secret } from '../../src/config/secret.ts';
import type { RiskEvent } from '../../src/detect/events.ts';
import { DeliveryError } from '../../src/notify/sink.ts';
import { SlackSink } from '../../src/notify/sinks/slack.ts';
import { renderSlack } from '../../src/notify/sinks/slack-render.ts';
import { FakeClock } from '../support/fake-clock.ts';
import { type Answer, Receiver } from '../support/receiver.ts';

const PATH = '/services/T/B/X';

let receiver: Receiver;
let clock: FakeClock;
/** Clock time at which each request reached the receiver, and how many sleeps had happened by then. */
let arrivals: { at: number; sleeps: number }[];

beforeEach(async () => {
  receiver = await Receiver.start();
  clock = new FakeClock();
  arrivals = [];
});
afterEach(async () => {
  await receiver.close();
});

/** Scripts the receiver, recording when (on the fake clock) each request arrived. */
function answer(script: (index: number) => Answer): void {
  receiver.answer = (_request, index) => {
    arrivals.push({ at: clock.now(), sleeps: clock.sleeps.length });
    return script(index);
  };
}

function sinkFor(path = PATH, overrides: Partial<SlackSinkConfig> = {}): SlackSink {
  return new SlackSink(
    {
      type: 'slack',
      name: 'secops-slack',
      url: new Secret(receiver.url(path)),
      mention: undefined,
      minLevel: 'low',
      events: undefined,
      accounts: undefined,
      ...overrides,
    },
    { clock },
  );
}

const account = { id: '023e105f4ecef8ad9ca31a8372d0c353', name: 'production' };
function raised(n: number): RiskEvent {
  return {
    id: `evt-${n}`,
    type: 'user.risk_level_raised',
    timestamp: '2026-11-22T18:00:05.123Z',
    data: {
      account,
      user: { user_id: `u${n}`, email: `u${n}@example.com`, name: `User ${n}`, event_count: 3, last_event: '2026-11-22T17:59:00Z' },
      previous_level: 'low',
      current_level: 'high',
    },
  };
}

const timeout = () => AbortSignal.timeout(5000);
const failure = async (promise: Promise<unknown>): Promise<DeliveryError> => {
  const error = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(DeliveryError);
  return error as DeliveryError;
};
/** The text of the message a request carried, to tell messages apart. */
const textOf = (index: number) => (JSON.parse(receiver.requests[index]!.body) as { text: string }).text;

describe('message: one JSON POST with the rendered text and blocks', () => {
  it('posts exactly what render produced to the webhook path, and resolves on 200 "ok"', async () => {
    const sink = sinkFor(PATH, { mention: '<!here>' });
    const message = sink.render([raised(1), raised(2)]);
    expect(message).toEqual(renderSlack([raised(1), raised(2)], '<!here>'));
    await expect(sink.send(message, timeout())).resolves.toBeUndefined();
    expect(receiver.requests).toHaveLength(1);
    const [request] = receiver.requests;
    expect(request!.method).toBe('POST');
    expect(request!.path).toBe(PATH);
    expect(request!.headers['content-type']).toMatch(/^application\/json\b/);
    expect(JSON.parse(request!.body)).toEqual({ text: message.text, blocks: message.blocks });
  });

  it('the first send does not wait', async () => {
    const sink = sinkFor();
    await sink.send(sink.render([raised(1)]), timeout());
    expect(clock.sleeps).toEqual([]);
    expect(receiver.requests).toHaveLength(1);
  });

  it('renders a test message through the same send path', async () => {
    const sink = sinkFor();
    await sink.send(sink.renderTest(), timeout());
    expect(textOf(0)).toMatch(/test/i);
    expect(textOf(0)).toContain('secops-slack');
  });
});

describe('pacing: about one message a second per webhook', () => {
  it('three sends at once post in order, each at least 1000 ms after the last', async () => {
    answer(() => ({ status: 200, body: 'ok' }));
    const sink = sinkFor();
    const messages = [1, 2, 3].map((n) => sink.render([raised(n)]));
    await Promise.all(messages.map((m) => sink.send(m, timeout())));
    expect(receiver.requests.map((_, i) => textOf(i))).toEqual(messages.map((m) => m.text));
    expect(arrivals).toHaveLength(3);
    expect(arrivals[1]!.at - arrivals[0]!.at).toBeGreaterThanOrEqual(1000);
    expect(arrivals[2]!.at - arrivals[1]!.at).toBeGreaterThanOrEqual(1000);
    // ...and not much more: the pace is one a second, not a stall.
    expect(arrivals[2]!.at - arrivals[0]!.at).toBeLessThan(5000);
  });

  it('a send a long while after the last one does not wait', async () => {
    const sink = sinkFor();
    await sink.send(sink.render([raised(1)]), timeout());
    clock.time += 60_000;
    await sink.send(sink.render([raised(2)]), timeout());
    expect(clock.sleeps).toEqual([]);
  });

  it('a wall clock stepped back an hour (NTP, a VM resume) holds the next send one second, not an hour', async () => {
    const sink = sinkFor();
    await sink.send(sink.render([raised(1)]), timeout());
    clock.stepWall(-3_600_000);
    await sink.send(sink.render([raised(2)]), timeout());
    expect(clock.sleeps.reduce((a, b) => a + b, 0)).toBeLessThanOrEqual(1000);
    expect(receiver.requests).toHaveLength(2);
  });
});

describe('429: Retry-After is honoured for every message of this webhook', () => {
  it('rejects retryable with retryAfterMs, and the next send waits ~30 s before posting', async () => {
    answer((index) => (index === 0 ? { status: 429, headers: { 'retry-after': '30' }, body: 'rate_limited' } : { status: 200, body: 'ok' }));
    const sink = sinkFor();
    const error = await failure(sink.send(sink.render([raised(1)]), timeout()));
    expect(error.retryable).toBe(true);
    expect(error.retryAfterMs).toBe(30_000);
    expect(error.status).toBe(429);
    expect(clock.sleeps).toEqual([]);

    await sink.send(sink.render([raised(2)]), timeout());
    expect(receiver.requests).toHaveLength(2);
    const waited = clock.sleeps.reduce((a, b) => a + b, 0);
    expect(waited).toBeGreaterThanOrEqual(29_000);
    expect(waited).toBeLessThanOrEqual(31_000);
    // The wait happened before the second request went out, not after it.
    expect(arrivals[1]!.sleeps).toBe(clock.sleeps.length);
    expect(arrivals[1]!.at - arrivals[0]!.at).toBeGreaterThanOrEqual(29_000);
  });

  it('messages queued behind the 429 wait too, and keep their order', async () => {
    answer((index) => (index === 0 ? { status: 429, headers: { 'retry-after': '30' } } : { status: 200, body: 'ok' }));
    const sink = sinkFor();
    const messages = [1, 2, 3].map((n) => sink.render([raised(n)]));
    const results = await Promise.allSettled(messages.map((m) => sink.send(m, timeout())));
    expect(results.map((r) => r.status)).toEqual(['rejected', 'fulfilled', 'fulfilled']);
    expect(receiver.requests.map((_, i) => textOf(i))).toEqual(messages.map((m) => m.text));
    expect(arrivals[1]!.at - arrivals[0]!.at).toBeGreaterThanOrEqual(29_000);
    expect(arrivals[2]!.at - arrivals[1]!.at).toBeGreaterThanOrEqual(1000);
  });

  it("one sink's 429 does not delay another sink with a different webhook", async () => {
    answer((index) => (index === 0 ? { status: 429, headers: { 'retry-after': '30' } } : { status: 200, body: 'ok' }));
    const limited = sinkFor('/services/T/B/X');
    const healthy = sinkFor('/services/T/C/Y');
    await failure(limited.send(limited.render([raised(1)]), timeout()));
    await healthy.send(healthy.render([raised(2)]), timeout());
    expect(receiver.requests.map((r) => r.path)).toEqual(['/services/T/B/X', '/services/T/C/Y']);
    expect(clock.sleeps).toEqual([]);
    expect(arrivals[1]!.at).toBe(arrivals[0]!.at);
    // The limited sink is still held back: the hold was real, just not shared.
    await limited.send(limited.render([raised(3)]), timeout());
    expect(clock.sleeps.reduce((a, b) => a + b, 0)).toBeGreaterThanOrEqual(29_000);
  });
});

describe('errors: what is retried and what is permanent, never naming the URL', () => {
  const expectNoUrl = (error: DeliveryError) => {
    expect(error.message).not.toContain(receiver.url(PATH));
    expect(error.message).not.toContain(PATH);
    expect(error.message).not.toMatch(/services|T\/B\/X|127\.0\.0\.1/);
  };

  it.each([
    [404, 'no_service'],
    [410, 'channel_is_archived'],
    [400, 'invalid_payload'],
  ])('HTTP %i %s is permanent', async (status, body) => {
    answer(() => ({ status, body }));
    const sink = sinkFor();
    const error = await failure(sink.send(sink.render([raised(1)]), timeout()));
    expect(error.retryable).toBe(false);
    expect(error.status).toBe(status);
    expect(error.message).toContain(String(status));
    expect(error.message).toContain(body);
    expect(error.message).toContain('secops-slack');
    expectNoUrl(error);
    expect(receiver.requests).toHaveLength(1); // the library does not retry on its own
  });

  it('HTTP 500 is retryable', async () => {
    answer(() => ({ status: 500, body: 'internal_error' }));
    const sink = sinkFor();
    const error = await failure(sink.send(sink.render([raised(1)]), timeout()));
    expect(error.retryable).toBe(true);
    expect(error.status).toBe(500);
    expect(error.message).toContain('500');
    expectNoUrl(error);
    expect(receiver.requests).toHaveLength(1);
  });

  it('a connection reset is retryable', async () => {
    answer(() => ({ reset: true }));
    const sink = sinkFor();
    const error = await failure(sink.send(sink.render([raised(1)]), timeout()));
    expect(error.retryable).toBe(true);
    expect(error.status).toBeUndefined();
    expectNoUrl(error);
  });

  it('a receiver that never answers: rejected retryable, "timed out", when the signal fires', async () => {
    answer(() => ({ hang: true }));
    const sink = sinkFor();
    const started = Date.now();
    const error = await failure(sink.send(sink.render([raised(1)]), AbortSignal.timeout(200)));
    expect(Date.now() - started).toBeLessThan(5000);
    expect(error.retryable).toBe(true);
    expect(error.message).toMatch(/timed out/);
    expectNoUrl(error);
  });

  it('a failure does not block the next message', async () => {
    answer((index) => (index === 0 ? { status: 500 } : { status: 200, body: 'ok' }));
    const sink = sinkFor();
    await failure(sink.send(sink.render([raised(1)]), timeout()));
    await expect(sink.send(sink.render([raised(2)]), timeout())).resolves.toBeUndefined();
    expect(receiver.requests).toHaveLength(2);
  });
});
