import { UsageError } from '../errors.ts';
import { EVENT_TYPES, type EventType } from '../model.ts';
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
    const type = text(args, 'type');
    if (type !== undefined && !EVENT_TYPES.includes(type as EventType)) throw new UsageError(`--type ${type}: must be one of ${EVENT_TYPES.join(', ')}`);
    const limitText = text(args, 'limit') ?? '100';
    const limit = Number(limitText);
    if (!/^\d+$/.test(limitText) || limit < 1 || limit > 100_000) throw new UsageError(`--limit ${limitText}: must be a whole number from 1 to 100000`);
    const since = Date.now() - (durationFlag(args, 'since') ?? DAY);
    const user = text(args, 'user');
    const rows = await withOperatorStore(config.state, (store) =>
      store.listEvents({ since, limit, ...(accountId ? { accountId } : {}), ...(user ? { user } : {}), ...(type ? { type: type as EventType } : {}) }),
    );
    if (args.values.json) {
      printJson(
        io,
        rows.map(({ event, silenced }) => ({ type: event.type, timestamp: event.timestamp, data: event.data, id: event.id, silenced, flapping: event.flapping === true })),
      );
      return 0;
    }
    printTable(
      io,
      ['TIME', 'TYPE', 'WHAT', 'SILENCED', 'ID'],
      // A flapping user's change was recorded and sent nowhere (SPEC §9): said beside its type.
      rows.map(({ event, silenced }) => [event.timestamp.replace(/\.\d{3}Z$/, 'Z'), `${event.type}${event.flapping ? ' (flapping)' : ''}`, headline(event), silenced, event.id]),
      'no events',
    );
    return 0;
  },
};
