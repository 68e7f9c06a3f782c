import { systemClock } from '../clock.ts';
import { HttpPool } from '../http.ts';
import { testSinks as sendTests } from '../notify/test-sinks.ts';
import { type Args, type Command, type Io, readConfig, text } from './command.ts';

/** `test-sinks [--sink NAME] [--sample]`: one marked test notification (or sample alert) to each sink, a line per sink. */
export const testSinks: Command = {
  options: { sink: { type: 'string' }, sample: { type: 'boolean' } },
  async run(args: Args, io: Io) {
    const { config } = readConfig(args, io);
    const http = new HttpPool();
    try {
      const results = await sendTests(config, text(args, 'sink'), { clock: systemClock, http, writeLine: io.out }, { sample: args.values.sample === true });
      for (const result of results) io.out(result.line);
      return results.every((r) => r.ok) ? 0 : 1;
    } finally {
      http.close();
    }
  },
};
