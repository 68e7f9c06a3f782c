import { UserFacingError } from '../../errors.ts';
import { withOperatorStore } from '../../store/open.ts';
import { type Args, type Command, type Io, readConfig } from '../command.ts';

/** `silence expire ID`: ends an active silence now; exit 1 when there is none of that id. */
export const expire: Command = {
  options: {},
  positionals: 1,
  async run(args: Args, io: Io) {
    const id = args.positionals[0];
    if (id === undefined) throw new UserFacingError('silence expire: give the silence id (silence list shows them)', 2);
    const { config } = readConfig(args, io);
    if (!(await withOperatorStore(config.state, (store) => store.expireSilence(id, Date.now())))) throw new UserFacingError(`no active silence ${id}`, 1);
    io.out(`silence ${id} ended`);
    return 0;
  },
};
