import { UsageError, UserFacingError } from '../../errors.ts';
import { openOperatorStore } from '../../store/open.ts';
import { type Args, type Command, type Io, readConfig, text } from '../command.ts';

/** `deliveries retry (--sink S | --id N...)`: dead letters pending again, due now, under their old ids. */
export const retry: Command = {
  options: { sink: { type: 'string' }, id: { type: 'string', multiple: true } },
  async run(args: Args, io: Io) {
    const sink = text(args, 'sink');
    const ids = (args.values.id as string[] | undefined) ?? [];
    if ((sink === undefined) === (ids.length === 0)) throw new UsageError('deliveries retry: give --sink S or --id N (repeatable), one of them');
    const bad = ids.find((id) => !/^\d+$/.test(id));
    if (bad !== undefined) throw new UsageError(`--id ${bad}: must be a delivery id (a whole number; deliveries --state dead shows them)`);
    const { config } = readConfig(args, io);
    const store = await openOperatorStore(config.state);
    let count: number;
    try {
      count = await store.retryDeliveries(sink !== undefined ? { sink } : { ids: ids.map(Number) }, Date.now());
    } finally {
      await store.close();
    }
    if (count === 0) throw new UserFacingError('no dead-lettered delivery matched', 1);
    io.out(`${count} ${count === 1 ? 'delivery' : 'deliveries'} made pending again`);
    return 0;
  },
};
