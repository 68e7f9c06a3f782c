import type { IncomingMessage } from 'node:http';
import type { Secret } from '../config/secret.ts';
import { isLoopbackHost } from '../http.ts';

const { createHash, createHmac, randomBytes, timingSafeEqual } = process.getBuiltinModule('node:crypto');

/** The session cookie /login sets: valid this long, on every replica that holds the same token. */
export const SESSION_COOKIE = 'riskwatch_session';
const SESSION_MS = 12 * 3_600_000;

/** Who a request is: with the bearer token, with a session cookie, or (no token configured) anyone on the loopback. */
export type Caller = { readonly by: 'bearer' } | { readonly by: 'cookie'; readonly session: string } | { readonly by: 'open' };

/**
 * Who may use the console and /api/ (SPEC §10). With `http.token`, a request
 * carries it as `Authorization: Bearer`, or carries the session cookie that
 * /login set: `<expiry>.<HMAC of the expiry under the token>`, so any replica
 * with the same token accepts it, and a new token ends every session. Without
 * a token (only on a loopback listen), anyone who reaches the port may, but
 * only under a loopback Host name (a DNS-rebound name is refused) and not
 * through a reverse proxy (which would open it to whoever reaches the proxy). The token
 * is compared in constant time and never logged.
 */
export class Access {
  readonly #token: Buffer | undefined;
  /** Signs sessions and CSRF tokens: derived from the token, or this process's own when there is none. */
  readonly #key: Buffer;

  constructor(token: Secret | undefined) {
    this.#token = token === undefined ? undefined : digest(token.reveal());
    this.#key = token === undefined ? randomBytes(32) : createHmac('sha256', token.reveal()).update('riskwatch console session').digest();
  }

  get required(): boolean {
    return this.#token !== undefined;
  }

  /** The caller, or undefined when the request may not come in. */
  caller(req: IncomingMessage, now: number): Caller | undefined {
    // Without a token, only this host's own users: not a DNS-rebound name, nor anyone a reverse proxy forwards.
    if (this.#token === undefined) return isLoopbackHost(hostName(req.headers.host ?? '')) && !forwarded(req) ? { by: 'open' } : undefined;
    const bearer = /^Bearer +(\S+)\s*$/i.exec(req.headers.authorization ?? '')?.[1];
    if (bearer !== undefined) return this.tokenMatches(bearer) ? { by: 'bearer' } : undefined;
    const session = cookie(req, SESSION_COOKIE);
    return session !== undefined && this.#sessionValid(session, now) ? { by: 'cookie', session } : undefined;
  }

  tokenMatches(given: string): boolean {
    return this.#token !== undefined && timingSafeEqual(digest(given.trim()), this.#token);
  }

  /** A new session's cookie value, for /login. */
  newSession(now: number): string {
    const expires = String(now + SESSION_MS);
    return `${expires}.${this.#sign(`session:${expires}`)}`;
  }

  /** The Set-Cookie header for a session (or, with `value` empty, for its end). */
  sessionCookie(value: string, secure: boolean): string {
    const age = value === '' ? 0 : SESSION_MS / 1000;
    return `${SESSION_COOKIE}=${value}; Path=/; Max-Age=${age}; HttpOnly; SameSite=Strict${secure ? '; Secure' : ''}`;
  }

  /** The CSRF token a form carries: bound to the caller's session (or, without a token, to this process). */
  csrfToken(caller: Caller): string {
    return this.#sign(`csrf:${caller.by === 'cookie' ? caller.session : ''}`);
  }

  csrfMatches(caller: Caller, given: string | undefined): boolean {
    const expected = Buffer.from(this.csrfToken(caller));
    return given !== undefined && given.length === expected.length && timingSafeEqual(Buffer.from(given), expected);
  }

  #sessionValid(value: string, now: number): boolean {
    const [expires, mac] = value.split('.', 2);
    if (expires === undefined || mac === undefined || !/^\d+$/.test(expires) || Number(expires) <= now) return false;
    const expected = Buffer.from(this.#sign(`session:${expires}`));
    return mac.length === expected.length && timingSafeEqual(Buffer.from(mac), expected);
  }

  #sign(text: string): string {
    return createHmac('sha256', this.#key).update(text).digest('base64url');
  }
}

/**
 * Whether a browser sent this write from one of our own pages. Sec-Fetch-Site
 * says so where the browser sends it (every current one). Without it, the
 * Origin must name the Host asked for. A request with neither comes from no
 * browser (curl, a script) and cannot be forged by a web page. The pages are
 * served with `Referrer-Policy: no-referrer`, under which a browser's form
 * posts say `Origin: null`: that is why Sec-Fetch-Site comes first.
 */
export function sameOrigin(req: IncomingMessage): boolean {
  const site = req.headers['sec-fetch-site'];
  if (site !== undefined) return site === 'same-origin' || site === 'none';
  const origin = req.headers.origin;
  if (origin === undefined) return true;
  const host = URL.parse(origin)?.host;
  return host !== undefined && host !== '' && host === req.headers.host;
}

/** Whether the request reached us over TLS: directly, or through a proxy that says so. */
export function overTls(req: IncomingMessage): boolean {
  return (
    'encrypted' in req.socket ||
    /^https$/i.test(
      String(req.headers['x-forwarded-proto'] ?? '')
        .split(',', 1)[0]!
        .trim(),
    )
  );
}

/** Whether a reverse proxy says it forwarded the request (from anywhere). */
function forwarded(req: IncomingMessage): boolean {
  return req.headers.forwarded !== undefined || req.headers['x-forwarded-for'] !== undefined || req.headers['x-forwarded-host'] !== undefined || req.headers['x-real-ip'] !== undefined;
}

function digest(text: string): Buffer {
  return createHash('sha256').update(text).digest();
}

function cookie(req: IncomingMessage, name: string): string | undefined {
  for (const part of (req.headers.cookie ?? '').split(';')) {
    const [key, ...value] = part.trim().split('=');
    if (key === name) return value.join('=');
  }
  return undefined;
}

/** A Host header's name, without its port (`[::1]:9464` → `::1`). */
function hostName(host: string): string {
  const bracketed = /^\[([^\]]+)\]/.exec(host);
  return bracketed ? bracketed[1]! : host.replace(/:\d+$/, '');
}
