import { Readable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { httpFailure, MAX_ANSWER_BYTES, readAnswer, smtpFailure, transportFailure } from '../../src/notify/sinks/http-errors.ts';

/** A body as Node's HTTP client hands it over (a stream) that yields `chunks`, then `rest` forever; counts what was pulled. */
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

const bytes = (text: string) => new TextEncoder().encode(text);

describe('MAX_ANSWER_BYTES: a few KB, enough for an error message', () => {
  it('is 4 KiB', () => {
    expect(MAX_ANSWER_BYTES).toBe(4096);
  });
});

describe('readAnswer', () => {
  const make = nodeBody;
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
  it('a body that errors: what came before the error', async () => {
    const body = new Readable({ read() {} });
    body.push(bytes('partial '));
    setImmediate(() => body.destroy(new Error('socket hang up')));
    expect(await readAnswer(503, body)).toBe('partial ');
  });

  it('no body at all reads as empty', async () => {
    expect(await readAnswer(500, null)).toBe('');
    expect(await readAnswer(204, null)).toBe('');
  });
});

/** An error as nodemailer makes it: a message, its code, and the reply when the server gave one. */
function smtpError(message: string, fields: { code?: string; originalCode?: string; responseCode?: number; response?: string; command?: string }): Error {
  return Object.assign(new Error(message), fields);
}
const live = () => new AbortController().signal;

describe('one classifier for every sink: retryable, and whether the receiver itself is struggling (the whole sink then waits)', () => {
  it.each([
    [408, true, true],
    [429, true, true],
    [502, true, true],
    [503, true, true],
    [504, true, true],
    [500, true, false],
    [501, true, false],
    [400, false, false],
    [404, false, false],
    // HTTP 421 is Misdirected Request: this request's, and permanent; SMTP's 421 is another thing (below).
    [421, false, false],
  ])('HTTP %i: retryable %s, receiver %s', (status, retryable, receiver) => {
    const error = httpFailure('hook', status, undefined, 'no', Date.now());
    expect([error.retryable, error.receiver]).toEqual([retryable, receiver]);
  });

  it.each([
    [421, true, true],
    [450, true, false],
    [451, true, false],
    [550, false, false],
  ])('SMTP %i: retryable %s, receiver %s', (code, retryable, receiver) => {
    const error = smtpFailure('mail', smtpError('reply', { responseCode: code, response: `${code} x`, command: 'DATA' }), live());
    expect([error.retryable, error.receiver]).toEqual([retryable, receiver]);
  });

  it('no answer (refused, timed out) is the receiver’s; a request Node refuses to send is neither retried nor the receiver’s', () => {
    const refused = Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:1'), { code: 'ECONNREFUSED' });
    expect([transportFailure('hook', refused, live()).retryable, transportFailure('hook', refused, live()).receiver]).toEqual([true, true]);
    const timedOut = AbortSignal.abort();
    expect(transportFailure('hook', refused, timedOut).receiver).toBe(true);
    expect(smtpFailure('mail', smtpError('Connection timeout', { code: 'ETIMEDOUT' }), live()).receiver).toBe(true);
    const invalid = Object.assign(new TypeError('Invalid character in header content'), { code: 'ERR_INVALID_CHAR' });
    expect([transportFailure('hook', invalid, live()).retryable, transportFailure('hook', invalid, live()).receiver]).toEqual([false, false]);
    expect(smtpFailure('mail', smtpError('Invalid login', { code: 'EAUTH' }), live()).receiver).toBe(false);
  });
});

describe('smtpFailure: 4xx replies and connection failures retried, 5xx replies and refused logins permanent', () => {
  it.each([
    ['RCPT TO', 451, '451 4.3.0 Mailbox busy', true],
    ['RCPT TO', 452, '452 4.2.2 Mailbox full', true],
    ['MAIL FROM', 421, '421 4.7.0 Too many connections', true],
    ['DATA', 450, '450 4.2.1 Try later', true],
    ['RCPT TO', 550, '550 5.1.1 No such user', false],
    ['DATA', 554, '554 5.7.1 Message rejected as spam', false],
    ['AUTH PLAIN', 535, '535 5.7.8 Authentication credentials invalid', false],
    ['MAIL FROM', 530, '530 5.7.0 Authentication required', false],
    ['AUTH LOGIN', 454, '454 4.7.0 Temporary authentication failure', true],
  ] as const)('%s answered %i (%s): retryable %s, status the reply code, the command and reply quoted', (command, code, response, retryable) => {
    const error = smtpFailure('mail', smtpError(`Can't send mail: ${response}`, { code: 'EENVELOPE', responseCode: code, response, command }), live());
    expect(error.retryable).toBe(retryable);
    expect(error.status).toBe(code);
    expect(error.retryAfterMs).toBeUndefined();
    expect(error.message).toBe(`sink mail: SMTP ${code}${retryable ? '' : ' (permanent)'} in reply to ${command.split(' ')[0]}: "${response}"`);
  });

  it('a multi-line reply is said on one line', () => {
    const response = '550-5.1.1 The email account does not exist.\r\n550 5.1.1 Please try again.';
    const error = smtpFailure('mail', smtpError('x', { code: 'EENVELOPE', responseCode: 550, response, command: 'RCPT TO' }), live());
    expect(error.message).toBe('sink mail: SMTP 550 (permanent) in reply to RCPT: "550-5.1.1 The email account does not exist. 550 5.1.1 Please try again."');
  });

  it('a command that is not a plain SMTP verb is not quoted', () => {
    const error = smtpFailure('mail', smtpError('x', { code: 'EAUTH', responseCode: 535, response: '535 no', command: 'AUTH PLAIN dXNlcgBwYXNz' }), live());
    expect(error.message).toBe('sink mail: SMTP 535 (permanent): "535 no"');
    expect(error.message).not.toContain('dXNlcgBwYXNz');
  });

  it.each([
    ['ESOCKET', 'connect ECONNREFUSED 127.0.0.1:25', 'ECONNREFUSED'],
    ['ESOCKET', 'read ECONNRESET', 'ECONNRESET'],
    ['ETIMEDOUT', 'Greeting never received', undefined],
    ['ETIMEDOUT', 'Connection timeout', undefined],
    ['ECONNECTION', 'Connection closed unexpectedly', undefined],
    ['EDNS', 'getaddrinfo ENOTFOUND mail.example.com', 'ENOTFOUND'],
    ['ETLS', 'Error initiating TLS - self-signed certificate', undefined],
  ])('no reply, %s (%s): retryable', (code, message, originalCode) => {
    const error = smtpFailure('mail', smtpError(message, { code, ...(originalCode ? { originalCode } : {}) }), live());
    expect(error.retryable).toBe(true);
    expect(error.status).toBeUndefined();
    expect(error.message).toContain(`sink mail: ${code}: ${message}`);
    if (originalCode) expect(error.message).toContain(originalCode);
  });

  it.each([
    ['EAUTH', 'Missing credentials for "PLAIN"'],
    ['ENOAUTH', 'Authentication credentials not provided'],
    ['EENVELOPE', 'No recipients defined'],
    ['EMESSAGE', 'Message size larger than allowed 1000'],
    ['ECONFIG', 'Invalid configuration'],
  ])('no reply, %s: the attempt itself was wrong, permanent', (code, message) => {
    const error = smtpFailure('mail', smtpError(message, { code }), live());
    expect(error.retryable).toBe(false);
    expect(error.message).toBe(`sink mail: ${code}: ${message} (permanent)`);
  });

  it('a STARTTLS the server refuses (required for a non-loopback smtp://) is permanent with its reply', () => {
    const error = smtpFailure(
      'mail',
      smtpError('Error upgrading connection with STARTTLS', { code: 'ETLS', responseCode: 502, response: '502 5.5.2 Command not recognized', command: 'STARTTLS' }),
      live(),
    );
    expect(error.retryable).toBe(false);
    expect(error.message).toBe('sink mail: SMTP 502 (permanent) in reply to STARTTLS: "502 5.5.2 Command not recognized"');
  });

  it('a send cut off by its signal: retryable, "timed out", whatever the error says', () => {
    const controller = new AbortController();
    controller.abort(new Error('send timeout'));
    const error = smtpFailure('mail', smtpError('Message sending aborted', { code: 'EABORT', responseCode: 550, response: '550 x' }), controller.signal);
    expect(error.retryable).toBe(true);
    expect(error.status).toBeUndefined();
    expect(error.message).toBe('sink mail: no answer in time (timed out)');
  });

  it('an error nodemailer did not classify is retried, and said on one line', () => {
    const error = smtpFailure('mail', new Error('something\nodd'), live());
    expect(error.retryable).toBe(true);
    expect(error.message).toBe('sink mail: something odd');
    expect(smtpFailure('mail', 'a string', live()).retryable).toBe(true);
  });
});
