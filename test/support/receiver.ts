import { createServer, type IncomingHttpHeaders, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

export interface ReceivedRequest {
  readonly method: string;
  readonly path: string;
  readonly headers: IncomingHttpHeaders;
  readonly body: string;
}

export type Answer = { readonly status: number; readonly headers?: Record<string, string>; readonly body?: string; readonly delayMs?: number } | { readonly hang: true } | { readonly reset: true };

/** A loopback HTTP receiver (a webhook endpoint, a Slack stand-in) whose answers the test scripts. */
export class Receiver {
  /** Every request that arrived, whatever the answer. */
  readonly requests: ReceivedRequest[] = [];
  /** The requests answered with a 2xx, once the answer was sent. */
  readonly accepted: ReceivedRequest[] = [];
  answer: (request: ReceivedRequest, index: number) => Answer = () => ({ status: 200, body: 'ok' });
  readonly #server: Server;
  readonly #hanging = new Set<ServerResponse>();

  private constructor(server: Server) {
    this.#server = server;
  }

  static async start(): Promise<Receiver> {
    let receiver: Receiver | undefined;
    const server = createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (chunk: Buffer) => chunks.push(chunk));
      req.on('end', () => {
        const request = { method: req.method ?? '', path: req.url ?? '', headers: req.headers, body: Buffer.concat(chunks).toString('utf8') };
        receiver!.requests.push(request);
        const answer = receiver!.answer(request, receiver!.requests.length - 1);
        if ('reset' in answer) {
          req.socket.destroy();
        } else if ('hang' in answer) {
          receiver!.#hanging.add(res);
        } else {
          const reply = () => {
            res.writeHead(answer.status, { 'content-type': 'text/plain', ...answer.headers });
            res.end(answer.body ?? '');
            if (answer.status >= 200 && answer.status < 300) receiver!.accepted.push(request);
          };
          if (answer.delayMs) setTimeout(reply, answer.delayMs);
          else reply();
        }
      });
    });
    receiver = new Receiver(server);
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    return receiver;
  }

  url(path = '/hook'): string {
    return `http://127.0.0.1:${(this.#server.address() as AddressInfo).port}${path}`;
  }

  async close(): Promise<void> {
    for (const res of this.#hanging) res.destroy();
    this.#server.closeAllConnections();
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }
}
