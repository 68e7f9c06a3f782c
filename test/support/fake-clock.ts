import type { Clock } from '../../src/clock.ts';

/** A clock whose sleeps return at once and move time forward, recording what was asked. */
export class FakeClock implements Clock {
  time: number;
  readonly sleeps: number[] = [];
  constructor(start = Date.UTC(2026, 10, 22, 18, 0, 0)) {
    this.time = start;
  }
  now(): number {
    return this.time;
  }
  async sleep(ms: number, signal?: AbortSignal): Promise<void> {
    signal?.throwIfAborted();
    this.sleeps.push(ms);
    this.time += Math.max(0, ms);
    // Yield so that other tasks interleave as they would around a real timer.
    await Promise.resolve();
  }
}
