import { UsageError } from '../../errors.ts';
import { withOperatorStore } from '../../store/open.ts';
import { type Args, type Command, type Io, readConfig, text } from '../command.ts';
import { deliveriesView } from '../../operate/views.ts';
import { printJson, printTable } from '../output.ts';

/** `deliveries [--sink S] [--state pending|dead] [--json]`: the outbox. */
export const list: Command = {
  options: { sink: { type: 'string' }, state: { type: 'string' }, json: { type: 'boolean' } },
  async run(args: Args, io: Io) {
    const state = text(args, 'state');
    if (state !== undefined && state !== 'pending' && state !== 'dead') throw new UsageError(`--state ${state}: must be pending or dead`);
    const { config } = readConfig(args, io);
    const sink = text(args, 'sink');
    const listed = await withOperatorStore(config.state, (store) => deliveriesView(store, { ...(sink ? { sink } : {}), ...(state ? { state } : {}) }));
    if (args.values.json) printJson(io, listed);
    else
      printTable(
        io,
        ['ID', 'SINK', 'ACCOUNT', 'STATE', 'EVENTS', 'ATTEMPTS', 'NEXT ATTEMPT', 'LAST ERROR'],
        listed.map((d) => [
          d.id,
          d.sink,
          config.accounts.find((a) => a.id === d.account)?.label ?? d.account,
          d.state,
          d.types.length === 1 ? d.types[0] : `${d.types.length} events`,
          d.attempts,
          d.state === 'pending' ? d.next_attempt_at : null,
          d.last_error,
        ]),
        'no pending or dead-lettered deliveries',
      );
    return 0;
  },
};
