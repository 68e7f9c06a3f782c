import { withOperatorStore } from '../store/open.ts';
import { type Args, type Command, type Io, readConfig } from './command.ts';
import { statusView } from '../operate/views.ts';
import { printJson, printTable } from './output.ts';

/** `status [--json]`: accounts, sinks and silences, from the store (SPEC §3, §8). */
export const status: Command = {
  options: { json: { type: 'boolean' } },
  async run(args: Args, io: Io) {
    const { config } = readConfig(args, io);
    const { accounts, sinks, silences } = await withOperatorStore(config.state, (store) => statusView(config, store, Date.now()));
    if (args.values.json) {
      printJson(io, { accounts, sinks, silences });
      return 0;
    }
    printTable(
      io,
      ['ACCOUNT', 'LAST SUCCESS', 'HIGH', 'MEDIUM', 'LOW', 'FLAPPING', 'LEADER', 'LAST ERROR'],
      accounts.map((a) => [a.name ?? a.id, a.last_success_at ?? 'never', a.users.high, a.users.medium, a.users.low, a.flapping, a.leader, a.last_error && `${a.last_error_at}: ${a.last_error}`]),
      'no accounts configured',
    );
    io.out('');
    printTable(
      io,
      ['SINK', 'TYPE', 'PENDING', 'DEAD', 'HELD UNTIL'],
      sinks.map((s) => [s.name, s.type ?? 'not configured', s.pending, s.dead, s.held_until]),
      'no sinks configured',
    );
    io.out('');
    io.out(`active silences: ${silences}`);
    return 0;
  },
};
