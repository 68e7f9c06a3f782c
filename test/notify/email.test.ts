import { inspect } from 'node:util';
import { createTransport } from 'nodemailer';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { EmailSinkConfig } from '../../src/config/config.ts';
import { Secret } from '../../src/config/secret.ts';
import type { RiskEvent } from '../../src/detect/events.ts';
import type { DeliveryError } from '../../src/notify/sink.ts';
import { isLoopbackHost } from '../../src/http.ts';
import { EmailSink, smtpTransportOptions } from '../../src/notify/sinks/email.ts';
import { EMAIL_LIMITS, type EmailMessage, escapeHtml, messageId, renderEmail } from '../../src/notify/sinks/email-render.ts';
import { smtpFailure } from '../../src/notify/sinks/http-errors.ts';
import { FakeClock } from '../support/fake-clock.ts';
import { FakeSmtp, startSilentServer } from '../support/fakes/smtp.ts';
import { expectGolden } from '../support/golden.ts';
import { ACCOUNT, deliveryFailure, HOSTILE, hostileEvents, LONG, ONE_OF_EACH, storm, userEvent } from '../support/sink-fixtures.ts';

const FROM = 'riskwatch@example.com';
const TO = ['secops@example.com', 'Oncall <oncall@example.org>'];
const CREDENTIALS = { user: 'riskwatch', pass: 'p@ss:w/rd s3cret' };
const OPTIONS = { sink: 'mail', subjectPrefix: '[riskwatch]', from: FROM };

function sinkFor(smtp: string, overrides: Partial<EmailSinkConfig> = {}): EmailSink {
  const config: EmailSinkConfig = {
    type: 'email',
    name: 'mail',
    minLevel: 'low',
    events: undefined,
    accounts: undefined,
    smtp: new Secret(smtp),
    from: FROM,
    to: TO,
    subjectPrefix: '[riskwatch]',
    ...overrides,
  };
  return new EmailSink(config, { clock: new FakeClock() });
}

const timeout = () => AbortSignal.timeout(10_000);
/** Neither the password (raw or percent-encoded) nor the URL shows in the error, its cause included. */
function expectNoSecret(error: DeliveryError, url: string): void {
  for (const text of [error.message, inspect(error, { depth: 10 }), JSON.stringify(error.cause ?? null)]) {
    expect(text).not.toContain(CREDENTIALS.pass);
    expect(text).not.toContain(encodeURIComponent(CREDENTIALS.pass));
    expect(text).not.toContain(Buffer.from(CREDENTIALS.pass).toString('base64'));
    expect(text).not.toContain(url);
  }
  expect(error.message).not.toMatch(/\n/);
}

