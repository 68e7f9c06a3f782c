import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { Secret } from '../../src/config/secret.ts';
import { jsonBytes } from '../../src/notify/limits.ts';
import type { DeliveryError } from '../../src/notify/sink.ts';
import { TeamsSink } from '../../src/notify/sinks/teams.ts';
import { renderTeams, type TeamsMessage } from '../../src/notify/sinks/teams-render.ts';
import { FakeClock } from '../support/fake-clock.ts';
import { FakeTeams, TEAMS_MAX_MESSAGE_BYTES } from '../support/fakes/teams.ts';
import { deliveryFailure, hostileEvents, LONG, storm, userEvent } from '../support/sink-fixtures.ts';

let teams: FakeTeams;
let clock: FakeClock;

beforeEach(async () => {
  teams = await FakeTeams.start();
  clock = new FakeClock();
});
afterEach(async () => {
  await teams.close();
});

function sinkFor(url = teams.webhookUrl): TeamsSink {
  return new TeamsSink({ type: 'teams', name: 'secops-teams', url: new Secret(url), minLevel: 'low', events: undefined, accounts: undefined }, { clock });
}

const timeout = () => AbortSignal.timeout(5000);
/** The URL is a credential: neither it, its path nor its `sig` may show in an error. */
const expectNoUrl = (error: DeliveryError) => {
  for (const text of [error.message, String(error.cause ?? '')]) {
    expect(text).not.toContain(teams.sig);
    expect(text).not.toContain('workflows');
    expect(text).not.toContain('127.0.0.1');
  }
};

describe('delivery: one POST of the rendered card, accepted on any 2xx', () => {
  it('posts exactly what render produced, as JSON, to the webhook URL; 202 is accepted', async () => {
    const sink = sinkFor();
    const message = sink.render(storm(3));
    expect(message).toEqual(renderTeams(storm(3)));
    await expect(sink.send(message, timeout())).resolves.toBeUndefined();
    expect(teams.requests).toHaveLength(1);
    const [request] = teams.requests;
    expect(request!.method).toBe('POST');
    expect(request!.headers['content-type']).toMatch(/^application\/json\b/);
    expect(JSON.parse(request!.body)).toEqual(message.payload);
    expect(teams.delivered).toHaveLength(1);
    expect(teams.delivered[0]!.payload.summary).toBe(message.payload.summary);
    expect(teams.cards[0]!.version).toBe('1.4');
  });

  it.each([200, 202, 204])('HTTP %i is accepted', async (status) => {
    teams.failNext(1, { status, body: '' });
    const sink = sinkFor();
    await expect(sink.send(sink.render(storm(1)), timeout())).resolves.toBeUndefined();
  });

  it('the test card goes through the same path and names the sink', async () => {
    const sink = sinkFor();
    await sink.send(sink.renderTest(), timeout());
    expect(teams.delivered[0]!.payload.summary).toBe('riskwatch test notification for sink secops-teams: this sink works');
  });

  it('does not check the host of the URL (Workflows URLs have moved before)', async () => {
    const sink = sinkFor(teams.webhookUrl.replace('127.0.0.1', 'localhost'));
    await expect(sink.send(sink.render(storm(1)), timeout())).resolves.toBeUndefined();
  });
});

