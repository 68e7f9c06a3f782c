import { summarizeConfig } from '../config/summary.ts';
import { inspectStore } from '../store/open.ts';
import { type Args, type Command, type Io, readConfig } from './command.ts';

/** `check-config`: validate the file and the environment it references; a summary with secrets masked. */
export const checkConfig: Command = {
  options: {},
  async run(args: Args, io: Io) {
    const { config } = readConfig(args, io);
    io.out(summarizeConfig(config));
    const store = await inspectStore(config.state);
    if (store) io.out(store);
    io.out('config is valid');
    return 0;
  },
};
