import { Cron } from 'croner';

/**
 * A digest's schedule (SPEC §9): a cron line (`0 9 * * 1-5`; six fields with
 * seconds also work) read in an IANA time zone, parsed by croner, never by
 * riskwatch. Times are epoch ms.
 */
export interface Schedule {
  readonly cron: string;
  readonly timezone: string;
  /** The latest slot at or before `at`, if the schedule has one. */
  latestAt(at: number): number | undefined;
  /** The first slot after `at`, if any. */
  nextAfter(at: number): number | undefined;
}

/** The schedule of `cron` in `timezone`; throws an Error saying what is wrong with either (check-config shows it). */
export function parseSchedule(cron: string, timezone: string): Schedule {
  try {
    new Intl.DateTimeFormat('en', { timeZone: timezone });
  } catch {
    throw new ScheduleError('timezone', `"${timezone}" is not an IANA time zone (UTC, Europe/Paris, America/New_York)`);
  }
  let job: Cron;
  try {
    job = new Cron(cron, { paused: true, timezone });
    // Some patterns parse but never fire (February 30th): there is no digest to send.
    if (job.nextRun() === null) throw new Error('it never fires');
  } catch (error) {
    const why = (error as Error).message.replace(/^CronPattern: /, '');
    throw new ScheduleError('cron', `"${cron}" is not a cron line riskwatch can use (${why}): five fields, minute hour day month weekday, as in "0 9 * * 1-5"`);
  }
  return {
    cron,
    timezone,
    // Inclusive: a slot at `at` itself is the latest.
    latestAt: (at) => job.previousRuns(1, new Date(at + 1))[0]?.getTime(),
    nextAfter: (at) => job.nextRun(new Date(at))?.getTime(),
  };
}

/** A schedule that cannot be used: which of its two keys is wrong, and why. */
export class ScheduleError extends Error {
  readonly key: 'cron' | 'timezone';
  constructor(key: 'cron' | 'timezone', message: string) {
    super(message);
    this.name = 'ScheduleError';
    this.key = key;
  }
}
