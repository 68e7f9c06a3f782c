import { createServer, type Server, type Socket } from 'node:net';
import type { AddressInfo } from 'node:net';
import { type ParsedMail, simpleParser } from 'mailparser';
import { SMTPServer, type SMTPServerSession } from 'smtp-server';

/** A message the server accepted: the SMTP envelope, the raw message and mailparser's reading of it. */
export interface ReceivedMail {
  readonly envelope: { readonly from: string; readonly to: readonly string[] };
  /** The user that logged in for it, when the server asks for a login. */
  readonly user: string | undefined;
  /** Whether the session had upgraded with STARTTLS. */
  readonly secure: boolean;
  readonly raw: string;
  readonly parsed: ParsedMail;
}

/** The SMTP steps whose next reply a test can script. */
export type SmtpStep = 'CONNECT' | 'AUTH' | 'MAIL' | 'RCPT' | 'DATA';

export interface FakeSmtpOptions {
  /** Require a login with exactly these credentials (over plain SMTP: the server is on loopback). */
  readonly auth?: { readonly user: string; readonly pass: string };
  /** Offer STARTTLS, with smtp-server's built-in self-signed certificate (as a local Postfix offers its snakeoil one). */
  readonly starttls?: boolean;
}

/**
 * A real SMTP server (smtp-server) on 127.0.0.1, port chosen by the system,
 * that keeps what it accepts, parsed with mailparser, and whose replies a
 * test can script step by step: `rejectNext('RCPT', 451)`. It offers no
 * STARTTLS (loopback: plain is allowed) unless `starttls` says so, so a
 * client that requires STARTTLS is refused. A message is recorded before the server acknowledges its DATA,
 * so it is in `messages` when the client's send resolves.
 */
export class FakeSmtp {
  /** Every message accepted, in order. */
  readonly messages: ReceivedMail[] = [];
  /** Every login attempt, accepted or not, with the password as received. */
  readonly logins: { readonly user: string; readonly pass: string }[] = [];
  /** Connections opened, whatever became of them. */
  connections = 0;
  readonly #server: SMTPServer;
  readonly #scripted = new Map<SmtpStep, { code: number; message: string }[]>();

  private constructor(options: FakeSmtpOptions) {
    const auth = options.auth;
    this.#server = new SMTPServer({
      logger: false,
      secure: false,
      disabledCommands: options.starttls ? [] : ['STARTTLS'],
      authOptional: auth === undefined,
      allowInsecureAuth: true,
      authMethods: ['PLAIN', 'LOGIN'],
      onConnect: (_session, callback) => {
        this.connections++;
        callback(this.#scriptedError('CONNECT'));
      },
      onAuth: (login, _session, callback) => {
        const user = login.username ?? '';
        const pass = login.password ?? '';
        this.logins.push({ user, pass });
        const scripted = this.#scriptedError('AUTH');
        if (scripted) return callback(scripted);
        if (!auth || user !== auth.user || pass !== auth.pass) return callback(withCode(new Error('5.7.8 Authentication credentials invalid'), 535));
        callback(null, { user });
      },
      onMailFrom: (_address, _session, callback) => callback(this.#scriptedError('MAIL')),
      onRcptTo: (_address, _session, callback) => callback(this.#scriptedError('RCPT')),
      onData: (stream, session, callback) => {
        const chunks: Buffer[] = [];
        stream.on('data', (chunk: Buffer) => chunks.push(chunk));
        stream.on('end', () => {
          const scripted = this.#scriptedError('DATA');
          if (scripted) return callback(scripted);
          const raw = Buffer.concat(chunks).toString('utf8');
          simpleParser(raw).then(
            (parsed) => {
              this.messages.push({ envelope: envelopeOf(session), user: typeof session.user === 'string' ? session.user : undefined, secure: session.secure, raw, parsed });
              callback(null);
            },
            (error: unknown) => callback(error as Error),
          );
        });
      },
    });
  }

  static async start(options: FakeSmtpOptions = {}): Promise<FakeSmtp> {
    const fake = new FakeSmtp(options);
    await new Promise<void>((resolve, reject) => {
      fake.#server.once('error', reject);
      fake.#server.listen(0, '127.0.0.1', () => resolve());
    });
    return fake;
  }

  get port(): number {
    return (this.#server.server.address() as AddressInfo).port;
  }

  /** `smtp://127.0.0.1:<port>`, with credentials when given (percent-encoded as a URL needs). */
  url(credentials?: { user: string; pass: string }): string {
    const login = credentials ? `${encodeURIComponent(credentials.user)}:${encodeURIComponent(credentials.pass)}@` : '';
    return `smtp://${login}127.0.0.1:${this.port}`;
  }

  /** The next reply at `step` is `code` (4xx: try again later; 5xx: refused), once per call, in order. */
  rejectNext(step: SmtpStep, code: number, message = code < 500 ? '4.3.0 Try again later' : '5.7.1 Refused'): void {
    const queue = this.#scripted.get(step) ?? [];
    queue.push({ code, message });
    this.#scripted.set(step, queue);
  }

  async close(): Promise<void> {
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }

  #scriptedError(step: SmtpStep): Error | null {
    const next = this.#scripted.get(step)?.shift();
    return next ? withCode(new Error(next.message), next.code) : null;
  }
}

function withCode(error: Error, responseCode: number): Error {
  return Object.assign(error, { responseCode });
}

function envelopeOf(session: SMTPServerSession): ReceivedMail['envelope'] {
  const from = session.envelope.mailFrom;
  return { from: from ? from.address : '', to: session.envelope.rcptTo.map((r) => r.address) };
}

/**
 * A TCP server on 127.0.0.1 that accepts connections and never says a word:
 * an SMTP server hung before its greeting. `close()` drops the connections.
 */
export async function startSilentServer(): Promise<{ url: string; connections: () => number; open: () => number; close: () => Promise<void> }> {
  const sockets = new Set<Socket>();
  let count = 0;
  const server: Server = createServer((socket) => {
    count++;
    sockets.add(socket);
    socket.on('error', () => {});
    socket.on('close', () => sockets.delete(socket));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  return {
    url: `smtp://127.0.0.1:${port}`,
    connections: () => count,
    /** Connections still open: the client closes its own when its send is aborted. */
    open: () => sockets.size,
    close: async () => {
      for (const socket of sockets) socket.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
