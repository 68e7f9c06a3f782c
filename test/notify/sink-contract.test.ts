import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { systemClock } from '../../src/clock.ts';
import { Secret } from '../../src/config/secret.ts';
import type { RiskEvent } from '../../src/detect/events.ts';
import { DeliveryError, type Sink } from '../../src/notify/sink.ts';
import { OpsgenieSink } from '../../src/notify/sinks/opsgenie.ts';
import { PagerDutySink } from '../../src/notify/sinks/pagerduty.ts';
import { SlackSink } from '../../src/notify/sinks/slack.ts';
import { TeamsSink } from '../../src/notify/sinks/teams.ts';
import { WebhookSink } from '../../src/notify/sinks/webhook.ts';
import { type Answer, Receiver } from '../support/receiver.ts';
import { userEvent } from '../support/sink-fixtures.ts';

/**
 * What every HTTP sink does with a receiver's answer (DESIGN, "a shared sink
 * contract"): 2xx accepted; 408, 429 and 5xx retried, Retry-After kept; any
 * other 4xx permanent; a reset or a receiver that never answers retried; and
 * no credential in any error, even from a receiver that echoes the request.
 * Each vendor's own tests add its payloads and limits.
 */

const ROUTING_KEY = 'contractroutingkeysecret00000042';
const GENIE_KEY = 'genie-contract-key-3c1f';
const HEADER_SECRET = 'Bearer header-contract-secret-55';
const ROUTING = { minLevel: 'low' as const, events: undefined, accounts: undefined };

let receiver: Receiver;
beforeAll(async () => {
  receiver = await Receiver.start();
});
afterAll(async () => {
  await receiver.close();
});

interface Contract {
  readonly name: string;
  readonly sink: () => Sink;
  /** Every credential the sink holds: none may appear in an error. */
  readonly secrets: readonly string[];
}

const slackPath = '/services/T0CONTRACT/B0CONTRACT/slackcontractsecret';
const hookPath = '/in/hookcontractsecret?token=hooktokensecret';
const teamsPath = '/workflows/abc/triggers/manual/paths/invoke?api-version=1&sig=teamscontractsig';

const CONTRACTS: readonly Contract[] = [
  {
    name: 'webhook',
    sink: () =>
      new WebhookSink(
        { type: 'webhook', name: 'hook', ...ROUTING, url: new Secret(receiver.url(hookPath)), secret: undefined, headers: { Authorization: new Secret(HEADER_SECRET) } },
        { clock: systemClock },
      ),
    secrets: ['hookcontractsecret', 'hooktokensecret', 'header-contract-secret-55'],
  },
  {
    name: 'slack',
    sink: () => new SlackSink({ type: 'slack', name: 'slack', ...ROUTING, url: new Secret(receiver.url(slackPath)), mention: undefined }, { clock: systemClock }),
    secrets: ['slackcontractsecret'],
  },
  {
    name: 'teams',
    sink: () => new TeamsSink({ type: 'teams', name: 'teams', ...ROUTING, url: new Secret(receiver.url(teamsPath)) }, { clock: systemClock }),
    secrets: ['teamscontractsig'],
  },
  {
    name: 'pagerduty',
    sink: () =>
      new PagerDutySink(
        {
          type: 'pagerduty',
          name: 'pd',
          ...ROUTING,
          routingKey: new Secret(ROUTING_KEY),
          url: receiver.url(''),
          severity: { high: 'critical', medium: 'warning', low: 'info' },
          behaviors: 'change',
          credentialId: 'cred-pd',
        },
        { clock: systemClock },
      ),
    secrets: [ROUTING_KEY],
  },
  {
    name: 'opsgenie',
    sink: () =>
      new OpsgenieSink(
        { type: 'opsgenie', name: 'genie', ...ROUTING, apiKey: new Secret(GENIE_KEY), url: receiver.url(''), priority: { high: 'P1', medium: 'P3', low: 'P5' }, tags: [], credentialId: 'cred-genie' },
        { clock: systemClock },
      ),
    secrets: [GENIE_KEY],
  },
];

const event: RiskEvent = userEvent(1, 'high', { previous: 'low' });

/** The DeliveryError a send fails with; fails the test if it succeeds. */
async function failure(contract: Contract, signal = AbortSignal.timeout(10_000)): Promise<DeliveryError> {
  const sink = contract.sink();
  const error = await sink.send(sink.render([event]), signal).then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error, `${contract.name} should have failed`).toBeInstanceOf(DeliveryError);
  for (const text of [(error as Error).message, String(error), JSON.stringify(error)]) {
    for (const secret of contract.secrets) expect(text, `${contract.name} leaked a credential`).not.toContain(secret);
  }
  return error as DeliveryError;
}

/** An answer that echoes the whole request back, as a proxy's error page may. */
const echo =
  (status: number): ((request: { path: string; headers: Record<string, unknown>; body: string }) => Answer) =>
  (request) => ({ status, body: `Cannot POST ${request.path} ${JSON.stringify(request.headers)} ${request.body}` });

describe.each(CONTRACTS)('$name: the receiver’s answer decides, the same way for every sink', (contract) => {
  beforeEach(() => {
    receiver.answer = () => ({ status: 202, body: '' });
  });

  it.each([200, 201, 202, 204])('%i is accepted', async (status) => {
    receiver.answer = () => ({ status, body: status === 204 ? '' : '{"ok":true}' });
    const sink = contract.sink();
    await expect(sink.send(sink.render([event]), AbortSignal.timeout(10_000))).resolves.toBeUndefined();
  });

  it.each([408, 429, 500, 502, 503, 504])('%i is retried', async (status) => {
    receiver.answer = () => ({ status, body: 'busy' });
    expect(await failure(contract)).toMatchObject({ retryable: true, status });
  });

  it('429 keeps Retry-After', async () => {
    receiver.answer = () => ({ status: 429, headers: { 'retry-after': '7' }, body: 'slow down' });
    expect(await failure(contract)).toMatchObject({ retryable: true, status: 429, retryAfterMs: 7000 });
  });

  it.each([400, 401, 403, 404, 410, 413, 422])('%i is permanent', async (status) => {
    receiver.answer = () => ({ status, body: 'no' });
    expect(await failure(contract)).toMatchObject({ retryable: false, status });
  });

  it('a connection reset is retried', async () => {
    receiver.answer = () => ({ reset: true });
    expect((await failure(contract)).retryable).toBe(true);
  });

  it('a receiver that never answers is retried once the send times out', async () => {
    receiver.answer = () => ({ hang: true });
    const error = await failure(contract, AbortSignal.timeout(300));
    expect(error.retryable).toBe(true);
    expect(error.message).toMatch(/timed out/);
  });

  it.each([404, 500])('a %i page that echoes the request never carries a credential into the error', async (status) => {
    receiver.answer = echo(status);
    expect((await failure(contract)).message).toMatch(/\*\*\*\*|Cannot POST/);
  });
});
