import { withOperatorStore } from '../../store/open.ts';
import { type Args, type Command, type Io, readConfig } from '../command.ts';
import { iso, printJson, printTable } from '../output.ts';

/** `silence list [--all] [--json]`: the active silences, or all still kept. */
export const list: Command = {
  options: { all: { type: 'boolean' }, json: { type: 'boolean' } },
  async run(args: Args, io: Io) {
    const { config } = readConfig(args, io);
    const now = Date.now();
    const silences = await withOperatorStore(config.state, (store) => store.listSilences({ all: args.values.all === true, now }), { warn: (message) => io.err(`riskwatch: ${message}`) });
    const listed = silences.map((s) => ({
      id: s.id,
      user: s.user,
      behavior: s.behavior,
      account: s.accountId,
      starts_at: iso(s.startsAt),
      ends_at: iso(s.endsAt),
      reason: s.reason,
      by: s.by,
      active: s.startsAt <= now && now < s.endsAt,
    }));
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
