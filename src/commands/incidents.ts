import { incidentsView } from '../operate/views.ts';
import { withOperatorStore } from '../store/open.ts';
import { type Args, type Command, type Io, readConfig, text } from './command.ts';
import { printJson, printTable } from './output.ts';

/**
 * `incidents [--sink NAME] [--json]`: the incidents PagerDuty and Opsgenie sinks
 * opened and riskwatch has not closed, oldest first. `configured` is false for one
 * whose sink, as configured now, no longer has the key it was opened with: the
 * next config load closes it (with the old key, if this process still holds it)
 * or, if nobody does, it must be resolved by hand.
 */
export const incidents: Command = {
  options: { sink: { type: 'string' }, json: { type: 'boolean' } },
  async run(args: Args, io: Io) {
    const { config } = readConfig(args, io);
    const sink = text(args, 'sink');
    const listed = await withOperatorStore(config.state, (store) => incidentsView(config, store, sink === undefined ? {} : { sink }));
    if (args.values.json) printJson(io, listed);
    else
      printTable(
        io,
        ['SINK', 'KEY', 'ACCOUNT', 'OPENED', 'TRIGGER', 'CREDENTIAL'],
        listed.map((i) => [i.sink, i.key, i.account.name ?? i.account.id, i.opened_at, i.trigger, i.configured ? i.credential : `${i.credential} (not configured)`]),
        'no open incidents',
      );
    return 0;
  },
};
