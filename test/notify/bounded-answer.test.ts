import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { systemClock } from '../../src/clock.ts';
import { Secret } from '../../src/config/secret.ts';
import { HttpPool } from '../../src/http.ts';
import type { RiskEvent } from '../../src/detect/events.ts';
import { DeliveryError, type Sink } from '../../src/notify/sink.ts';
import { SlackSink } from '../../src/notify/sinks/slack.ts';
import { WebhookSink } from '../../src/notify/sinks/webhook.ts';
import { Receiver } from '../support/receiver.ts';

/**
 * SPEC §6, Bounded: a receiver's answer is read up to a few KB, never whole.
 * Each sink that speaks HTTP is pointed at a loopback receiver that answers
 * and then streams a body without end, as fast as the socket drains; the old
 * behaviour read hundreds of MB a second of it until the send timed out.
 */

const CHUNK = Buffer.alloc(64 * 1024, 'x');
/** Well under the worker's 30 s send timeout, and far above what the bounded read takes even on a slow shared machine. */
const PROMPTLY_MS = 10_000;
/** Far above what a bounded read allocates, far below what reading the endless body for seconds does. */
const RSS_GROWTH_LIMIT = 100 * 1024 * 1024;

/** A loopback receiver that answers `status`, sends `prefix`, then 64 KiB chunks forever, until the client closes the connection. */
class EndlessReceiver {
  /** Bytes of body handed to the socket so far, over all responses. */
  streamed = 0;
  /** Requests whose answer began streaming. */
  requests = 0;
  /** Resolves when the client has closed the connection of the first response (the server response's 'close'). */
  readonly closed: Promise<void>;
  readonly #server: Server;

  private constructor(server: Server, closed: Promise<void>) {
    this.#server = server;
    this.closed = closed;
  }

  static async start(status: number, prefix: string): Promise<EndlessReceiver> {
    let firstClosed!: () => void;
    const closed = new Promise<void>((resolve) => {
      firstClosed = resolve;
    });
    let receiver!: EndlessReceiver;
    const server = createServer((req, res) => {
      req.resume();
      req.on('end', () => {
        receiver.requests++;
        res.on('close', firstClosed);
        res.writeHead(status, { 'content-type': 'text/plain' });
        res.write(prefix);
        const pump = () => {
          while (!res.destroyed) {
            receiver.streamed += CHUNK.length;
            if (!res.write(CHUNK)) {
              res.once('drain', pump);
              return;
            }
          }
        };
        pump();
      });
    });
    receiver = new EndlessReceiver(server, closed);
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    return receiver;
  }

  url(path: string): string {
    return `http://127.0.0.1:${(this.#server.address() as AddressInfo).port}${path}`;
  }

  async close(): Promise<void> {
    this.#server.closeAllConnections();
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }
}

const account = { id: '023e105f4ecef8ad9ca31a8372d0c353', name: 'production' };
const EVENT: RiskEvent = {
  id: 'evt-bounded',
  type: 'user.risk_level_raised',
  timestamp: '2026-11-22T18:00:05.123Z',
  data: {
    account,
    user: { user_id: 'u1', email: 'u1@example.com', name: 'User 1', event_count: 3, last_event: '2026-11-22T17:59:00Z' },
    previous_level: 'low',
    current_level: 'high',
  },
};

type SinkFactory = (url: string, http: HttpPool) => Sink;
const SINKS: [string, SinkFactory][] = [
  [
    'webhook',
    (url, http) =>
      new WebhookSink(
        { type: 'webhook', name: 'incidents', url: new Secret(url), secret: undefined, headers: {}, minLevel: 'low', events: undefined, accounts: undefined },
        { clock: systemClock, http },
      ),
  ],
  [
    'slack',
    (url, http) =>
      new SlackSink({ type: 'slack', name: 'secops-slack', url: new Secret(url), mention: undefined, minLevel: 'low', events: undefined, accounts: undefined }, { clock: systemClock, http }),
  ],
];

