import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { UserFacingError } from '../errors.ts';
import type { Readiness } from './daemon.ts';
import type { Metrics } from './metrics.ts';

/**
 * What one client may hold of the listener. Probes and scrapes are a few
 * connections; past the cap a new one is closed at once rather than taking a
 * file descriptor the daemon needs, and a request whose headers or body are
 * sent too slowly is cut, so that clients which never finish a request (20,000
 * half-sent ones once used every descriptor) cannot keep /healthz from answering.
 */
export const HTTP_LIMITS = {
  maxConnections: 128,
  /** Until a request's headers are in. */
  headersTimeoutMs: 5_000,
  /** Until the whole request is in. */
  requestTimeoutMs: 10_000,
  /** How often those two are checked (Node's default is 30 s). */
  checkIntervalMs: 1_000,
};

/** The web console and /api/ (web/console.ts), when on: false for a path that is not its own. */
export type ConsoleHandler = (req: IncomingMessage, res: ServerResponse) => Promise<boolean>;

/**
 * /healthz (the process runs), /readyz (every account polled successfully
 * lately, else 503; each account listed, with why when it is not) and /metrics,
 * open to all; every other path goes to the console, when it is on.
 */
export async function startHttp(
  listen: { host: string; port: number },
  readiness: () => Readiness,
  metrics: Metrics,
  options: { readonly limits?: typeof HTTP_LIMITS; readonly console?: ConsoleHandler | undefined } = {},
): Promise<Server> {
  const limits = options.limits ?? HTTP_LIMITS;
  // Not `import { createServer } from 'node:http'`: an ES import of node:http loads Node's bundled fetch
  // (undici, for http.WebSocket), 13 MB that nothing here uses.
  const timeouts = { headersTimeout: limits.headersTimeoutMs, requestTimeout: limits.requestTimeoutMs, connectionsCheckingInterval: limits.checkIntervalMs };
  const web = options.console;
  const server = process.getBuiltinModule('node:http').createServer(timeouts, async (req, res) => {
    const path = (req.url ?? '/').split('?', 1)[0]!;
    try {
      const probe = path === '/healthz' || path === '/readyz' || path === '/metrics';
      if (!probe && web !== undefined && (await web(req, res))) {
        // the console answered
      } else if (req.method !== 'GET' && req.method !== 'HEAD') {
        res.writeHead(405, { allow: 'GET, HEAD' }).end();
      } else if (path === '/healthz') {
        res.writeHead(200, { 'content-type': 'text/plain' }).end('ok\n');
      } else if (path === '/readyz') {
        const state = readiness();
        res.writeHead(state.ready ? 200 : 503, { 'content-type': 'application/json' }).end(`${JSON.stringify(state)}\n`);
      } else if (path === '/metrics') {
        const text = await metrics.registry.metrics();
        res.writeHead(200, { 'content-type': metrics.registry.contentType }).end(text);
      } else {
        res.writeHead(404, { 'content-type': 'text/plain' }).end('not found: try /healthz, /readyz or /metrics\n');
      }
    } catch (error) {
      if (!res.headersSent) res.writeHead(500, { 'content-type': 'text/plain' }).end(`${(error as Error).message}\n`);
    }
  });
  server.maxConnections = limits.maxConnections;
  await new Promise<void>((resolve, reject) => {
    server.once('error', (error: NodeJS.ErrnoException) => {
      const why = error.code === 'EADDRINUSE' ? 'the address is already in use' : error.code === 'EACCES' ? 'permission denied' : error.message;
      reject(new UserFacingError(`http.listen ${listen.host}:${listen.port}: cannot listen: ${why}`, 2));
    });
    server.listen(listen.port, listen.host, () => resolve());
  });
  return server;
}

export function boundAddress(server: Server): string {
  const address = server.address() as AddressInfo;
  return address.family === 'IPv6' ? `[${address.address}]:${address.port}` : `${address.address}:${address.port}`;
}
