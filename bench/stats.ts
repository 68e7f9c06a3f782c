/** What the benchmarks compute of their samples, and read of a process from /proc. */
import fs from 'node:fs';

/** The value at or above `p` percent of `values` (nearest rank); NaN when there are none. */
export function percentile(values: readonly number[], p: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))] ?? NaN;
}

/** The middle value (the upper of the two middles of an even count); NaN when there are none. */
export function median(values: readonly number[]): number {
  return [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)] ?? NaN;
}

/** Fields of /proc/<pid>/status given in kB (VmRSS, RssAnon, VmHWM…), in MB. */
export function statusMb(pid: number): (field: string) => number {
  const status = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
  return (field) => Number(new RegExp(`^${field}:\\s+(\\d+)`, 'm').exec(status)?.[1] ?? NaN) / 1024;
}
