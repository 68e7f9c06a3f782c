import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, expect, it } from 'vitest';
import { HttpPool } from '../src/http.ts';

/** HttpPool (src/http.ts): what its callers rely on beyond what Node's client does by itself. */

let server: Server | undefined;
let pool: HttpPool | undefined;
const hanging: ServerResponse[] = [];
afterEach(async () => {
  pool?.close();
  for (const res of hanging.splice(0)) res.destroy();
  server?.closeAllConnections();
  await new Promise((resolve) => (server ? server.close(resolve) : resolve(undefined)));
  server = undefined;
  pool = undefined;
});

async function serve(handler: (req: IncomingMessage, res: ServerResponse) => void): Promise<string> {
  server = createServer(handler);
  await new Promise<void>((resolve) => server!.listen(0, '127.0.0.1', resolve));
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

it('a request waiting for one of the 16 connections is given up at once when its signal aborts', async () => {
  const url = await serve((_req, res) => hanging.push(res)); // never answers
  pool = new HttpPool();
  const others = new AbortController();
  const busy = Array.from({ length: 16 }, () => pool!.request(url, { method: 'GET', signal: others.signal }).catch(() => undefined));
  const waiting = new AbortController();
  const queued = pool.request(url, { method: 'GET', signal: waiting.signal });
  waiting.abort(new Error('the caller gave up'));
  // Node alone would report it only once one of the 16 is free, which here is never.
  await expect(queued).rejects.toThrow('the caller gave up');
  others.abort();
  await Promise.all(busy);
});

it('a header sent twice keeps both values, in order (Node would join them into one string)', async () => {
  const url = await serve((_req, res) => {
    res.setHeader('x-ratelimit-remaining', ['5', '4']);
    res.end('{}');
  });
  pool = new HttpPool();
  const response = await pool.request(url, { method: 'GET', signal: AbortSignal.timeout(10_000) });
  response.body.resume();
  expect(response.headers['x-ratelimit-remaining']).toEqual(['5', '4']);
  expect(response.headers['content-length']).toEqual(['2']);
});
