import { runDemo } from '../demo.ts';
import { type Command, type Io, nextSignal } from './command.ts';

/** `demo`: a simulated API on loopback and the daemon against it, printing alerts. */
export const demo: Command = {
  options: {},
  async run(_args, io: Io) {
    const stop = nextSignal(['SIGINT', 'SIGTERM']);
    // A second Ctrl-C while cleaning up means "now".
    void stop.then(() => process.once('SIGINT', () => process.exit(130)).once('SIGTERM', () => process.exit(143)));
    await runDemo(io.out, stop);
    return 0;
  },
};
