const { setTimeout: delay } = process.getBuiltinModule('node:timers/promises');

/**
 * Time, injected so that tests control it without sleeping.
 *
 * Two sources, for two uses. `now()` is the wall clock: use it for every time
 * that is stored, shown or compared with another process or machine (event
 * timestamps, a delivery's next_attempt_at in the store, retention cut-offs,
 * HTTP dates, signatures). `monotonic()` never steps: use it for every
 * interval or deadline measured inside this process (the poll schedule, the
 * request budget's window and Retry-After blocks, time since the last
 * successful poll, durations), so that NTP stepping the wall clock back, or a
 * VM resuming with a stale clock, neither stops nor bursts them.
 */
export interface Clock {
  /** Milliseconds since the epoch (wall clock: may step back or forward). */
  now(): number;
  /** Milliseconds from an arbitrary origin, never going back: only differences between two readings mean anything. */
  monotonic(): number;
  /** Resolves after `ms`; rejects with the signal's reason when it aborts first. */
  sleep(ms: number, signal?: AbortSignal): Promise<void>;
}

/** The longest timer Node keeps; a longer one fires at once. */
const MAX_TIMER_MS = 2 ** 31 - 1;

export const systemClock: Clock = {
  now: () => Date.now(),
  // CLOCK_MONOTONIC underneath, as Node's timers themselves: it does not count time the machine was suspended.
  monotonic: () => performance.now(),
  sleep: async (ms, signal) => {
    // Waits longer than a timer can hold are taken in pieces.
    for (let left = ms; left > 0; left -= MAX_TIMER_MS) await delay(Math.min(left, MAX_TIMER_MS), undefined, { signal });
  },
};
