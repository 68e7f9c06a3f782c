/**
 * The webhook receiver of the delivery benchmark, in a process of its own (as
 * a real receiver is): the fake API serving pages in the parent's event loop
 * must not delay the moment a delivery counts as received.
 *
 * Prints {"url": …} when listening; then answers each stdin line with one JSON
 * line: "count" → how many distinct deliveries arrived and when the first and
 * last did; "latencies" → the detection-to-receipt times (ms) of those that
 * arrived since the last "latencies"; "end" → the same as count, then exits.
 */
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { createInterface } from 'node:readline';

const received = new Map<string, number>();
let latencies: number[] = [];

const server = createServer((req, res) => {
  const chunks: Buffer[] = [];
  req.on('data', (c: Buffer) => chunks.push(c));
  req.on('end', () => {
    const now = Date.now();
    const id = String(req.headers['webhook-id']);
    if (!received.has(id)) {
      received.set(id, now);
      latencies.push(now - Date.parse((JSON.parse(Buffer.concat(chunks).toString()) as { timestamp: string }).timestamp));
    }
    res.writeHead(204).end();
  });
});
await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));

const write = (value: unknown) => process.stdout.write(`${JSON.stringify(value)}\n`);
const count = () => {
  const times = [...received.values()];
  return { count: received.size, first: Math.min(...times), last: Math.max(...times) };
};
write({ url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/hook` });
for await (const line of createInterface({ input: process.stdin })) {
  if (line === 'count') write(count());
  else if (line === 'latencies') {
    write({ latencies });
    latencies = [];
  } else break;
}
write(count());
server.closeAllConnections();
server.close();
