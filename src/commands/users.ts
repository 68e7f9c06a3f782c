import { levelInput } from '../operate/input.ts';
import { usersView } from '../operate/views.ts';
import { withOperatorStore } from '../store/open.ts';
import { accountFlag, type Args, type Command, type Io, readConfig, text } from './command.ts';
import { printJson, printTable } from './output.ts';

/** `users [--account A] [--level L] [--json]`: who is at which level now, highest first, since when. */
export const users: Command = {
  options: { account: { type: 'string' }, level: { type: 'string' }, json: { type: 'boolean' } },
  async run(args: Args, io: Io) {
    const { config } = readConfig(args, io);
    const accountId = accountFlag(args, config);
    const level = levelInput('--level', text(args, 'level'));
    const listed = await withOperatorStore(config.state, (store) => usersView(config, store, { ...(accountId ? { accountId } : {}), ...(level ? { level } : {}) }));
    if (args.values.json) printJson(io, listed);
    else
      printTable(
        io,
        ['ACCOUNT', 'EMAIL', 'NAME', 'LEVEL', 'SINCE', 'FLAPPING'],
        listed.map((u) => [u.account.name ?? u.account.id, u.email, u.name, u.level, u.since, u.flapping ? 'yes' : null]),
        'no users',
      );
    return 0;
  },
};
