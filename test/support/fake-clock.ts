import type { Clock } from '../../src/clock.ts';

/**
 * A clock whose sleeps return at once and move time forward, recording what was asked.
 * Moving `time` (or sleeping) is time passing: both clocks follow. stepWall() moves only
 * the wall clock, as NTP or a VM resume does; the monotonic clock has its own origin, so
 * that mixing the two up shows in a test.
 */
export class FakeClock implements Clock {
  time: number;
  readonly sleeps: number[] = [];
  /** How far the wall clock was stepped in all, apart from time passing. */
  #stepped = 0;
  readonly #start: number;
  constructor(start = Date.UTC(2026, 10, 22, 18, 0, 0)) {
    this.time = start;
    this.#start = start;
  }
  now(): number {
    return this.time;
  }
  monotonic(): number {
    return 1_000_000 + this.time - this.#start - this.#stepped;
  }
  /** Steps the wall clock by `ms` (negative: back) without any time passing. */
  stepWall(ms: number): void {
    this.time += ms;
    this.#stepped += ms;
  }
  async sleep(ms: number, signal?: AbortSignal): Promise<void> {
    signal?.throwIfAborted();
    this.sleeps.push(ms);
    this.time += Math.max(0, ms);
    // Yield so that other tasks interleave as they would around a real timer.
    await Promise.resolve();
  }
}
