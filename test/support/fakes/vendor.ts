import { randomUUID } from 'node:crypto';
import type { Answer, ReceivedRequest, Receiver } from '../receiver.ts';

/**
 * What the vendor fakes (pagerduty.ts, opsgenie.ts) share: a loopback
 * Receiver that records every request, answers by the vendor's documented
 * contract, and lets a test script faults in front of that contract.
 */
export abstract class VendorFake {
  /** Every request that arrived, faulted ones included, in order. */
  get requests(): readonly ReceivedRequest[] {
    return this.#receiver.requests;
  }
  /** Returns an answer to use instead of the contract's for a request (a fault), or undefined to let the contract answer. */
  intercept: ((request: ReceivedRequest) => Answer | undefined) | undefined;
  readonly #receiver: Receiver;
  readonly #basePath: string;
  readonly #faults: Answer[] = [];

  protected constructor(receiver: Receiver, basePath = '') {
    this.#receiver = receiver;
    this.#basePath = basePath;
    receiver.answer = (request) => this.#faults.shift() ?? this.intercept?.(request) ?? this.#contract(request);
  }

  /** The base URL a sink's `url` is set to: the origin, plus the base path the fake was started with. */
  get url(): string {
    return this.#receiver.url(this.#basePath);
  }

  /** The next `times` requests get `answer` (`{status, headers?, body?}`, `{reset: true}` or `{hang: true}`) and change nothing. */
  failNext(times: number, answer: Answer): void {
    for (let i = 0; i < times; i++) this.#faults.push(answer);
  }

  close(): Promise<void> {
    return this.#receiver.close();
  }

  /** The vendor's answer to a request that reached its documented contract (a path under the base path, a body). */
  protected abstract answer(path: URL, body: unknown, request: ReceivedRequest): Answer;

  #contract(request: ReceivedRequest): Answer {
    const url = new URL(request.path, 'http://fake');
    if (request.method !== 'POST' || !url.pathname.startsWith(`${this.#basePath}/`)) return json(404, { message: 'Not found' });
    url.pathname = url.pathname.slice(this.#basePath.length);
    let body: unknown;
    try {
      body = request.body === '' ? undefined : JSON.parse(request.body);
    } catch {
      body = INVALID_JSON;
    }
    return this.answer(url, body, request);
  }
}

/** The body of a request whose body was not JSON. */
export const INVALID_JSON = Symbol('invalid JSON');

export function json(status: number, body: unknown, headers: Record<string, string> = {}): Answer {
  return { status, headers: { 'content-type': 'application/json', ...headers }, body: JSON.stringify(body) };
}

export const requestId = (): string => randomUUID();

export function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}