describe('storms and hostile names: one valid card within 20,000 bytes, accepted', () => {
  it('300 users raised in one delivery: one card with "…and N more", accepted by the flow', async () => {
    const sink = sinkFor();
    const message = sink.render(storm(300));
    await sink.send(message, timeout());
    expect(teams.delivered).toHaveLength(1);
    const { bytes, card } = teams.delivered[0]!;
    expect(bytes).toBeLessThanOrEqual(20_000);
    expect(bytes).toBe(jsonBytes(message.payload));
    expect(JSON.stringify(card)).toMatch(/…and \d+ more \(\d+ users raised/);
  });

  it('a 10,000-character name and hostile strings are accepted', async () => {
    const sink = sinkFor();
    await sink.send(sink.render([userEvent(1, 'high', { name: LONG }), ...hostileEvents()]), timeout());
    expect(teams.delivered).toHaveLength(1);
    expect(teams.delivered[0]!.bytes).toBeLessThanOrEqual(20_000);
  });
});

describe('the fake refuses what a flow refuses, and the refusal is permanent', () => {
  const oversized = (): TeamsMessage => {
    const message = renderTeams(storm(1));
    const padded = { ...message.payload, summary: 'x'.repeat(TEAMS_MAX_MESSAGE_BYTES) };
    return { payload: padded, cuts: [] };
  };

  it(`a body over ${TEAMS_MAX_MESSAGE_BYTES} bytes: 400 MessageSizeExceeded`, async () => {
    const error = await deliveryFailure(sinkFor().send(oversized(), timeout()));
    expect(error.retryable).toBe(false);
    expect(error.status).toBe(400);
    expect(error.message).toContain('MessageSizeExceeded');
    expect(teams.delivered).toEqual([]);
  });

  it('a message that is not Adaptive Cards (an old MessageCard): 400', async () => {
    const messageCard = { payload: { '@type': 'MessageCard', text: 'hello' }, cuts: [] } as unknown as TeamsMessage;
    const error = await deliveryFailure(sinkFor().send(messageCard, timeout()));
    expect(error.retryable).toBe(false);
    expect(error.status).toBe(400);
    expect(error.message).toContain('InvalidRequestContent');
  });

  it('a wrong sig: 401, permanent, and the sig is not in the error', async () => {
    const error = await deliveryFailure(sinkFor(teams.webhookUrl.replace(/sig=[^&]+/, 'sig=wrong')).send(renderTeams(storm(1)), timeout()));
    expect(error.retryable).toBe(false);
    expect(error.status).toBe(401);
    expectNoUrl(error);
  });
});

describe('errors: 429 and 5xx retried, other 4xx permanent, never naming the URL', () => {
  it('429 with Retry-After: retryable, with the wait it asked for', async () => {
    teams.failNext(1, { status: 429, headers: { 'retry-after': '30' }, body: 'Rate limit is exceeded. Try again in 30 seconds.' });
    const sink = sinkFor();
    const error = await deliveryFailure(sink.send(sink.render(storm(1)), timeout()));
    expect(error.retryable).toBe(true);
    expect(error.status).toBe(429);
    expect(error.retryAfterMs).toBe(30_000);
    expect(error.message).toContain('secops-teams');
    expectNoUrl(error);
    // The next attempt goes through.
    await sink.send(sink.render(storm(1)), timeout());
    expect(teams.delivered).toHaveLength(1);
  });

  it.each([
    [500, true],
    [502, true],
    [503, true],
    [504, true],
    [400, false],
    [403, false],
    [404, false],
    [413, false],
  ])('HTTP %i: retryable %s, the answer quoted', async (status, retryable) => {
    teams.failNext(1, { status, body: '{"error":{"code":"Refused"}}' });
    const sink = sinkFor();
    const error = await deliveryFailure(sink.send(sink.render(storm(1)), timeout()));
    expect(error.retryable).toBe(retryable);
    expect(error.status).toBe(status);
    expect(error.message).toContain('Refused');
    expectNoUrl(error);
  });

  it('a connection reset: retryable', async () => {
    teams.failNext(1, { reset: true });
    const sink = sinkFor();
    const error = await deliveryFailure(sink.send(sink.render(storm(1)), timeout()));
    expect(error.retryable).toBe(true);
    expect(error.status).toBeUndefined();
    expectNoUrl(error);
  });

  it('a flow that never answers: retryable "timed out" once the signal fires', async () => {
    teams.failNext(1, { hang: true });
    const sink = sinkFor();
    const started = Date.now();
    const error = await deliveryFailure(sink.send(sink.render(storm(1)), AbortSignal.timeout(200)));
    expect(Date.now() - started).toBeLessThan(5000);
    expect(error.retryable).toBe(true);
    expect(error.message).toMatch(/timed out/);
    expectNoUrl(error);
  });
});
