import { assemble } from '../daemon/assemble.ts';
import { RETENTION_MS } from '../daemon/service.ts';
import { createLogger } from '../log.ts';
import { openStore } from '../store/open.ts';
import { type Args, type Command, type Io, readConfig } from './command.ts';

/** `once`: one poll of every account, deliver what is due, exit 0 (or 1 on a failure). */
export const once: Command = {
  options: {},
  async run(args: Args, io: Io) {
    const { config } = readConfig(args, io);
    const store = await openStore(config, { passing: true });
    const base = createLogger(config.log.level, { pretty: config.log.format === 'pretty' });
    const log = store.replica === undefined ? base : base.child({ replica: store.replica });
    try {
      const daemon = assemble(config, { store, log });
      const ok = await daemon.runOnce();
      await daemon.stop();
      const now = Date.now();
      await store.prune({ delivered: now - RETENTION_MS, history: now - config.state.historyMs });
      return ok ? 0 : 1;
    } finally {
      await store.close();
    }
  },
};
