import net from 'node:net';
import { once } from 'node:events';
import type { Server } from 'node:http';
import { afterEach, expect, it } from 'vitest';
import { startHttp } from '../../src/daemon/http.ts';
import { Metrics } from '../../src/daemon/metrics.ts';

/**
 * The listener's limits (issue 29): clients that open connections and never
 * finish a request must not take every file descriptor, nor keep /healthz
 * from answering. Small limits here; the daemon's are HTTP_LIMITS.
 */

const LIMITS = { maxConnections: 8, headersTimeoutMs: 300, requestTimeoutMs: 600, checkIntervalMs: 50 };

let server: Server | undefined;
const sockets: net.Socket[] = [];
afterEach(async () => {
  for (const socket of sockets.splice(0)) socket.destroy();
  if (server) await new Promise((resolve) => server!.close(resolve));
  server = undefined;
});

async function listening(): Promise<number> {
  server = await startHttp({ host: '127.0.0.1', port: 0 }, () => ({ ready: true, accounts: [] }), new Metrics(), { limits: LIMITS });
  return (server.address() as net.AddressInfo).port;
}

/** A connection that sends half a request's headers and then nothing, and what came back on it until it closed. */
function halfSent(port: number): { socket: net.Socket; closed: Promise<string> } {
  const socket = net.connect(port, '127.0.0.1', () => socket.write('GET /healthz HTTP/1.1\r\nHost: x\r\n'));
  sockets.push(socket);
  let received = '';
  socket.on('data', (chunk: Buffer) => (received += chunk.toString('latin1')));
  socket.on('error', () => {});
  return { socket, closed: once(socket, 'close').then(() => received) };
}

const connections = (s: Server) => new Promise<number>((resolve, reject) => s.getConnections((error, n) => (error ? reject(error) : resolve(n))));

it('past the connection cap a new connection is closed at once, unanswered', { timeout: 20_000 }, async () => {
  const port = await listening();
  const held = Array.from({ length: LIMITS.maxConnections }, () => halfSent(port));
  while ((await connections(server!)) < LIMITS.maxConnections) await new Promise((resolve) => setTimeout(resolve, 10));
  const dropped = once(server!, 'drop');
  const extra = halfSent(port);
  await dropped;
  expect(await extra.closed).toBe('');
  expect(await connections(server!)).toBeLessThanOrEqual(LIMITS.maxConnections);
  await Promise.all(held.map((h) => h.closed));
});

it('a request whose headers never end is cut (408), and /healthz answers again', { timeout: 20_000 }, async () => {
  const port = await listening();
  const held = Array.from({ length: LIMITS.maxConnections }, () => halfSent(port));
  for (const answer of await Promise.all(held.map((h) => h.closed))) expect(answer).toMatch(/^HTTP\/1\.1 408 /);
  const response = await fetch(`http://127.0.0.1:${port}/healthz`);
  expect(response.status).toBe(200);
  expect(await response.text()).toBe('ok\n');
});
