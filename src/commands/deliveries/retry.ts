import { UsageError, UserFacingError } from '../../errors.ts';
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
    if ((sink === undefined) === (ids.length === 0)) throw new UsageError('deliveries retry: give --sink S or --id N (repeatable), one of them');
    if (to !== undefined && sink === undefined) throw new UsageError("--to: moves a whole sink's deliveries; give it with --sink S");
    const bad = ids.find((id) => !/^\d+$/.test(id));
    if (bad !== undefined) throw new UsageError(`--id ${bad}: must be a delivery id (a whole number; deliveries --state dead shows them)`);
    const { config } = readConfig(args, io);
    const configured = config.sinks.map((s) => s.name);
    if (to !== undefined && !configured.includes(to)) throw new UsageError(`--to ${to}: not a configured sink (${configured.join(', ')})`);
    if (to !== undefined && to === sink) throw new UsageError(`--to ${to}: is the sink they are already for`);
    if (to === undefined && sink !== undefined && !configured.includes(sink)) {
      throw new UsageError(`--sink ${sink}: not a configured sink, so nothing would send its deliveries; move them with --to NEW (${configured.join(', ')})`);
    }
    const { revived, dropped } = await withOperatorStore(config.state, (store) =>
      to !== undefined ? store.moveDeliveries(sink!, to, Date.now()) : store.retryDeliveries(sink !== undefined ? { sink } : { ids: ids.map(Number) }, Date.now()),
    );
    if (revived + dropped === 0) throw new UserFacingError(to === undefined ? 'no dead-lettered delivery matched' : `no pending or dead-lettered delivery is for sink ${sink}`, 1);
    const deliveries = `${revived} ${revived === 1 ? 'delivery' : 'deliveries'}`;
    const said = to === undefined ? `${deliveries} made pending again` : `${deliveries} of ${sink} moved to ${to}, due now`;
    // A dead trigger whose incident was closed since would open it again: it is not sent.
    io.out(dropped === 0 ? said : `${said}; ${dropped} stale ${dropped === 1 ? 'trigger' : 'triggers'} dropped (${dropped === 1 ? 'its incident was' : 'their incidents were'} closed since)`);
    return 0;
  },
};