function within<T>(ms: number, promise: Promise<T>, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: not within ${ms} ms`)), ms);
  });
  return Promise.race([promise, late]).finally(() => clearTimeout(timer));
}

/**
 * Sends one event as the worker would (a 30 s send timeout) and waits at most
 * PROMPTLY_MS for it to settle. What the process grew by is taken before a
 * send still running is stopped, so that a sink reading the endless body shows it.
 */
async function attempt(sink: Sink): Promise<{ outcome: unknown; ms: number; rssGrowth: number }> {
  const stop = new AbortController();
  const signal = AbortSignal.any([stop.signal, AbortSignal.timeout(30_000)]);
  const rss = process.memoryUsage().rss;
  const started = performance.now();
  const settled = sink.send(sink.render([EVENT]), signal).then(
    () => 'delivered',
    (error: unknown) => error,
  );
  const outcome = await within(PROMPTLY_MS, settled, 'send()').catch((error: unknown) => error);
  const ms = performance.now() - started;
  const rssGrowth = process.memoryUsage().rss - rss;
  stop.abort();
  await settled;
  return { outcome, ms, rssGrowth };
}

let http: HttpPool;
let endless: EndlessReceiver | undefined;
let plain: Receiver | undefined;
beforeEach(() => {
  http = new HttpPool();
});
afterEach(async () => {
  await endless?.close();
  await plain?.close();
  endless = undefined;
  plain = undefined;
  http.close();
});

describe.each(SINKS)('%s sink: an answer without end is read a few KB at most', (_name, sinkFor) => {
  it('200 then a body without end: delivered at once, the connection closed, memory bounded', async () => {
    endless = await EndlessReceiver.start(200, 'ok');
    const sink = sinkFor(endless.url('/services/T/B/X'), http);
    const { outcome, ms, rssGrowth } = await attempt(sink);
    expect(endless.streamed).toBeGreaterThan(0); // the receiver did start its endless body
    expect(rssGrowth).toBeLessThan(RSS_GROWTH_LIMIT);
    expect(outcome).toBe('delivered');
    expect(ms).toBeLessThan(PROMPTLY_MS);
    await within(PROMPTLY_MS, endless.closed, 'the client closing the connection');
  });

  it('500 then a body without end: a bounded error message, the connection closed, memory bounded', async () => {
    endless = await EndlessReceiver.start(500, 'upstream exploded: ');
    const sink = sinkFor(endless.url('/services/T/B/X'), http);
    const { outcome, rssGrowth } = await attempt(sink);
    expect(rssGrowth).toBeLessThan(RSS_GROWTH_LIMIT);
    expect(outcome).toBeInstanceOf(DeliveryError);
    const failure = outcome as DeliveryError;
    expect(failure.status).toBe(500);
    expect(failure.retryable).toBe(true);
    // The message holds the answer's start, cut to the usual excerpt: 120 characters and an ellipsis.
    const start = `upstream exploded: ${'x'.repeat(200)}`.slice(0, 120);
    expect(failure.message).toBe(`sink ${sink.name}: HTTP 500: "${start}…"`);
    await within(PROMPTLY_MS, endless.closed, 'the client closing the connection');
  });

  it('other receivers on the same pool are unaffected, and the endless one is reached again', async () => {
    endless = await EndlessReceiver.start(200, 'ok');
    plain = await Receiver.start();
    const toEndless = sinkFor(endless.url('/services/T/B/X'), http);
    const toPlain = sinkFor(plain.url('/services/T/C/Y'), http);
    const outcomes = await Promise.all([attempt(toEndless), attempt(toPlain)]);
    expect(outcomes.map((o) => o.outcome)).toEqual(['delivered', 'delivered']);
    expect(plain.accepted).toHaveLength(1);
    // A second message to the endless receiver, through the same sink and pool, is delivered too.
    expect((await attempt(toEndless)).outcome).toBe('delivered');
    expect(endless.requests).toBe(2);
  });
});
