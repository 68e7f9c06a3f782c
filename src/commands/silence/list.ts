import { withOperatorStore } from '../../store/open.ts';
import { type Args, type Command, type Io, readConfig } from '../command.ts';
import { silencesView } from '../../operate/views.ts';
import { printJson, printTable } from '../output.ts';

/** `silence list [--all] [--json]`: the active silences, or all still kept. */
export const list: Command = {
  options: { all: { type: 'boolean' }, json: { type: 'boolean' } },
  async run(args: Args, io: Io) {
    const { config } = readConfig(args, io);
    const now = Date.now();
    const listed = await withOperatorStore(config.state, (store) => silencesView(store, { all: args.values.all === true, now }), { warn: (message) => io.err(`riskwatch: ${message}`) });
    if (args.values.json) printJson(io, listed);
    else
      printTable(
        io,
        ['ID', 'MATCHES', 'ACCOUNT', 'ENDS', 'BY', 'REASON'],
        listed.map((s) => [
          s.id,
          s.user ? `user ${s.user}` : `behavior ${s.behavior}`,
          config.accounts.find((a) => a.id === s.account)?.label ?? s.account ?? 'all',
          `${s.ends_at}${s.active ? '' : ' (ended)'}`,
          s.by,
          s.reason,
        ]),
        args.values.all ? 'no silences' : 'no active silences',
      );
    return 0;
  },
};
