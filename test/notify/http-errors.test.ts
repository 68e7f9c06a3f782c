import { Readable } from 'node:stream';
import { ReadableStream } from 'node:stream/web';
import { describe, expect, it } from 'vitest';
import { MAX_ANSWER_BYTES, readAnswer } from '../../src/notify/sinks/http-errors.ts';

/** A body as undici's `request` hands it over (a Node stream) that yields `chunks`, then `rest` forever; counts what was pulled. */
function nodeBody(chunks: readonly Uint8Array[], rest?: Uint8Array) {
  const seen = { pulled: 0 };
  const body = Readable.from(
    (function* () {
      for (const chunk of chunks) {
        seen.pulled++;
        yield chunk;
      }
      while (rest) {
        seen.pulled++;
        yield rest;
      }
    })(),
    { objectMode: false, highWaterMark: 1024 },
  );
  return { body, seen, stopped: () => body.destroyed };
}

/** A body as undici's `fetch` hands it over (a web stream) that yields `chunks`, then `rest` forever; counts what was pulled. */
function webBody(chunks: readonly Uint8Array[], rest?: Uint8Array) {
  const seen = { pulled: 0, cancelled: false };
  let next = 0;
  const body = new ReadableStream<Uint8Array>(
    {
      pull(controller) {
        seen.pulled++;
        const chunk = chunks[next++] ?? rest;
        if (chunk) controller.enqueue(chunk);
        else controller.close();
      },
      cancel() {
        seen.cancelled = true;
      },
    },
    { highWaterMark: 0 },
  );
  return { body, seen, stopped: () => seen.cancelled };
}

const bytes = (text: string) => new TextEncoder().encode(text);
const KIND = [
  ['a Node stream (request)', nodeBody],
  ['a web stream (fetch)', webBody],
] as const;

describe('MAX_ANSWER_BYTES: a few KB, enough for an error message', () => {
  it('is 4 KiB', () => {
    expect(MAX_ANSWER_BYTES).toBe(4096);
  });
});

describe.each(KIND)('readAnswer over %s', (_kind, make) => {
  it('an endless error answer: the first MAX_ANSWER_BYTES as text, then the body is stopped', async () => {
    const { body, seen, stopped } = make([bytes('{"error":"boom"}')], bytes('x'.repeat(1000)));
    const text = await readAnswer(500, body);
    expect(Buffer.byteLength(text)).toBe(MAX_ANSWER_BYTES);
    expect(text.startsWith('{"error":"boom"}xxx')).toBe(true);
    expect(stopped()).toBe(true);
    // Pulled only what the limit needed, give or take what a stream buffers ahead.
    expect(seen.pulled).toBeLessThan(MAX_ANSWER_BYTES / 1000 + 4);
  });

  it('one chunk far larger than the limit is cut to it', async () => {
    const { body, stopped } = make([bytes('y'.repeat(1024 * 1024))]);
    expect(await readAnswer(400, body)).toBe('y'.repeat(MAX_ANSWER_BYTES));
    expect(stopped()).toBe(true);
  });

  it('a character cut by the limit is left out whole, never turned into U+FFFD', async () => {
    const { body } = make([bytes(`${'a'.repeat(MAX_ANSWER_BYTES - 1)}é and more`)]);
    expect(await readAnswer(502, body)).toBe('a'.repeat(MAX_ANSWER_BYTES - 1));
  });

  it('a character split across chunks inside the limit is kept whole', async () => {
    const euro = bytes('€'); // three bytes
    const { body } = make([bytes('price: '), euro.subarray(0, 1), euro.subarray(1), bytes('5')]);
    expect(await readAnswer(400, body)).toBe('price: €5');
  });

  it('a short answer is read to its end', async () => {
    const { body } = make([bytes('no_service')]);
    expect(await readAnswer(404, body)).toBe('no_service');
  });

  it('a 2xx answer is not read at all: empty at once, and the body is stopped', async () => {
    const { body, seen, stopped } = make([], bytes('ok'.repeat(512)));
    expect(await readAnswer(200, body)).toBe('');
    expect(stopped()).toBe(true);
    expect(seen.pulled).toBeLessThanOrEqual(1);
  });
});

describe('readAnswer when the answer fails midway', () => {
  it('a Node stream that errors: what came before the error', async () => {
    const body = new Readable({ read() {} });
    body.push(bytes('partial '));
    setImmediate(() => body.destroy(new Error('socket hang up')));
    expect(await readAnswer(503, body)).toBe('partial ');
  });

  it('a web stream that errors: what came before the error', async () => {
    let step = 0;
    const body = new ReadableStream<Uint8Array>({
      pull(controller) {
        if (step++ === 0) controller.enqueue(bytes('partial '));
        else controller.error(new Error('socket hang up'));
      },
    });
    expect(await readAnswer(503, body)).toBe('partial ');
  });

  it('no body at all reads as empty', async () => {
    expect(await readAnswer(500, null)).toBe('');
    expect(await readAnswer(204, null)).toBe('');
  });
});
