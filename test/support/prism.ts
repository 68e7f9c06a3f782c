import { type ChildProcess, spawn } from 'node:child_process';
import http from 'node:http';
import path from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import { createInterface } from 'node:readline';
import { freePort } from './postgres.ts';
import { REPO } from './process.ts';

/**
 * Prism (`@stoplight/prism-cli`, a devDependency) serving an OpenAPI file on a
 * free loopback port, and a recording proxy to put in front of it, for
 * contract tests: Prism answers from the schema and validates each request,
 * reporting what the request got wrong in an `sl-violations` response header.
 */

const PRISM_BIN = path.join(REPO, 'node_modules', '@stoplight', 'prism-cli', 'dist', 'index.js');

/** Prism children not yet stopped: killed when this process exits, whatever happened to the tests. */
const live = new Set<ChildProcess>();
process.once('exit', () => {
  for (const child of live) child.kill('SIGKILL');
});

export interface PrismServer {
  /** `http://127.0.0.1:PORT` */
  readonly baseUrl: string;
  /** Prism's last lines of output, for a failure message. */
  output(): string;
  /** Stops Prism and waits until it is gone. Safe to call twice. */
  stop(): Promise<void>;
}

export interface StartPrismOptions {
  /** `-d`: random answers that follow the schema, instead of the examples. */
  readonly dynamic?: boolean;
  /** A GET that Prism answers once the spec is loaded (any HTTP status counts as up). */
  readonly probePath: string;
  /** How long Prism may take to start. */
  readonly timeoutMs?: number;
}

/** Starts `prism mock` on a free 127.0.0.1 port and resolves once it answers HTTP. */
export async function startPrism(spec: string, options: StartPrismOptions): Promise<PrismServer> {
  const deadline = Date.now() + (options.timeoutMs ?? 60_000);
  for (let attempt = 1; ; attempt++) {
    const port = await freePort();
    try {
      return await startOn(port, spec, options, deadline);
    } catch (error) {
      // Another process took the port between freePort() and Prism's listen: pick another.
      if (attempt < 3 && error instanceof PortTaken) continue;
      throw error;
    }
  }
}

class PortTaken extends Error {}

async function startOn(port: number, spec: string, options: StartPrismOptions, deadline: number): Promise<PrismServer> {
  const args = [PRISM_BIN, 'mock', '-h', '127.0.0.1', '-p', String(port), ...(options.dynamic ? ['-d'] : []), spec];
  const child = spawn(process.execPath, args, {
    cwd: REPO,
    env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '/tmp', NO_COLOR: '1' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  live.add(child);
  const lines: string[] = [];
  const keep = (line: string) => {
    lines.push(line);
    if (lines.length > 200) lines.shift();
  };
  createInterface({ input: child.stdout! }).on('line', keep);
  createInterface({ input: child.stderr! }).on('line', keep);
  const exited = new Promise<void>((resolve) => child.once('close', () => resolve()));
  const output = () => lines.join('\n');
  let stopping: Promise<void> | undefined;
  const stop = () =>
    (stopping ??= (async () => {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill('SIGTERM');
        const gone = await Promise.race([exited.then(() => true), delay(5000, false)]);
        if (!gone) {
          child.kill('SIGKILL');
          await exited;
        }
      }
      live.delete(child);
    })());

  const baseUrl = `http://127.0.0.1:${port}`;
  try {
    let done = false;
    const early = exited.then(() => {
      if (done) return;
      const text = output();
      throw /EADDRINUSE/.test(text) ? new PortTaken(text) : new Error(`prism exited before it answered (code ${child.exitCode}):\n${text}`);
    });
    early.catch(() => {});
    await Promise.race([early, waitForHttp(baseUrl + options.probePath, deadline, output)]);
    done = true;
  } catch (error) {
    await stop();
    throw error;
  }
  return { baseUrl, output, stop };
}

/** Asks `url` until anything answers, a few times a second, until `deadline`. */
async function waitForHttp(url: string, deadline: number, output: () => string): Promise<void> {
  for (;;) {
    try {
      const response = await fetch(url, { signal: AbortSignal.timeout(2000) });
      await response.arrayBuffer();
      return;
    } catch {
      if (Date.now() > deadline) throw new Error(`prism did not answer ${url} in time; its output:\n${output()}`);
      await delay(100);
    }
  }
}

/** One request that went through the proxy, and what Prism answered. */
export interface Exchange {
  readonly method: string;
  /** Path and query, as riskwatch sent them. */
  readonly url: string;
  readonly headers: http.IncomingHttpHeaders;
  /** Prism's status, or undefined when Prism could not be reached (see `error`). */
  readonly status: number | undefined;
  /** The `sl-violations` header: Prism's request validator found something wrong. */
  readonly violations: string | undefined;
  readonly body: string;
  readonly error?: string;
}

/**
 * A loopback HTTP proxy to one upstream (Prism) that records every exchange:
 * the request's method, URL and headers, the answer's status, `sl-violations`
 * header and body. The answer is passed on unchanged.
 */
export class RecordingProxy {
  readonly exchanges: Exchange[] = [];
  readonly #server: http.Server;
  readonly #agent = new http.Agent({ keepAlive: true });
  #port = 0;

  private constructor(upstream: URL) {
    this.#server = http.createServer((req, res) => {
      res.on('error', () => {});
      const forward = http.request(
        {
          host: upstream.hostname,
          port: upstream.port,
          method: req.method,
          path: req.url,
          headers: { ...req.headers, host: upstream.host },
          agent: this.#agent,
        },
        (answer) => {
          const chunks: Buffer[] = [];
          answer.on('data', (chunk: Buffer) => chunks.push(chunk));
          answer.on('end', () => {
            const body = Buffer.concat(chunks);
            const violations = answer.headers['sl-violations'];
            this.exchanges.push({
              method: req.method ?? '',
              url: req.url ?? '',
              headers: req.headers,
              status: answer.statusCode,
              violations: Array.isArray(violations) ? violations.join(', ') : violations,
              body: body.toString('utf8'),
            });
            const headers = { ...answer.headers };
            for (const hop of ['connection', 'keep-alive', 'transfer-encoding']) delete headers[hop];
            headers['content-length'] = String(body.length);
            if (!res.destroyed) res.writeHead(answer.statusCode ?? 502, headers).end(body);
          });
          answer.on('error', () => res.destroy());
        },
      );
      forward.on('error', (error) => {
        this.exchanges.push({ method: req.method ?? '', url: req.url ?? '', headers: req.headers, status: undefined, violations: undefined, body: '', error: error.message });
        if (!res.headersSent) res.writeHead(502).end();
        else res.destroy();
      });
      req.pipe(forward);
    });
  }

  static async start(upstream: string): Promise<RecordingProxy> {
    const proxy = new RecordingProxy(new URL(upstream));
    await new Promise<void>((resolve, reject) => {
      proxy.#server.once('error', reject);
      proxy.#server.listen(0, '127.0.0.1', () => resolve());
    });
    proxy.#port = (proxy.#server.address() as { port: number }).port;
    return proxy;
  }

  get baseUrl(): string {
    return `http://127.0.0.1:${this.#port}`;
  }

  async close(): Promise<void> {
    const closed = new Promise<void>((resolve) => this.#server.close(() => resolve()));
    this.#server.closeAllConnections();
    this.#agent.destroy();
    await closed;
  }
}
