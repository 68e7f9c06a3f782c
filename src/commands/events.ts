import type { RiskEvent } from '../detect/events.ts';
import { countInput, eventTypeInput } from '../operate/input.ts';
import { eventsView } from '../operate/views.ts';
import { headline } from '../notify/describe.ts';
import { withOperatorStore } from '../store/open.ts';
import { accountFlag, type Args, type Command, durationFlag, type Io, readConfig, text } from './command.ts';
import { printJson, printTable } from './output.ts';

const DAY = 86_400_000;

/** `events [--since D] [--account A] [--user U] [--type T] [--limit N] [--json]`: recorded events, newest first. */
export const events: Command = {
  options: { since: { type: 'string' }, account: { type: 'string' }, user: { type: 'string' }, type: { type: 'string' }, limit: { type: 'string' }, json: { type: 'boolean' } },
  async run(args: Args, io: Io) {
    const { config } = readConfig(args, io);
    const accountId = accountFlag(args, config);
    const type = eventTypeInput('--type', text(args, 'type'));
    const limit = countInput('--limit', text(args, 'limit'), 100_000) ?? 100;
    const since = Date.now() - (durationFlag(args, 'since') ?? DAY);
    const user = text(args, 'user');
    const listed = await withOperatorStore(config.state, (store) => eventsView(store, { since, limit, ...(accountId ? { accountId } : {}), ...(user ? { user } : {}), ...(type ? { type } : {}) }));
    if (args.values.json) {
      printJson(io, listed);
      return 0;
    }
    printTable(
      io,
      ['TIME', 'TYPE', 'WHAT', 'SILENCED', 'ID'],
      // A flapping user's change was recorded and sent nowhere (SPEC §9): said beside its type.
      listed.map((event) => [event.timestamp.replace(/\.\d{3}Z$/, 'Z'), `${event.type}${event.flapping ? ' (flapping)' : ''}`, headline(event as RiskEvent), event.silenced, event.id]),
      'no events',
    );
    return 0;
  },
};