describe('transport options: TLS from the URL', () => {
  it('smtps:// is TLS from the first byte, port 465 by default', () => {
    expect(smtpTransportOptions('smtps://mail.example.com')).toMatchObject({ host: 'mail.example.com', port: 465, secure: true, requireTLS: false });
    expect(smtpTransportOptions('smtps://mail.example.com:2465').port).toBe(2465);
  });

  it('smtp:// must upgrade with STARTTLS before anything else, port 587 by default', () => {
    expect(smtpTransportOptions('smtp://mail.example.com')).toMatchObject({ host: 'mail.example.com', port: 587, secure: false, requireTLS: true });
    expect(smtpTransportOptions('smtp://10.0.0.5:25')).toMatchObject({ port: 25, requireTLS: true });
    expect(smtpTransportOptions('smtp://127.0.0.1.nip.io')).toMatchObject({ requireTLS: true });
    expect(smtpTransportOptions('smtp://localhost.evil.example')).toMatchObject({ requireTLS: true });
  });

  it.each(['smtp://127.0.0.1:25', 'smtp://127.8.9.10', 'smtp://localhost:2525', 'smtp://[::1]:25', 'smtp://LOCALHOST', 'smtp://[::ffff:127.0.0.1]'])('%s is loopback: plain is allowed', (url) => {
    expect(smtpTransportOptions(url)).toMatchObject({ secure: false, requireTLS: false });
  });

  it("on loopback, a certificate is not verified: no network is crossed, and a local relay's is commonly self-signed", () => {
    expect(smtpTransportOptions('smtp://localhost:25').tls).toEqual({ rejectUnauthorized: false });
    expect(smtpTransportOptions('smtps://127.0.0.1').tls).toEqual({ rejectUnauthorized: false });
  });

  it('never turns TLS checks off off loopback, and bounds each step of the session', () => {
    const options = smtpTransportOptions('smtp://mail.example.com');
    expect(options.ignoreTLS).toBeUndefined();
    expect(options.tls).toBeUndefined();
    for (const key of ['connectionTimeout', 'greetingTimeout', 'socketTimeout', 'dnsTimeout'] as const) expect(options[key]).toBe(30_000);
    expect(options).toMatchObject({ disableFileAccess: true, disableUrlAccess: true, logger: false });
  });

  it('user and password come from the URL, percent-decoded; none without a user', () => {
    const url = `smtp://${encodeURIComponent(CREDENTIALS.user)}:${encodeURIComponent(CREDENTIALS.pass)}@mail.example.com`;
    expect(smtpTransportOptions(url).auth).toEqual(CREDENTIALS);
    expect(smtpTransportOptions('smtp://mail.example.com').auth).toBeUndefined();
  });

  it('a URL that is not smtp:// or smtps:// is refused without echoing it', () => {
    for (const url of [`https://user:${CREDENTIALS.pass}@mail.example.com`, `not a url ${CREDENTIALS.pass}`, 'smtp://']) {
      expect(() => smtpTransportOptions(url)).toThrow(/^smtp must be an smtp:\/\/ or smtps:\/\/ URL$/);
    }
  });

  it('isLoopbackHost', () => {
    for (const host of ['localhost', 'a.localhost', '127.0.0.1', '127.255.0.1', '::1', '[::1]', '::ffff:127.0.0.1']) expect(isLoopbackHost(host), host).toBe(true);
    for (const host of ['mail.example.com', '10.0.0.1', '128.0.0.1', '::2', 'localhost.example.com', '0.0.0.0']) expect(isLoopbackHost(host), host).toBe(false);
  });
});

