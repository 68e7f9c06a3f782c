import { describe, expect, it } from 'vitest';
import { backoffDelay, parseRetryAfter, type RetryPolicy, withRetry } from '../src/retry.ts';
import { FakeClock } from './support/fake-clock.ts';

class Failure extends Error {
  readonly retryable: boolean;
  readonly retryAfterMs: number | undefined;
  constructor(retryable: boolean, retryAfterMs?: number) {
    super(retryable ? 'transient' : 'permanent');
    this.retryable = retryable;
    this.retryAfterMs = retryAfterMs;
  }
}

const policy: RetryPolicy = { attempts: 5, baseDelayMs: 100, maxDelayMs: 1000, maxWaitMs: 10_000 };

describe('withRetry: one policy for every caller', () => {
  it('retries retryable errors with exponential backoff and jitter, up to the attempts', async () => {
    const clock = new FakeClock();
    let calls = 0;
    await expect(
      withRetry(
        async () => {
          calls++;
          throw new Failure(true);
        },
        policy,
        { clock, random: () => 1 },
      ),
    ).rejects.toThrow('transient');
    expect(calls).toBe(5);
    expect(clock.sleeps).toEqual([100, 200, 400, 800]);
  });

  it('does not retry a permanent error', async () => {
    const clock = new FakeClock();
    let calls = 0;
    await expect(
      withRetry(
        async () => {
          calls++;
          throw new Failure(false);
        },
        policy,
        { clock },
      ),
    ).rejects.toThrow('permanent');
    expect(calls).toBe(1);
    expect(clock.sleeps).toEqual([]);
  });

  it('waits at least as long as Retry-After asks', async () => {
    const clock = new FakeClock();
    let calls = 0;
    const result = await withRetry(
      async () => {
        if (calls++ === 0) throw new Failure(true, 5000);
        return 'ok';
      },
      policy,
      { clock, random: () => 0 },
    );
    expect(result).toBe('ok');
    expect(clock.sleeps).toEqual([5000]);
  });

  it('surfaces the error instead of waiting past maxWaitMs', async () => {
    const clock = new FakeClock();
    await expect(
      withRetry(
        async () => {
          throw new Failure(true, 60_000);
        },
        policy,
        { clock },
      ),
    ).rejects.toThrow('transient');
    expect(clock.sleeps).toEqual([]);
  });

  it('does not retry a plain programming error', async () => {
    const clock = new FakeClock();
    let calls = 0;
    await expect(
      withRetry(
        async () => {
          calls++;
          throw new TypeError('x is not a function');
        },
        policy,
        { clock },
      ),
    ).rejects.toThrow(TypeError);
    expect(calls).toBe(1);
  });
});

describe('backoffDelay and parseRetryAfter', () => {
  it('keeps jitter within half to all of the exponential ceiling, capped', () => {
    expect(backoffDelay(1, policy, () => 0)).toBe(50);
    expect(backoffDelay(3, policy, () => 1)).toBe(400);
    expect(backoffDelay(20, policy, () => 1)).toBe(1000);
  });

  it('reads seconds and HTTP dates', () => {
    const now = Date.UTC(2026, 10, 22, 18, 0, 0);
    expect(parseRetryAfter('7', now)).toBe(7000);
    expect(parseRetryAfter('Sun, 22 Nov 2026 18:00:30 GMT', now)).toBe(30_000);
    expect(parseRetryAfter(undefined, now)).toBeUndefined();
    expect(parseRetryAfter('soon', now)).toBeUndefined();
    // No server parks riskwatch for more than an hour, whatever it says.
    expect(parseRetryAfter('99999999', now)).toBe(3_600_000);
  });
});
