import { UsageError, UserFacingError } from '../../errors.ts';
import { flagLabel, retryInput } from '../../operate/input.ts';
import { withOperatorStore } from '../../store/open.ts';
import { type Args, type Command, type Io, readConfig, text } from '../command.ts';

/**
 * `deliveries retry (--sink S [--to NEW] | --id N...)`: dead letters pending again, due now,
 * under their old ids. With `--to`, every pending and dead delivery of S (a sink renamed or
 * removed from the config) goes to the configured sink NEW instead.
 */
export const retry: Command = {
  options: { sink: { type: 'string' }, id: { type: 'string', multiple: true }, to: { type: 'string' } },
  async run(args: Args, io: Io) {
    const sink = text(args, 'sink');
    const to = text(args, 'to');
    const ids = (args.values.id as string[] | undefined) ?? [];
    if (to !== undefined && (sink === undefined || ids.length > 0)) throw new UsageError("--to: moves a whole sink's deliveries; give it with --sink S (and no --id)");
    const { config } = readConfig(args, io);
    const configured = config.sinks.map((s) => s.name);
    if (to !== undefined && !configured.includes(to)) throw new UsageError(`--to ${to}: not a configured sink (${configured.join(', ')})`);
    if (to !== undefined && to === sink) throw new UsageError(`--to ${to}: is the sink they are already for`);
    const which = to === undefined ? retryInput(flagLabel, sink, ids, config) : undefined;
    const { revived, dropped } = await withOperatorStore(config.state, (store) => (which === undefined ? store.moveDeliveries(sink!, to!, Date.now()) : store.retryDeliveries(which, Date.now())));
    if (revived + dropped === 0) throw new UserFacingError(to === undefined ? 'no dead-lettered delivery matched' : `no pending or dead-lettered delivery is for sink ${sink}`, 1);
    const deliveries = `${revived} ${revived === 1 ? 'delivery' : 'deliveries'}`;
    const said = to === undefined ? `${deliveries} made pending again` : `${deliveries} of ${sink} moved to ${to}, due now`;
    // A dead trigger whose incident was closed since would open it again: it is not sent.
    io.out(dropped === 0 ? said : `${said}; ${dropped} stale ${dropped === 1 ? 'trigger' : 'triggers'} dropped (${dropped === 1 ? 'its incident was' : 'their incidents were'} closed since)`);
    return 0;
  },
};