describe('render: subject, parts and Message-ID', () => {
  it.each(Object.entries(ONE_OF_EACH))('golden %s', (type, event) => {
    const message = renderEmail([event], OPTIONS);
    expectGolden(new URL(`golden/email/${type}.txt`, import.meta.url), `Subject: ${message.subject}\nMessage-ID: ${message.messageId}\n\n${message.text}`);
    expectGolden(new URL(`golden/email/${type}.html`, import.meta.url), message.html);
  });

  it('the subject says what happened: prefix, account, summary', () => {
    const events = [ONE_OF_EACH['user.risk_level_raised'], userEvent(3, 'medium'), ONE_OF_EACH['behavior.disabled']];
    expect(renderEmail(events, OPTIONS).subject).toBe('[riskwatch] production: 2 users raised (1 to high), 1 behavior disabled');
    expect(renderEmail(events, { ...OPTIONS, subjectPrefix: 'ALERT' }).subject).toMatch(/^ALERT production: /);
  });

  it('the subject holds no line break and is clipped, whatever the account label', () => {
    const events = storm(2).map((e) => ({ ...e, data: { ...e.data, account: { id: ACCOUNT.id, name: `prod\r\nBcc: victim@example.com\n${'x'.repeat(400)}` } } }) as RiskEvent);
    const message = renderEmail(events, OPTIONS);
    expect(message.subject).not.toMatch(/[\r\n]/);
    expect(message.subject.length).toBe(EMAIL_LIMITS.subjectChars);
    expect(message.subject.startsWith('[riskwatch] prod Bcc: victim@example.com xxx')).toBe(true);
    expect(message.cuts).toContainEqual(expect.stringMatching(/^subject cut from \d+ to 250 characters$/));
  });

  it('the Message-ID is derived from the sink and the events: the same delivery always gets the same one', () => {
    const events = storm(3);
    const first = renderEmail(events, OPTIONS).messageId;
    expect(first).toMatch(/^<riskwatch\.[0-9a-f]{32}@example\.com>$/);
    expect(renderEmail(structuredClone(events), OPTIONS).messageId).toBe(first);
    expect(renderEmail(storm(4), OPTIONS).messageId).not.toBe(first);
    expect(renderEmail(events, { ...OPTIONS, sink: 'other-mail' }).messageId).not.toBe(first);
    expect(messageId({ sink: 'mail', from: 'Security <alerts@Mail.Example.org>' }, events)).toMatch(/@mail\.example\.org>$/);
    expect(messageId({ sink: 'mail', from: 'odd' }, events)).toMatch(/@riskwatch\.invalid>$/);
  });

  it('300 users: every one listed in both parts, in order, nothing left out', () => {
    const message = renderEmail(storm(300), OPTIONS);
    const listed = [...message.text.matchAll(/^\[(?:HIGH|MEDIUM|LOW)\] User (\d{4})/gm)].map((m) => m[1]);
    expect(listed).toEqual(Array.from({ length: 300 }, (_, i) => String(i + 1).padStart(4, '0')));
    expect(message.html.match(/<strong>User \d{4} &lt;u\d{4}@example\.com&gt;<\/strong>/g)).toHaveLength(300);
    expect(message.text).not.toContain('…and');
    expect(message.cuts).toEqual([]);
  });

  it('5000 users: the first ones, then "…and N more" with the right N, within the byte budget', () => {
    const events = storm(5000);
    const message = renderEmail(events, OPTIONS);
    const listed = message.text.match(/^\[(?:HIGH|MEDIUM|LOW|BEHAVIOR)\] /gm)!.length;
    expect(listed).toBe(EMAIL_LIMITS.items);
    const n = Number(/^…and (\d+) more \(/m.exec(message.text)?.[1]);
    expect(n).toBe(events.length - listed);
    expect(message.html).toContain(`…and ${n} more`);
    expect(Buffer.byteLength(message.text) + Buffer.byteLength(message.html)).toBeLessThanOrEqual(EMAIL_LIMITS.bodyBytes);
  });

  it('hostile strings are escaped in the HTML and kept on one line in the text', () => {
    const message = renderEmail([userEvent(1, 'high', { name: 'Eve\r\nSubject: hi\n<b>x</b>' }), ...hostileEvents()], OPTIONS);
    for (const hostile of HOSTILE) {
      if (/[<>&"']/.test(hostile)) expect(message.html).not.toContain(hostile);
      expect(message.html).toContain(escapeHtml(hostile));
      expect(message.text).toContain(hostile);
    }
    expect(message.html).not.toMatch(/<script|<at>|<b>x/);
    expect(message.text).toContain('[HIGH] Eve Subject: hi <b>x</b> <');
    expect(message.subject).not.toContain('evil');
  });

  it('a 10,000-character name is clipped to 500 characters and recorded', () => {
    const message = renderEmail([userEvent(1, 'high', { name: LONG })], OPTIONS);
    expect(message.text.split('\n')[3]!.length).toBeLessThan(600);
    expect(message.cuts).toEqual(['user name cut from 10000 to 500 characters']);
  });
});

describe('through a real SMTP server on loopback', () => {
  let smtp: FakeSmtp;
  beforeEach(async () => {
    smtp = await FakeSmtp.start({ auth: CREDENTIALS });
  });
  afterEach(async () => {
    await smtp.close();
  });
  const url = () => smtp.url(CREDENTIALS);

  describe('delivery', () => {
    it('one message: subject, from, every recipient, both parts, the Message-ID, logged in', async () => {
      const sink = sinkFor(url());
      const events = [ONE_OF_EACH['user.risk_level_raised'], ONE_OF_EACH['behavior.disabled']];
      const message = sink.render(events);
      await sink.send(message, timeout());
      expect(smtp.logins).toEqual([CREDENTIALS]);
      expect(smtp.messages).toHaveLength(1);
      const [mail] = smtp.messages;
      expect(mail!.envelope).toEqual({ from: FROM, to: ['secops@example.com', 'oncall@example.org'] });
      expect(mail!.user).toBe(CREDENTIALS.user);
      const { parsed } = mail!;
      expect(parsed.subject).toBe('[riskwatch] production: 1 user raised (1 to high), 1 behavior disabled');
      expect(parsed.from?.text).toBe(FROM);
      expect([parsed.to].flat().flatMap((a) => a!.value.map((v) => v.address))).toEqual(['secops@example.com', 'oncall@example.org']);
      expect(parsed.messageId).toBe(message.messageId);
      expect(parsed.text?.trim()).toBe(message.text.trim());
      expect(parsed.html).toBe(message.html);
      expect(parsed.headers.get('auto-submitted')).toBe('auto-generated');
    });

    it('a loopback relay offering STARTTLS with a self-signed certificate: upgraded, and the mail taken', async () => {
      const relay = await FakeSmtp.start({ auth: CREDENTIALS, starttls: true });
      try {
        const sink = sinkFor(relay.url(CREDENTIALS));
        await sink.send(sink.render(storm(1)), timeout());
        expect(relay.messages.map((m) => m.secure)).toEqual([true]);
      } finally {
        await relay.close();
      }
    });

    it('a resend of the same delivery carries the same Message-ID', async () => {
      const sink = sinkFor(url());
      await sink.send(sink.render(storm(2)), timeout());
      await sink.send(sink.render(storm(2)), timeout());
      expect(smtp.messages.map((m) => m.parsed.messageId)).toEqual([renderEmail(storm(2), OPTIONS).messageId, renderEmail(storm(2), OPTIONS).messageId]);
    });

    it('the HTML part escapes <script>, & and quotes in names; no API string in any header but the subject', async () => {
      const sink = sinkFor(url());
      await sink.send(sink.render(hostileEvents()), timeout());
      const { parsed, raw } = smtp.messages[0]!;
      expect(parsed.html).toContain('&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;');
      expect(parsed.html).toContain('Tom &amp; Jerry&#39;s &quot;quote&quot;');
      expect(parsed.html).not.toContain('<script');
      expect(parsed.text).toContain('<script>alert("x")</script>');
      const headers = raw.slice(0, raw.indexOf('\r\n\r\n'));
      expect(headers).not.toMatch(/evil|script|Boss|Jerry/);
    });

    it('300 users in one message', async () => {
      const sink = sinkFor(url());
      await sink.send(sink.render(storm(300)), timeout());
      expect(smtp.messages).toHaveLength(1);
      expect(smtp.messages[0]!.parsed.text!.match(/^\[(?:HIGH|MEDIUM|LOW)\] User/gm)).toHaveLength(300);
      expect(smtp.messages[0]!.parsed.subject).toBe('[riskwatch] production: 300 users raised (100 to high), 1 behavior disabled, 1 behavior added');
    });

    it('the test message names the sink', async () => {
      const sink = sinkFor(url());
      await sink.send(sink.renderTest(), timeout());
      const { parsed } = smtp.messages[0]!;
      expect(parsed.subject).toBe('[riskwatch] test notification for sink mail');
      expect(parsed.text).toContain('riskwatch test notification for sink mail: this sink works');
      expect(parsed.messageId).toMatch(/^<.+@.+>$/);
    });
  });

  describe('failures: 4xx replies and connection failures retried, 5xx permanent, no password anywhere', () => {
    const send = (sink: EmailSink, message?: EmailMessage) => sink.send(message ?? sink.render(storm(1)), timeout());

    it.each([
      ['RCPT', 451, true],
      ['RCPT', 550, false],
      ['MAIL', 452, true],
      ['MAIL', 553, false],
      ['DATA', 451, true],
      ['DATA', 554, false],
      ['CONNECT', 421, true],
      ['CONNECT', 554, false],
      ['AUTH', 454, true],
    ] as const)('%s answered %i: retryable %s, status the reply code', async (step, code, retryable) => {
      for (let i = 0; i < TO.length; i++) smtp.rejectNext(step, code);
      const error = await deliveryFailure(send(sinkFor(url())));
      expect(error.retryable).toBe(retryable);
      expect(error.status).toBe(code);
      expect(error.message).toMatch(new RegExp(`^sink mail: SMTP ${code}${retryable ? '' : ' \\(permanent\\)'}`));
      expectNoSecret(error, url());
      expect(smtp.messages).toEqual([]);
    });

    it('one recipient refused while the other took it: delivered (a retry would send it to both again)', async () => {
      smtp.rejectNext('RCPT', 550, '5.1.1 No such user');
      await send(sinkFor(url()));
      expect(smtp.messages).toHaveLength(1);
      expect(smtp.messages[0]!.envelope.to).toEqual(['oncall@example.org']);
    });

    it('a wrong password: 535, permanent, and the password is in no error', async () => {
      const wrong = smtp.url({ user: CREDENTIALS.user, pass: `${CREDENTIALS.pass}x` });
      const error = await deliveryFailure(send(sinkFor(wrong)));
      expect(error.retryable).toBe(false);
      expect(error.status).toBe(535);
      expect(error.message).toContain('AUTH');
      expectNoSecret(error, wrong);
      expect(inspect(error, { depth: 10 })).not.toContain(`${CREDENTIALS.pass}x`);
    });

    it('the server asks for a login that the URL does not give: permanent', async () => {
      const error = await deliveryFailure(send(sinkFor(smtp.url())));
      expect(error.retryable).toBe(false);
      expect(error.status).toBe(530);
    });

    it('connection refused: retryable', async () => {
      const closed = await FakeSmtp.start();
      const refused = closed.url(CREDENTIALS);
      await closed.close();
      const error = await deliveryFailure(send(sinkFor(refused)));
      expect(error.retryable).toBe(true);
      expect(error.status).toBeUndefined();
      expect(error.message).toMatch(/ECONNREFUSED/);
      expectNoSecret(error, refused);
    });

    it('a server that never greets: the signal ends the send at once, retryable, and the connection is closed', async () => {
      const silent = await startSilentServer();
      try {
        const sink = sinkFor(silent.url);
        const started = Date.now();
        const error = await deliveryFailure(sink.send(sink.render(storm(1)), AbortSignal.timeout(300)));
        expect(Date.now() - started).toBeLessThan(5000);
        expect(error.retryable).toBe(true);
        expect(error.message).toBe('sink mail: no answer in time (timed out)');
        expect(silent.connections()).toBe(1);
        await expect.poll(() => silent.open(), { timeout: 8000 }).toBe(0);
      } finally {
        await silent.close();
      }
    });

    it('requireTLS: a non-loopback server that offers no STARTTLS is refused before the password is sent, permanently', async () => {
      const options = smtpTransportOptions(`smtp://${encodeURIComponent(CREDENTIALS.user)}:${encodeURIComponent(CREDENTIALS.pass)}@mail.example.com:${smtp.port}`);
      expect(options.requireTLS).toBe(true);
      // The same options, pointed at the loopback server that offers no STARTTLS.
      const transport = createTransport({ ...options, host: '127.0.0.1' });
      const signal = timeout();
      const error = smtpFailure('mail', await transport.sendMail({ from: FROM, to: TO[0], text: 'x', signal }).catch((e: unknown) => e), signal);
      expect(smtp.logins).toEqual([]);
      expect(smtp.messages).toEqual([]);
      expect(error.retryable).toBe(false);
      expect(error.message).toMatch(/^sink mail: SMTP 5\d\d \(permanent\) in reply to STARTTLS/);
      expectNoSecret(error, 'mail.example.com');
    });
  });
});
